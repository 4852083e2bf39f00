"""A job's choices that need no store: devices and checkpoint steps."""

import subprocess
import sys

import pytest
import torch

from conftest import save_checkpoint

from cka_hydra.errors import InputError
from cka_hydra.filters import parse_filter
from cka_hydra.cities import kept_cities
from cka_hydra.engine import resolve_device
from cka_hydra.inputs import select_steps


def test_auto_device_spreads_jobs_over_the_gpus_torch_sees(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert resolve_device("auto", 5) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert [resolve_device("auto", job) for job in range(3)] == [
        torch.device("cuda:0"), torch.device("cuda:1"), torch.device("cuda:0")]
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(InputError, match=r"device=cuda:2: torch sees 2 CUDA device\(s\)"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "CPU", ""])
def test_unknown_device(spec):
    with pytest.raises(InputError, match="expected auto, cpu, cuda or cuda:N"):
        resolve_device(spec)


def test_cpu_device():
    assert resolve_device("cpu") == torch.device("cpu")


def test_checkpoint_selection():
    a, b = [0, 100, 200, 300], [0, 100, 300, 400]
    assert select_steps("final", a, b, "A", "B") == [300]
    assert select_steps("all", a, b, "A", "B") == [0, 100, 300]
    assert select_steps([0, 300], a, b, "A", "B") == [0, 300]
    with pytest.raises(InputError, match=r"steps \[200\] are not held by both A and B; common steps: \[0, 100, 300\]"):
        select_steps([0, 200], a, b, "A", "B")
    with pytest.raises(InputError, match=r"A and B share no checkpoint step: A has \[1\], B has \[2\]"):
        select_steps("final", [1], [2], "A", "B")


def test_planning_imports_no_torch():
    """The sweeper's process plans and checks every job; importing torch there costs 1.5 s a sweep."""
    code = ("import sys, cka_hydra.app, cka_hydra.demo, cka_hydra.inputs, hydra_plugins.cka_hydra_sweeper._core; "
            "print(sorted(m for m in ('torch', 'pandas') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_a_city_list_is_read_again_once_its_file_changes(tmp_path):
    def write(ids):
        save_checkpoint(tmp_path, {"representations_flat": torch.zeros(len(ids), 2)},
                        [{"row_id": i, "region": "Europe"} for i in ids])

    def kept(city_filter):
        kept = kept_cities(tmp_path, parse_filter(city_filter))
        return kept.n_cities, kept.rows.tolist(), kept.ids.tolist()

    write([1000, 2000])
    assert kept(None) == (2, [0, 1], ["1000", "2000"])
    write([1000, 2000, 3000])  # a checkpoint rewritten while a worker runs
    assert kept(None) == (3, [0, 1, 2], ["1000", "2000", "3000"])
    assert kept("city_id:^2") == (3, [1], ["2000"])
