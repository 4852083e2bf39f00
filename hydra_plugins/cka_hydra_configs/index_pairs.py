"""Options `pair=A_B` and `seed_pair=A_B` for any model indices and seed names.

`conf/pair/` and `conf/seed_pair/` ship files for the packaged regimes (models 1-8, seeds
orig, 1, 2); a user's regime may have a model 9 or a seed 3. This config source serves such an
option the way its file would (`seed_pair/2_3` -> `{a: "2", b: "3"}`); whether the regime has
that model or seed is the run's check, which names what it does have. It lists no options, so
`--help` and Hydra's suggestions show the files.
"""
# No `from __future__ import annotations` here: it breaks the plugin discovery of Hydra 1.3.8.
import re
from typing import Any, Dict, List, Optional

from hydra.core.object_type import ObjectType
from hydra.plugins.config_source import ConfigLoadError, ConfigResult, ConfigSource
from omegaconf import OmegaConf

SCHEME = "cka-pairs"
# an option of each group, as its file would be named (without .yaml)
OPTIONS = {"pair": re.compile(r"(\d+)_(\d+)"), "seed_pair": re.compile(r"([A-Za-z0-9.-]+)_([A-Za-z0-9.-]+)")}


def option_values(group: str, option: str) -> Optional[Dict[str, Any]]:
    """The values a group's option file would hold, or None for no such option."""
    match = OPTIONS[group].fullmatch(option) if group in OPTIONS else None
    if match is None:
        return None
    a, b = match.groups()
    return {"a": int(a), "b": int(b)} if group == "pair" else {"a": a, "b": b}


class IndexPairs(ConfigSource):
    @staticmethod
    def scheme() -> str:
        return SCHEME

    def _split(self, config_path: str) -> Optional[Dict[str, Any]]:
        group, _, option = self._normalize_file_name(config_path.strip("/")).removesuffix(".yaml").partition("/")
        return option_values(group, option)

    def load_config(self, config_path: str) -> ConfigResult:
        values = self._split(config_path)
        if values is None:
            raise ConfigLoadError(f"{config_path}: no such option")
        return ConfigResult(config=OmegaConf.create(values), path=f"{SCHEME}://{self.path}", provider=self.provider,
                            header={"package": None})

    def available(self) -> bool:
        return True

    def is_group(self, config_path: str) -> bool:
        return config_path.strip("/") in ("", *OPTIONS)

    def is_config(self, config_path: str) -> bool:
        return self._split(config_path) is not None

    def list(self, config_path: str, results_filter: Optional[ObjectType]) -> List[str]:
        return []
