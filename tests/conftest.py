import copy
import io
import json
import logging
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import torch

from hydra import compose, initialize_config_module
from hydra.core.plugins import Plugins
from hydra.core.singleton import Singleton

from cka_hydra import run_folder
from cka_hydra import __main__ as cli
from cka_hydra.__main__ import hydra_argv
from cka_hydra.config import default_settings, register, run_config, settings
from cka_hydra.demo import DemoSpec, write_store
from cka_hydra.job import run_comparison

# Import every plugin now, so that the state run_app restores holds what their modules register
# (config nodes, resolvers): a module is imported once, when the first run scans for plugins.
Plugins.instance()

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


def run_app(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m cka_hydra ARGS` in cwd as run_cli runs it, but in this process: the same entry
    point, Hydra, callbacks, sweeper and launchers, without a new interpreter importing torch
    (2 s). `.stdout` holds what the user sees; `.returncode` the exit status."""
    state = copy.deepcopy(Singleton.get_state())
    argv, cwd_before, output = sys.argv, os.getcwd(), io.StringIO()
    sys.argv = ["cka_hydra", *args]
    os.chdir(cwd)
    try:
        with redirect_stdout(output), redirect_stderr(output):
            try:
                cli.run()
                code = 0
            except SystemExit as exit:  # as the interpreter reports it
                code = 1 if isinstance(exit.code, str) else exit.code or 0
                if isinstance(exit.code, str):
                    print(exit.code, file=sys.stderr)
    finally:
        sys.argv = argv
        os.chdir(cwd_before)
        Singleton.set_state(state)
        root = logging.getLogger()
        for handler in root.handlers[:]:  # Hydra's, to this run's log files and output
            root.removeHandler(handler)
            handler.close()
    return subprocess.CompletedProcess(args, code, output.getvalue())


def run_in_process(results_dir: Path, *overrides: str) -> Path:
    """One comparison as a job runs it, in this process: the Compose API, the typed edge and
    run_comparison, into its run folder under results_dir, which is returned."""
    register()
    with initialize_config_module(config_module="conf", version_base="1.3"):
        cfg = compose("config", overrides=hydra_argv(overrides))
    run = run_config(cfg)
    run_dir = results_dir / run_folder.subdir(run.comparison, settings(run), default_settings())
    run_comparison(run, run_dir, results_dir)
    return run_dir


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
