"""The sweep's overrides: the planned groups' values, the other swept settings and the fixed ones."""

from typing import Any, Dict, List, Optional, Tuple

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, QuotedString
from omegaconf import OmegaConf

from hydra_plugins.cka_hydra_configs.index_pairs import option_values

from cka_hydra.overrides import hydra_argv

from ._jobs import SweepError


GROUPS = ("regime", "pair", "seed_pair", "layer")


# planned with the groups, by the validity and uniqueness rules: a setting, not a group
PLANNED = GROUPS + ("layer_b",)


def split_overrides(
    config_loader: Any, config: Any, params: Dict[str, str], arguments: List[str]
) -> Tuple[Dict[str, List[str]], List[List[str]], List[str]]:
    """The values of the four groups by name; each other swept key's overrides, one per value;
    and the overrides every job gets. The sweeper's params come first, so the command line
    replaces them key by key."""
    parser = OverridesParser.create(config_loader=config_loader)
    # quoted as on the command line: the grammar reads a params value 1_5 as the integer 15
    lines = hydra_argv([f"{key}={_params_value(value)}" for key, value in params.items()]) + list(arguments)
    choices: Dict[str, List[str]] = {}
    swept: Dict[str, List[str]] = {}
    fixed: Dict[str, str] = {}
    for override in parser.parse_overrides(lines):
        key = override.get_key_element()
        for table in (choices, swept, fixed):
            table.pop(key, None)
        if key in PLANNED:
            choices[key] = _values(override)
        elif override.is_sweep_override():
            if not override.is_discrete_sweep():
                raise SweepError(f"{override.input_line}: only lists of values can be swept here, not intervals")
            swept[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            fixed[key] = override.input_line
    for key, values in choices.items():
        group = "layer" if key == "layer_b" else key  # layer_b names a layer, as the group layer does
        # the primary config and Hydra's overrides give the search path (hydra.searchpath=[...] adds to it)
        known = config_loader.get_group_options(group, config_name=config.hydra.job.config_name,
                                                overrides=list(config.hydra.overrides.hydra))
        # a pair or seed pair of any index or seed is an option (index_pairs); the regime checks it
        unknown = [v for v in values if v not in known and not (key == "layer_b" and v == "None")
                   and option_values(group, v) is None]
        if unknown:
            hint = (" (a YAML file reads 1_5 as the number 15: quote it, '1_5')"
                    if group in ("pair", "seed_pair") and all(v.isdigit() for v in unknown) else "")
            raise SweepError(f"{key}={','.join(unknown)}: no such option{hint}; {group} has: {', '.join(known)}")
    return choices, list(swept.values()), list(fixed.values())


def _params_value(value: Any) -> str:
    """A params value as a sweep of its items: `3,4,5,6` as written, or a YAML list [3, 4, 5, 6]."""
    return ",".join(map(str, value)) if OmegaConf.is_list(value) or isinstance(value, list) else str(value)


def _values(override: Override) -> List[str]:
    values = list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
    return [v.text if isinstance(v, QuotedString) else str(v) for v in values]


def index_pair(option: str, group: str) -> Tuple[str, str]:
    first, sep, second = option.partition("_")
    if not sep:
        raise SweepError(f"{group}={option}: expected <first>_<second>, e.g. 1_2 (quote numbers in YAML: '1_2')")
    return first, second


def second_layers(values: Optional[List[str]]) -> Optional[List[int]]:
    """The second instances' layers; None: each the same as the first's (also for layer_b=null)."""
    if values is None or values == ["None"]:
        return None
    if "None" in values:
        raise SweepError(f"layer_b={','.join(v if v != 'None' else 'null' for v in values)}: null (the same layer as "
                         "layer) cannot be listed with layer indices; list the layers, e.g. layer_b=3,4,5,6")
    return [int(value) for value in values]
