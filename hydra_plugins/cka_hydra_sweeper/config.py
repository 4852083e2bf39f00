# No `from __future__ import annotations` here: it breaks the plugin discovery of Hydra 1.3.8.
from dataclasses import dataclass
from typing import Dict, Optional

from hydra.core.config_store import ConfigStore

from cka_hydra.pairs import SeedPolicy


@dataclass
class CKASweeperConf:
    _target_: str = "hydra_plugins.cka_hydra_sweeper.cka_sweeper.CKASweeper"
    # default values of the groups regime, pair, seed_pair, layer (and other keys), as
    # "a,b,c" strings; the command line replaces them key by key
    params: Optional[Dict[str, str]] = None
    # seed pairs compared when the command line names none
    seed_policy: SeedPolicy = SeedPolicy.study
    # also compare each model with itself at the policy's seed pairs
    self_pairs: bool = False
    # jobs handed to the launcher at once: a worker that dies loses at most this many; null: 256, or
    # the whole sweep for launchers whose array tasks fail alone (hydra/launcher=slurm, slurm_local)
    batch_size: Optional[int] = None
    # print each job's overrides and the count; compute nothing
    dry_run: bool = False
    # after the sweep, poll the store every this many seconds and extend the timelines whose
    # instances gained checkpoints (docs/following.md); null: end with the sweep
    follow: Optional[float] = None
    # following ends after this many seconds without a new checkpoint (or on Ctrl-C, SIGTERM)
    follow_idle: float = 3600


ConfigStore.instance().store(group="hydra/sweeper", name="cka", node=CKASweeperConf, provider="cka_hydra")
