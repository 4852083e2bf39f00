"""The launchers' run_job does what Hydra's does, byte for byte: the run folder's .hydra/ files and
log, the task's config, the return, the callbacks, env_set, a failing task."""

import logging
import os
import re
import shutil

import pytest
from hydra import initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobStatus, run_job as hydras_run_job
from hydra.experimental.callback import Callback
from hydra.types import HydraContext, RunMode
from omegaconf import OmegaConf, open_dict

from cka_hydra.app import register
from cka_hydra.overrides import hydra_argv
from hydra_plugins.cka_hydra_sweeper._job_configs import JobConfigLoader
from hydra_plugins.cka_hydra_sweeper._run_job import run_job

register()
log = logging.getLogger("a_task")


class Recorder(Callback):
    def __init__(self) -> None:
        self.calls = []

    def on_job_start(self, config, **kwargs):
        self.calls.append(("start", config.hydra.job.num, os.environ.get("CKA_TEST_ENV")))

    def on_job_end(self, config, job_return, **kwargs):
        self.calls.append(("end", config.hydra.job.num, job_return.status.name))


def task(cfg):
    """Logs, reads the job's Hydra config and environment, and fails on layer 0."""
    log.info("pair %s, layer %s", cfg.pair.a, cfg.layer)
    if cfg.layer == 0:
        raise ValueError("no layer 0 here")
    return (OmegaConf.to_yaml(cfg), HydraConfig.get().runtime.output_dir, HydraConfig.get().job.num,
            os.environ.get("CKA_TEST_ENV"), os.getcwd())


JOBS = [["regime=pt2", "pair='1_2'", "seed_pair='orig_1'", "layer='5'"],
        ["regime=pt2", "pair='1_3'", "seed_pair='1_2'", "layer='3'"],
        ["regime=pt3", "pair='2_3'", "seed_pair='orig_2'", "layer='0'"],
        ["regime=pt3", "pair='4_5'", "seed_pair='orig_1'", "layer='6'", "cka.kernel=rbf"]]


@pytest.mark.parametrize("chdir", [False, True])
def test_run_job_writes_and_returns_what_hydras_does(tmp_path, chdir):
    sweep_dir = tmp_path / "sweep"
    overrides = [f"hydra.sweep.dir={sweep_dir}", "+hydra.job.env_set.CKA_TEST_ENV=set",
                 *(["hydra.job.chdir=true"] if chdir else [])]
    with initialize_config_module(config_module="cka_hydra.conf", version_base="1.3"):
        hydra_loader = GlobalHydra.instance().config_loader()
        master = hydra_loader.load_configuration("sweep", hydra_argv(overrides), RunMode.MULTIRUN)
        outcomes = {}
        for name, runner in (("hydra", hydras_run_job), ("ours", run_job)):
            shutil.rmtree(sweep_dir, ignore_errors=True)
            recorder = Recorder()
            context = HydraContext(config_loader=JobConfigLoader(hydra_loader), callbacks=recorder)
            returns, files = [], {}
            for num, job in enumerate(JOBS):
                config = context.config_loader.load_sweep_config(master, job)
                with open_dict(config):
                    config.hydra.job.id, config.hydra.job.num = f"cka_{num}", num
                cwd = os.getcwd()
                returns.append(runner(hydra_context=context, task_function=task, config=config,
                                      job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir"))
                assert os.getcwd() == cwd
            for path in sorted(sweep_dir.rglob("*")):
                if path.is_file():
                    files[path.relative_to(sweep_dir).as_posix()] = path.read_bytes()
            logging.shutdown()
            outcomes[name] = (recorder.calls, files, [
                (r.status, r.return_value if r.status == JobStatus.COMPLETED else repr(r._return_value), r.overrides,
                 r.working_dir, r.task_name, OmegaConf.to_yaml(r.cfg)) for r in returns])
    (calls, files, returned), theirs = outcomes["ours"], outcomes["hydra"]
    assert calls == theirs[0] and len(calls) == 2 * len(JOBS)
    assert [r[0] for r in returned] == [JobStatus.COMPLETED] * 2 + [JobStatus.FAILED, JobStatus.COMPLETED]
    assert returned == theirs[2]
    logs = {name: text for name, text in files.items() if name.endswith(".log")}
    assert len(logs) == len(JOBS) and all(b"pair" in text for text in logs.values())
    assert sum(name.endswith(".hydra/hydra.yaml") for name in files) == len(JOBS)
    assert untimed(files) == untimed(theirs[1])


def untimed(files):
    """The files, each log line without its time."""
    return {name: re.sub(rb"(?m)^\[[0-9-]+ [0-9:,]+\]", b"", text) for name, text in files.items()}
