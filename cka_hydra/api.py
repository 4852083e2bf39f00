"""The Python way in, for notebooks and scripts: no command line, no Hydra app started.

    from cka_hydra import compare, load_results

    results = load_results("outputs/cka")        # every result of a sweep, one row per step
    timeline = compare(["regime=pt3", "pair=4_5", "seed_pair=1_2", "layer=5", "data.root=/data/exp"])

`compare` composes the same config as `python -m cka_hydra <overrides>` (Hydra's compose API),
checks it as a run is checked, and runs it through the same job and engine; `load_results`
reads result folders as the report does. Both raise InputError with the command line's one
line for bad input.
"""

import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
from hydra import compose, initialize_config_module
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.cka_hydra_configs.user_config_dir import USER_CONFIG_DIR

from cka_hydra import lifecycle, run_folder
from cka_hydra.app import checked_run
from cka_hydra.errors import InputError
from cka_hydra.overrides import hydra_argv
from cka_hydra.regime_files import load_regime_file
from cka_hydra.results import collect
from cka_hydra.results_dir import misplaced

__all__ = ["compare", "load_results"]


def load_results(results_dir: str | Path) -> pd.DataFrame:
    """Every result below a results dir, as the tidy table the report writes.

    A result counts by its files (`summary.json` and its timeline), whether a sweep, a single run
    or `compare` wrote it. Folders without a complete result of the store as it is now (failed,
    lost, half-written, stale: a file they read has changed) are left out, and counted.

    Args:
        results_dir: a results dir, such as `outputs/cka` (a sweep's `hydra.sweep.dir`;
            `outputs/cka_demo` on the demo store), or any folder below one.

    Returns:
        One row per comparison and checkpoint step, with `cka_results.csv`'s columns (see
        docs/report.md): `setting` (the settings' name: `default`, `rbf0.4`, `procrustes`...;
        never pool two), `regime`, `layer`, `layer_b`, `model_a`, `seed_a`, `model_b`,
        `seed_b`, `instance_a`, `instance_b`, their tasks, `step`, `final` (each
        comparison's last step), `value` (the measure's), `similarity` (the value read so that
        higher is more alike: 1 - disparity for a distance), `chance`, `calibrated`, the
        permutation test's and bootstrap's columns where computed, `n_cities`, `run_dir`.
        `attrs["left_out"]` maps each reason a folder was left out to its count,
        `attrs["left_out_runs"]` lists each such folder with its reason and detail, and
        `attrs["settings"]` maps each `setting` to the overrides it stands for.

    Raises:
        InputError: results_dir is no folder.

    Example (the demo study, after `python -m cka_hydra -m sweep`):

    ```python
    from cka_hydra import load_results

    results = load_results("outputs/cka_demo")
    final = results[results["final"] & (results["setting"] == "default")]
    print(final.groupby(["regime", "layer"])["similarity"].agg(["mean", "count"]))
    print(results.attrs["left_out"])  # {} when every run folder holds a current result
    ```
    """
    folder = Path(results_dir).expanduser().resolve()
    if not folder.is_dir():
        raise InputError(f"load_results({str(results_dir)!r}): {'not a folder' if folder.exists() else 'no such folder'}"
                         "; expected a results dir, such as outputs/cka (a sweep's hydra.sweep.dir)")
    frame, left_out, meanings, details = collect(folder)
    frame.attrs.update(left_out=dict(left_out), left_out_runs=details, settings=meanings)
    return frame


