"""The demo store: the real layout and format, deterministic, with the planted structure."""

import json
import threading
import time

import torch
from conftest import SMALL, representations_dir

from cka_hydra import demo
from cka_hydra.demo import checkpoint_steps

METADATA_KEYS = {
    "step", "checkpoint_path", "layers", "n_cities", "n_tokens", "n_layers", "hidden_dim", "n_train_cities",
    "n_test_cities", "representation_shape", "representation_flat_dim", "city_info", "probe_train_pattern",
    "probe_test_pattern", "prompt_format", "x_train_mean", "y_train_mean",
}


def test_command_writes_a_store_of_the_requested_size(tmp_path, capsys):
    out = tmp_path / "store"
    demo.main([str(out), "--cities", "30", "--hidden", "5", "--tokens", "3", "--checkpoints", "4", "--regimes", "pt2",
               "--layers", "4"])
    assert capsys.readouterr().out.startswith(f"wrote {out} in ")
    folder = representations_dir(out, "revision/exp2/pt2-7_seed2", "perimeter", 4)
    assert sorted(p.name for p in folder.iterdir()) == [f"checkpoint-{s}" for s in sorted(map(str, [0, 54691, 109382, 164073]))]
    data = torch.load(folder / "checkpoint-164073/representations.pt", weights_only=True)
    assert data["representations"].shape == (30, 3, 1, 5)
    assert data["representations_flat"].shape == (30, 15)
    assert torch.equal(data["representations_flat"], data["representations"].reshape(30, -1))
    assert data["step"] == 164073 and data["layers"] == [4]
    metadata = json.loads((folder / "checkpoint-164073/metadata.json").read_text())
    assert set(metadata) == METADATA_KEYS
    assert not (out / "pt1-1").exists() and not (out / "pt3-1").exists()


def test_small_store_is_realistic(small_store):
    first = json.loads((representations_dir(small_store, "pt1-1", "distance", 3) / "checkpoint-0/metadata.json")
                       .read_text())["city_info"]
    other = json.loads((representations_dir(small_store, "revision/exp4/pt1-1_seed1", "distance", 3)
                        / "checkpoint-0/metadata.json").read_text())["city_info"]
    assert all(set(c) == {"row_id", "name", "x", "y", "country", "region"} for c in first)
    ids = [c["row_id"] for c in first]
    assert len(set(ids)) == SMALL.n_cities
    assert any(i < 1000 for i in ids) and any(c["region"] == "Atlantis" for c in first)
    assert [c["row_id"] for c in other] != ids and sorted(c["row_id"] for c in other) == sorted(ids)
    for regime, final in (("pt1", 328146), ("pt2", 164073), ("pt3", 164073)):
        assert checkpoint_steps(regime, 3) == [0, final // 2, final]


def test_deterministic(small_store, tmp_path):
    from cka_hydra.demo import write_store

    write_store(tmp_path, SMALL)
    rel = representations_dir(tmp_path, "revision/exp2/pt3-5_seed1", "perimeter", 5).relative_to(tmp_path)
    a = torch.load(small_store / rel / "checkpoint-82036/representations.pt", weights_only=True)
    b = torch.load(tmp_path / rel / "checkpoint-82036/representations.pt", weights_only=True)
    assert torch.equal(a["representations_flat"], b["representations_flat"])


def test_planted_structure(small_store):
    """CKA grows over training, and disjoint-task pairs agree more with more training tasks."""
    from test_pairs import DISJOINT, TASKS

    from cka_hydra.cka import linear_cka

    def cka(regime, a, b, step):
        def matrix(index, instance_dir):
            folder = representations_dir(small_store, instance_dir, TASKS[regime][index][0], 5) / f"checkpoint-{step}"
            cities = json.loads((folder / "metadata.json").read_text())["city_info"]
            flat = torch.load(folder / "representations.pt", weights_only=True)["representations_flat"]
            return flat[torch.tensor(sorted(range(len(cities)), key=lambda i: cities[i]["row_id"]))]

        seed_dir = "exp4" if regime == "pt1" else "exp2"
        return float(linear_cka(matrix(a, f"{regime}-{a}"), matrix(b, f"revision/{seed_dir}/{regime}-{b}_seed1")))

    means = {}
    for regime in ("pt1", "pt2", "pt3"):
        final = checkpoint_steps(regime, 3)[-1]
        start = [cka(regime, a, b, 0) for a, b in DISJOINT[regime]]
        end = [cka(regime, a, b, final) for a, b in DISJOINT[regime]]
        assert all(e > s for s, e in zip(start, end))
        means[regime] = sum(end) / len(end)
    assert means["pt1"] < means["pt2"] < means["pt3"]


def test_two_first_uses_at_once_write_one_complete_store(tmp_path, monkeypatch, small_store):
    """Two terminals start the demo at once: one writes the store, the other waits and uses it."""
    writes, write_store = [], demo.write_store

    def slow_small_store(root):
        writes.append(root)
        time.sleep(0.5)  # a wide window for the other to see a half-written store, were it visible
        write_store(root, SMALL)

    monkeypatch.setattr(demo, "write_store", slow_small_store)
    path, start = tmp_path / "outputs" / "demo_store", threading.Barrier(2)
    seen = []

    def first_use():
        start.wait()
        seen.append(sorted(p.relative_to(path) for p in demo.ensure_demo_store(path).rglob("*")))

    threads = [threading.Thread(target=first_use) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(writes) == 1
    complete = sorted(p.relative_to(small_store) for p in small_store.rglob("*"))
    assert seen == [complete, complete]
    assert [p.name for p in path.parent.iterdir() if p.name != "demo_store.lock"] == ["demo_store"]
