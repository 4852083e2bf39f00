"""Regime files: `regime/<name>.yaml` read as the app reads it, each error naming the file and
line; where a config's regime file is; and what the regime files exclude.

The rule of names: a regime is named after its file. `regime=my_pt2` selects `regime/my_pt2.yaml`,
whose `name` must be `my_pt2`: its models are `my_pt2-1`, ..., its results go below `my_pt2/`, and
every job of a sweep reads that same file. A second view of a store (other exclusions, stand-ins
or seeds for models that another regime file also describes) is a regime of its own name whose
templates say where its models' folders are, with `{index}` for the model's index
(`original_dir: "pt2-{index}"`).
"""

from dataclasses import fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from omegaconf import MISSING, DictConfig, OmegaConf

from cka_hydra.errors import InputError
from cka_hydra.schema import RegimeConfig, RegimeError


def check_regime_file(cfg: DictConfig) -> None:
    """Check the composed config's regime: the file it came from as load_regime_file does, naming
    the file and line of what is wrong (a key listed twice: OmegaConf's YAML loader checks only
    string keys and keeps the last of two `1:` entries), then the regime with the command line's
    overrides. The file is found as Hydra finds it, in the first config source holding it. Called
    where a run or sweep is checked before it starts, not per job: it reads the file."""
    hydra = cfg.hydra
    option = hydra.runtime.choices.regime
    path = regime_files(hydra.runtime.config_sources).get(option)
    if path is not None:
        load_regime_file(path)
    OmegaConf.to_object(cfg.regime)  # what the command line changed: RegimeError names the setting
    if cfg.regime.name != option:  # regime.name=... on the command line
        raise InputError(f"regime.name={cfg.regime.name}: a regime is named after its file, regime/{option}.yaml "
                         f"(name: {option}); choose another regime with regime=NAME")


def load_regime_file(path: Path) -> RegimeConfig:
    """A regime file as the app reads it, with every check of check_regime_file and more (a key
    listed twice in any mapping, an unknown key), each error naming the file and line: for the
    files of a user's --config-dir, checked before Hydra reads them, and for the report."""
    text = path.read_text()
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except _RepeatedKey as err:
        raise InputError(f"{path}, line {err.line}: {err.key} is listed twice (YAML would keep only the last)") from None
    except yaml.YAMLError as err:
        raise InputError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    known = [f.name for f in fields(RegimeConfig)]
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a regime: a mapping with the keys {', '.join(known)}")
    for key in data:
        if key not in known:
            raise InputError(f"{path}, line {_line(yaml.compose(text), (key,))}: {key}: unknown key; a regime has: "
                             f"{', '.join(known)}")
    missing = [f.name for f in fields(RegimeConfig) if f.default is MISSING and f.name not in data]
    if missing:
        raise InputError(f"{path}: expected the keys {', '.join(missing)} as well")
    try:
        models = {int(index): [str(task) for task in tasks] for index, tasks in (data["models"] or {}).items()}
        seeds = [str(seed) for seed in data["seeds"] or []]
        regime = RegimeConfig(**{**data, "models": models, "seeds": seeds})
    except (TypeError, ValueError, AttributeError):
        raise InputError(f"{path}: models: expected index -> list of tasks, seeds: a list of names") from None
    except RegimeError as err:
        raise InputError(f"{path}, line {_line(yaml.compose(text), err.key) or '?'}: {err}") from None
    if regime.name != path.stem:
        raise InputError(f"{path}, line {_line(yaml.compose(text), ('name',))}: {_misnamed(regime, path.stem)}")
    return regime


def _misnamed(regime: RegimeConfig, option: str) -> str:
    """Why a regime file whose name is not its file's is refused, and how to keep its folders."""
    def keeping(template: str) -> str:
        return template.replace("{model}", f"{regime.name}-{{index}}")

    entries = [*regime.exclude, *regime.folders]
    renamed = ", ".join(option + name[len(regime.name):] for name in entries[:2] if name.startswith(regime.name))
    return (f"name: {regime.name}: a regime is named after its file, so expected name: {option}. To read "
            f"{regime.name}'s folders under that name, write each model's folder with {{index}}: original_dir: "
            f"\"{keeping(regime.original_dir)}\", seed_dir: \"{keeping(regime.seed_dir)}\""
            + (f" (and name its exclude: and folders: entries {renamed}, ...)" if renamed else ""))


def regime_files(config_sources: Any) -> dict[str, Path]:
    """Every regime file of the config sources (a Hydra config's hydra.runtime.config_sources),
    by option name, each the first one Hydra finds: a user's --config-dir before the package."""
    found: dict[str, Path] = {}
    for source in config_sources:
        if source.schema == "pkg":
            folder: Any = resources.files(source.path).joinpath("regime")
        elif source.schema == "file":
            folder = Path(source.path, "regime")
        else:
            continue
        if folder.is_dir():
            for entry in folder.iterdir():
                if entry.name.endswith(".yaml"):
                    found.setdefault(entry.name[:-len(".yaml")], Path(str(entry)))
    return found


def regime_exclusions(config_sources: Any) -> dict[str, str]:
    """What the regime files of the config sources exclude: model or instance -> reason (and file).
    Each file is checked as a run checks it (load_regime_file)."""
    reasons = {}
    for choice, path in regime_files(config_sources).items():
        exclude = load_regime_file(path).exclude
        reasons |= {str(name): f"{reason} (regime/{choice}.yaml)" for name, reason in exclude.items()}
    return reasons


def _line(node: Any, key: tuple) -> int | None:
    """The line of a key path in a composed YAML document, or None where it is not there."""
    line = None
    for part in key:
        if isinstance(node, yaml.MappingNode):
            match = [(k, v) for k, v in node.value if k.value == str(part)]
            if not match:
                return line
            line, node = match[0][0].start_mark.line + 1, match[0][1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


class _RepeatedKey(Exception):
    def __init__(self, key: str, line: int) -> None:
        super().__init__(key)
        self.key, self.line = key, line


class _UniqueKeyLoader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise _RepeatedKey(str(key), key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)