def compare(overrides: Sequence[str] = (), write: bool = True, config_dir: str | Path | None = None) -> pd.DataFrame:
    """One comparison, in this process, as `python -m cka_hydra <overrides>` runs it.

    The config is composed as the command line composes it (Hydra's compose API: the same
    defaults, groups and checks), and run through the same job and engine: the same value, to
    1e-12, in the same run folder.

    Args:
        overrides: the command line's settings, one string each: `["regime=pt3", "pair=4_5",
            "seed_pair=1_2", "layer=5", "data.root=/path/to/experiments"]`. Left out, a setting
            keeps its default (docs/comparison.md); without `data.root`, the demo store.
        write: write the run folder as the command line does (`.hydra/`, the log, the result),
            or read the result already there for the same settings and inputs instead of
            computing it again. False: compute, and write nothing.
        config_dir: a folder of your own configs (regimes, measures), as `--config-dir`.

    Returns:
        The timeline, one row per compared checkpoint, with the columns `step`, `value` (the measure's),
        `n_cities`; `chance` (the exact chance level, for CKA and PCA CKA); `null_mean`,
        `null_std`, `p_value` with `null.permutations`; `calibrated` (the similarity above
        chance as a share of its room above chance) where a null mean is known; `cka_low`,
        `cka_high` with `cka.bootstrap`. `attrs["summary"]` is the result's `summary.json`,
        and `attrs["run_dir"]` (with write) its run folder.

    Raises:
        InputError: bad overrides or inputs, in the command line's one line: an unknown option
            or key (Hydra's message: `Could not find 'regime/pt9' Available options in 'regime':
            pt1 pt2 pt3`), a value out of range, a pair that shares a training task, a missing
            folder or checkpoint, a results dir of another store. A string instead of a list,
            and a start inside a results dir, are refused too.

    Example (on the demo store):

    ```python
    from cka_hydra import compare

    timeline = compare(["regime=pt3", "pair=4_5", "seed_pair=1_2", "layer=5", "checkpoints=all"])
    print(timeline[["step", "value", "chance", "calibrated"]])
    print(timeline.attrs["run_dir"])  # outputs/cka_demo/pt3/pt3-4_seed1_vs_pt3-5_seed2/layer5-all

    rsa = compare(["regime=pt3", "pair=4_5", "layer=5", "measure=rsa"], write=False)
    print(rsa["value"].iloc[-1])  # RSA at the last common step, nothing written
    ```
    """
    from cka_hydra import engine

    if isinstance(overrides, str):
        raise InputError(f"compare({overrides!r}): expected a list of overrides, such as [\"regime=pt3\", "
                         "\"layer=5\"]")
    message = misplaced(Path.cwd(), overrides)
    if message:
        raise InputError(f"compare: {message}")
    cfg = _composed(list(overrides), config_dir)
    run, run_dir, results = checked_run(cfg)
    if not write:
        start = time.perf_counter()
        inputs = lifecycle.check(run, run_dir, None)
        result = engine.compute(run, inputs)
        header, rows = lifecycle.timeline_rows(run, result)
        return _timeline(pd.DataFrame(rows, columns=header),
                         lifecycle.result_summary(run, inputs, result, time.perf_counter() - start))
    inputs = lifecycle.check(run, run_dir, results)  # refused before its folder is written, as a run is
    if run.overwrite or not lifecycle.is_finished(run_dir, inputs.settings, inputs.record):  # else left as it is
        _write_hydra_files(cfg, run_dir, list(overrides))
        with _job_log(run_dir / f"{cfg.hydra.job.name}.log"):
            lifecycle.run(run, run_dir, results)
    summary = run_folder.read_result(run_dir)
    return _timeline(pd.read_csv(run_folder.timeline_path(run_dir, summary)), summary, run_dir)


def _timeline(frame: pd.DataFrame, summary: dict, run_dir: Path | None = None) -> pd.DataFrame:
    from cka_hydra import registry

    measure = registry.of_summary(summary)
    frame = frame.rename(columns={measure.column: "value"})
    null_mean = [frame[column] for column in ("chance", "null_mean") if column in frame]  # the exact one first
    if null_mean:
        frame["calibrated"] = measure.calibrated(frame["value"], null_mean[0])
    frame.attrs["summary"] = summary
    if run_dir is not None:
        frame.attrs["run_dir"] = str(run_dir)
    return frame


def _composed(overrides: list[str], config_dir: str | Path | None) -> DictConfig:
    """The job's config as `python -m cka_hydra` composes it, with the hydra node (its folders)."""
    folder = None
    if config_dir is not None:
        folder = Path(config_dir).expanduser().resolve()
        if not folder.is_dir():
            raise InputError(f"config_dir={config_dir}: no such folder (expected a folder of configs, such as "
                             "regime/pt1.yaml)")
        for path in sorted(folder.glob("regime/*.yaml")):
            load_regime_file(path)
    with _environment(USER_CONFIG_DIR, None if folder is None else str(folder)):
        with initialize_config_module(config_module="cka_hydra.conf", version_base="1.3"):
            try:
                cfg = compose(config_name="config", overrides=hydra_argv(overrides), return_hydra_config=True)
            except Exception as err:  # Hydra's own errors for an unknown option or key, in one line
                raise InputError(_one_line(err)) from None
    return cfg


def _one_line(err: BaseException) -> str:
    """Hydra's message and its cause's, in one line: what is wrong, the options or the hint, and
    why (not the search path or OmegaConf's key details)."""
    parts = []
    for text in (str(err), str(err.__cause__ or "")):
        for line in text.split("Config search path:")[0].splitlines():
            line = line.strip()
            if line and not line.startswith(("full_key:", "object_type=", "reference_type=")):
                parts.append(line)
    return " ".join(parts) or type(err).__name__


@contextmanager
def _environment(name: str, value: str | None) -> Iterator[None]:
    before = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _write_hydra_files(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> None:
    """`.hydra/config.yaml`, `hydra.yaml` and `overrides.yaml`, as Hydra writes them for a run."""
    folder = run_dir / ".hydra"
    folder.mkdir(parents=True, exist_ok=True)
    job_cfg = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
    OmegaConf.save(job_cfg, folder / "config.yaml")
    OmegaConf.save(OmegaConf.create({"hydra": cfg.hydra}), folder / "hydra.yaml")
    OmegaConf.save(OmegaConf.create(overrides), folder / "overrides.yaml")


@contextmanager
def _job_log(path: Path) -> Iterator[None]:
    """The run's log file, as Hydra's job logging writes it."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(min(level, logging.INFO) if level else logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()
