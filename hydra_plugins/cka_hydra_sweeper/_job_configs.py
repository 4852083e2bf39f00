"""Each job's config at a fraction of the cost of composing it.

Hydra composes every job from scratch (`load_sweep_config` costs more than a comparison's own
work: docs/design.md, "The engine"), while the jobs of a sweep differ only in the options of a few config
groups. `JobConfigLoader` composes the first job of each set of other overrides as Hydra does,
then makes each further job from a copy of it, merging in the options of the groups that
differ and recording them (choices, task overrides, override_dirname) as composition would.
Any override it does not recognise goes to Hydra's own composition. Tests compare the result
with Hydra's for the whole study.

The launcher gets it in its HydraContext, so it works in whichever process composes the
jobs: a joblib worker, an array task, or the sweeper's own process with the basic launcher.
"""
# No `from __future__ import annotations` here: it breaks the plugin discovery of Hydra 1.3.8.
import copy
import functools
import re
from typing import Any, Dict, List, Optional, Tuple

from hydra._internal.config_loader_impl import get_overrides_dirname
from hydra.core.config_loader import ConfigLoader
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

# the groups whose options a job may change on a copy: files of plain values, no defaults lists
COPIED_GROUPS = ("pair", "seed_pair", "layer")
# an option as the sweeper writes it, e.g. pair='1_2' (quoted: Hydra would read 12)
_CHOICE = re.compile(r"(?P<group>{})='?(?P<option>\w+)'?".format("|".join(COPIED_GROUPS)))
# an override that reaches into those groups' values or packages: compose it as Hydra does
_TOUCHES_GROUP = re.compile(r"[+~]*(?:{})(?:[.@=]|$)".format("|".join(COPIED_GROUPS)))


class JobConfigLoader(ConfigLoader):
    """Hydra's config loader, with `load_sweep_config` composing once per set of other overrides."""

    def __init__(self, loader: ConfigLoader) -> None:
        self.loader = loader
        self._composed: Dict[Tuple[str, ...], Tuple[DictConfig, Dict[str, str]]] = {}

    def __getstate__(self) -> Dict[str, Any]:  # the composed configs stay in the process that made them
        return {"loader": self.loader, "_composed": {}}

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: List[str]) -> DictConfig:
        choices, others = _split(sweep_overrides)
        if choices is None:
            return self.loader.load_sweep_config(master_config, sweep_overrides)
        key = tuple(others)
        if key not in self._composed:
            config = self.loader.load_sweep_config(master_config, sweep_overrides)
            self._composed[key] = config, choices
            return copy.deepcopy(config)
        composed, composed_choices = self._composed[key]
        config = copy.deepcopy(composed)
        with read_write(config), open_dict(config):
            for group, option in choices.items():
                if option != composed_choices[group]:
                    self._merge_option(config, group, option)
            task = [o for o in map(_override, sweep_overrides) if not o.is_hydra_override()]
            config.hydra.overrides.task = [o.input_line for o in task]
            dirname = config.hydra.job.config.override_dirname
            config.hydra.job.override_dirname = get_overrides_dirname(
                overrides=task, exclude_keys=list(dirname.exclude_keys), item_sep=dirname.item_sep,
                kv_sep=dirname.kv_sep)
        return config

    def _merge_option(self, config: DictConfig, group: str, option: str) -> None:
        result = self._option(group, option)
        package = result.header.get("package") or group.replace("/", ".")
        if package == "_global_":
            config.merge_with(result.config)
        else:
            OmegaConf.update(config, package, result.config, merge=True)
        config.hydra.runtime.choices[group] = option

    @functools.lru_cache(maxsize=1024)  # an option's file, read once per process (merging copies it)
    def _option(self, group: str, option: str) -> Any:
        result = self.loader.repository.load_config(f"{group}/{option}")  # type: ignore[attr-defined]
        if result is None:  # let Hydra's composition say what is wrong
            raise KeyError(f"{group}/{option}")
        return result

    # --- the rest is Hydra's loader, unchanged ---

    def load_configuration(self, config_name: Optional[str], overrides: List[str], run_mode: RunMode,
                           from_shell: bool = True, validate_sweep_overrides: bool = True) -> DictConfig:
        return self.loader.load_configuration(config_name, overrides, run_mode, from_shell, validate_sweep_overrides)

    def get_search_path(self) -> Any:
        return self.loader.get_search_path()

    def get_sources(self) -> Any:
        return self.loader.get_sources()

    def list_groups(self, parent_name: str) -> List[str]:
        return self.loader.list_groups(parent_name)

    def get_group_options(self, group_name: str, results_filter: Any = None, config_name: Optional[str] = None,
                          overrides: Optional[List[str]] = None) -> List[str]:
        return self.loader.get_group_options(group_name, results_filter, config_name, overrides)

    def compute_defaults_list(self, config_name: Optional[str], overrides: List[str], run_mode: RunMode) -> Any:
        return self.loader.compute_defaults_list(config_name, overrides, run_mode)


@functools.lru_cache(maxsize=1)
def _parser() -> OverridesParser:
    return OverridesParser.create()  # a grammar set up once per process, not once per job


@functools.lru_cache(maxsize=4096)
def _override(line: str) -> Any:
    """One override line, parsed once per process (a sweep's jobs share most of theirs)."""
    [override] = _parser().parse_overrides([line])
    return override


def _split(overrides: List[str]) -> Tuple[Optional[Dict[str, str]], List[str]]:
    """The options of the copied groups, and the other overrides; (None, ...) when an other
    override touches a copied group, or a group is not chosen."""
    choices: Dict[str, str] = {}
    others = []
    for line in overrides:
        match = _CHOICE.fullmatch(line)
        if match:
            choices[match["group"]] = match["option"]
        elif _TOUCHES_GROUP.match(line):
            return None, others
        else:
            others.append(line)
    return (choices if len(choices) == len(COPIED_GROUPS) else None), others
