import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cka_hydra.demo import DemoSpec, write_store

SMALL = DemoSpec(n_cities=60, hidden=6, n_tokens=2, n_checkpoints=3, layers=(3, 5), regimes=("pt1", "pt2", "pt3"))


@pytest.fixture(scope="session")
def small_store(tmp_path_factory) -> Path:
    """A demo store small enough for many CLI runs; tests must not modify it."""
    root = tmp_path_factory.mktemp("store")
    write_store(root, SMALL)
    return root


@pytest.fixture
def store_copy(small_store, tmp_path) -> Path:
    """A private copy of the small store that a test may break."""
    import shutil

    root = tmp_path / "store"
    shutil.copytree(small_store, root)
    return root


def run_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python -m cka_hydra ARGS` as a user would, in cwd; `.stdout` holds stdout and stderr."""
    return subprocess.run(
        [sys.executable, "-m", "cka_hydra", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=timeout,
    )


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def representations_dir(root: Path, instance_dir: str, task: str, layer: int) -> Path:
    """The store layout, spelled out independently of cka_hydra.store."""
    return root / instance_dir / "analysis_higher" / f"{task}_firstcity_last_and_trans_l{layer}" / "representations"


def save_checkpoint(folder: Path, tensors: dict, cities: list[dict]) -> None:
    """Write one checkpoint folder in the store's format."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(tensors, folder / "representations.pt")
    (folder / "metadata.json").write_text(json.dumps({"city_info": cities}))
