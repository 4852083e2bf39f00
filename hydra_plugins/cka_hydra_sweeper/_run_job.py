"""One job as Hydra's `run_job` runs it, for a fraction of its framework cost.

Hydra's run_job (hydra.core.utils) copies a job's whole config five times (three masked copies
of its hydra node, a copy for the task, another for the return) and writes `.hydra/` through
PyYAML's pure-Python emitter, which for `hydra.yaml` costs more than a comparison on the demo
store. This runs the same steps in the same order (output folder, logging, `.hydra/`, env_set,
the callbacks' on_job_start and on_job_end, the task) and writes the same bytes, with one copy
(the task's config) and the YAML of each part of the hydra node kept between jobs: the jobs of a
sweep differ in a few of its keys (job, runtime, overrides). tests/test_run_job.py compares the
files with Hydra's own.
"""
import copy
import os
import pickle
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobRuntime, JobStatus, _flush_loggers, configure_log, env_override
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf._utils import get_omega_conf_dumper


def run_job(hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig,
            job_dir_key: str = "hydra.sweep.dir", job_subdir_key: Optional[str] = "hydra.sweep.subdir") -> JobReturn:
    """hydra.core.utils.run_job, the same effects. The return's cfg is the task's config and its
    hydra_cfg the job's whole config (Hydra's: a copy of its hydra node alone)."""
    callbacks = hydra_context.callbacks
    old_cwd = os.getcwd()
    hydra_config = HydraConfig.instance()
    orig_hydra_cfg = hydra_config.cfg
    # HydraConfig.get() is the job's hydra node itself, read-only as set_config makes it, not a copy
    OmegaConf.set_readonly(config.hydra, True)
    hydra_config.cfg = config  # type: ignore[assignment]
    output_dir = str(OmegaConf.select(config, job_dir_key))
    if job_subdir_key is not None:
        output_dir = os.path.join(output_dir, str(OmegaConf.select(config, job_subdir_key)))
    with read_write(config.hydra.runtime), open_dict(config.hydra.runtime):
        config.hydra.runtime.output_dir = os.path.abspath(output_dir)
    chdir = bool(config.hydra.job.chdir)  # None: False, since Hydra 1.2 (this app's version_base is 1.3)
    try:
        ret = JobReturn()
        task_cfg = _task_config(config)
        ret.cfg, ret.hydra_cfg = task_cfg, config
        overrides = OmegaConf.to_container(config.hydra.overrides.task)
        assert isinstance(overrides, list)
        ret.overrides = overrides
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        if chdir:
            os.chdir(output_dir)
            ret.working_dir = output_dir
        else:
            ret.working_dir = os.getcwd()
        configure_log(config.hydra.job_logging, config.hydra.verbose)
        if config.hydra.output_subdir is not None:
            hydra_output = Path(config.hydra.runtime.output_dir) / Path(config.hydra.output_subdir)
            hydra_output.mkdir(parents=True, exist_ok=True)
            _write(hydra_output / "config.yaml", _yaml_by_key(_container(task_cfg)))
            _write(hydra_output / "hydra.yaml", _yaml_by_key(_container(config.hydra), "hydra"))
            _write(hydra_output / "overrides.yaml", _yaml(overrides))
        with env_override(config.hydra.job.env_set):
            callbacks.on_job_start(config=config, task_function=task_function)
            try:
                ret.return_value = task_function(task_cfg)
                ret.status = JobStatus.COMPLETED
            except Exception as e:
                ret.return_value = e
                ret.status = JobStatus.FAILED
        ret.task_name = JobRuntime.instance().get("name")
        _flush_loggers()
        callbacks.on_job_end(config=config, job_return=ret)
        return ret
    finally:
        hydra_config.cfg = orig_hydra_cfg
        if chdir:
            os.chdir(old_cwd)


def run_sweep_job(hydra_context: HydraContext, task_function: TaskFunction, master_config: DictConfig,
                  overrides: Sequence[str], job_num: int, job_id: Optional[str] = None,
                  job_dir_key: str = "hydra.sweep.dir") -> JobReturn:
    """One job of a sweep, as Hydra's launchers run one: its config composed from the sweep's
    (by the context's loader), numbered, then run_job. job_id: by default `<job name>_<job_num>`,
    as hydra-joblib-launcher names its jobs."""
    sweep_config = hydra_context.config_loader.load_sweep_config(master_config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = job_id or f"{sweep_config.hydra.job.name}_{job_num}"
        sweep_config.hydra.job.num = job_num
    return run_job(hydra_context, task_function, sweep_config, job_dir_key)


def _task_config(config: DictConfig) -> DictConfig:
    """A copy of the job's config without its hydra node (Hydra copies the whole config, then
    deletes the node): the node is set aside while the rest is copied."""
    content = config.__dict__["_content"]  # not through open_dict: the copy keeps the config's flags
    keys = list(content)
    hydra_node = content.pop("hydra")
    try:
        task_cfg = _copy(config)
    finally:
        content["hydra"] = hydra_node
        for key in keys[keys.index("hydra") + 1:]:  # the keys after it back after it: a config keeps its order
            content[key] = content.pop(key)
    return task_cfg


def _copy(config: DictConfig) -> DictConfig:
    """copy.deepcopy(config), through pickle (a third of the time); by deepcopy where a node's type
    cannot be pickled by its name (a plugin's class that Hydra's plugin scan imported again)."""
    try:
        return pickle.loads(pickle.dumps(config, protocol=pickle.HIGHEST_PROTOCOL))  # type: ignore[no-any-return]
    except pickle.PicklingError:
        return copy.deepcopy(config)


def _container(config: DictConfig) -> Dict[str, Any]:
    container = OmegaConf.to_container(config, resolve=False, enum_to_str=True)  # as OmegaConf.to_yaml has it
    assert isinstance(container, dict)
    return container


def _yaml(data: Any) -> str:
    """OmegaConf.to_yaml's text for plain data."""
    return yaml.dump(data, default_flow_style=False, allow_unicode=True, sort_keys=False,  # type: ignore[no-any-return]
                     Dumper=get_omega_conf_dumper())


def _yaml_by_key(mapping: Dict[str, Any], parent: Optional[str] = None) -> str:
    """_yaml(mapping), or _yaml({parent: mapping}): a block mapping's text is its keys' texts one
    after another, each made once per process for each value it has."""
    if not mapping:
        return _yaml({parent: mapping} if parent else mapping)
    return (f"{parent}:\n" if parent else "") + "".join(_key_text(parent, key, value) for key, value in mapping.items())


_KEY_TEXTS: Dict[Tuple[Optional[str], str, str], str] = {}


def _key_text(parent: Optional[str], key: str, value: Any) -> str:
    cached = (parent, key, repr(value))  # a value's repr tells it from every other (1, True, '1', 1.0)
    text = _KEY_TEXTS.get(cached)
    if text is None:
        text = _yaml({parent: {key: value}})[len(f"{parent}:\n"):] if parent else _yaml({key: value})
        if len(_KEY_TEXTS) >= 4096:
            _KEY_TEXTS.clear()
        _KEY_TEXTS[cached] = text
    return text


def _write(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as file:
        file.write(text)

