"""The schema of a comparison job, registered in Hydra's ConfigStore.

The types live here; the values live in the YAML files under `conf/`, which merge
onto these dataclasses, so a mistyped key or a value of the wrong type fails at
composition with the valid choices listed.
"""

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from cka_hydra.pairs import instance_name

@dataclass
class RegimeConfig:
    name: str = MISSING
    # model index -> training tasks, first task first
    models: Dict[int, List[str]] = MISSING
    seeds: List[str] = MISSING
    original_dir: str = MISSING
    seed_dir: str = MISSING
    representations_dir: str = MISSING


@dataclass
class PairConfig:
    a: int = MISSING
    b: int = MISSING


@dataclass
class SeedPairConfig:
    a: str = MISSING
    b: str = MISSING


@dataclass
class DataConfig:
    root: Optional[str] = MISSING


class Kernel(Enum):
    linear = "linear"
    rbf = "rbf"


class Precision(Enum):
    float64 = "float64"
    float32 = "float32"


@dataclass
class CKAConfig:
    kernel: Kernel = MISSING
    sigma_frac: float = MISSING
    debiased: bool = MISSING
    precision: Precision = MISSING
    bootstrap: int = MISSING
    confidence: float = MISSING
    seed: int = MISSING


@dataclass
class RunConfig:
    regime: RegimeConfig = MISSING
    pair: PairConfig = MISSING
    seed_pair: SeedPairConfig = MISSING
    layer: int = MISSING
    data: DataConfig = field(default_factory=DataConfig)
    checkpoints: Any = MISSING  # final | all | [step, ...]: checked by the job
    city_filter: Optional[str] = MISSING
    cka: CKAConfig = field(default_factory=CKAConfig)
    device: str = MISSING  # auto | cpu | cuda | cuda:N: checked by the job
    overwrite: bool = MISSING
    allow_overlap: bool = MISSING


@dataclass
class ReportConfig:
    sweep_dir: str = MISSING
    out_dir: str = MISSING


def register() -> None:
    """Put the schemas in the ConfigStore and the resolver that names instances in OmegaConf."""
    ConfigStore.instance().store(name="cka_hydra_schema", node=RunConfig)
    ConfigStore.instance().store(name="cka_hydra_report_schema", node=ReportConfig)
    if not OmegaConf.has_resolver("cka_instance"):
        OmegaConf.register_new_resolver(
            "cka_instance",
            lambda regime, index, seed: instance_name(f"{regime}-{index}", str(seed)),
        )
