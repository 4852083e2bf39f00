"""The engine's prepared instances: read once and reused, evicted at the limit, and never reused
for other cities, filters, steps or files."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cka_hydra import cities, engine, run_folder
from cka_hydra.store import READS
from cka_hydra.engine import CACHE, InstanceCache, Prepared, aligned_rows
from cka_hydra.filters import parse_filter
from cka_hydra.inputs import Side

from conftest import read_json, reference_from_files, representations_dir, compare_into, save_checkpoint

PAIR = ["regime=pt2", "layer=5"]


@pytest.fixture(autouse=True)
def empty_cache():
    """Each test starts with nothing prepared or parsed (the caches are the process's)."""
    CACHE.clear()
    cities.clear()
    yield
    CACHE.clear()


def counts():
    return CACHE.hits, CACHE.misses, READS.files


def run(results_dir, store, *overrides):
    run_dir = compare_into(results_dir, *PAIR, f"data.root={store}", *overrides)
    return read_json(run_dir / run_folder.SUMMARY_FILE), run_dir


def test_an_instance_met_again_is_not_read_again(small_store, tmp_path):
    hits, misses, files = counts()
    first, _ = run(tmp_path, small_store, "pair=1_2", "seed_pair=orig_1")
    assert (CACHE.hits - hits, CACHE.misses - misses) == (0, 2)
    assert first["bytes_read"] > 0
    hits, misses, files = counts()
    second, _ = run(tmp_path, small_store, "pair=1_3", "seed_pair=orig_1")  # pt2-1 again, pt2-3_seed1 new
    assert (CACHE.hits - hits, CACHE.misses - misses) == (1, 1)
    assert READS.files - files == 2  # pt2-3_seed1's tensor and city list
    assert 0 < second["bytes_read"] < first["bytes_read"]
    hits, misses, _ = counts()
    third, _ = run(tmp_path, small_store, "pair=1_3", "seed_pair=orig_1", "overwrite=true")
    assert (CACHE.hits - hits, CACHE.misses - misses, third["bytes_read"]) == (2, 0, 0)
    assert third["final_cka"] == second["final_cka"]


def test_cache_mb_0_keeps_nothing(small_store, tmp_path):
    run(tmp_path, small_store, "pair=1_2", "seed_pair=orig_1", "cache_mb=0")
    hits, misses, _ = counts()
    again, _ = run(tmp_path, small_store, "pair=1_2", "seed_pair=orig_1", "cache_mb=0", "overwrite=true")
    assert (CACHE.hits - hits, CACHE.misses - misses) == (0, 2)
    assert again["bytes_read"] > 0 and not CACHE.entries


def prepared(nbytes):
    return Prepared(None, torch.zeros(nbytes // 8, dtype=torch.float64), nbytes)


def test_the_least_recently_used_goes_first_leaving_room_to_prepare_the_next():
    """Before an instance is prepared, the least recently used go until it and its preparing's
    memory (BUILD_ROOM entries of the largest size met) fit under the limit."""
    cache = InstanceCache(limit_bytes=(engine.BUILD_ROOM + 3) * 1000)
    for key in "abcd":
        cache.get(key, lambda: prepared(1000))
    assert list(cache.entries) == ["a", "b", "c", "d"]
    cache.get("a", lambda: pytest.fail("a is kept"))  # a is now the most recent
    cache.get("e", lambda: prepared(1000))  # 3 entries + room for 4: b goes
    assert list(cache.entries) == ["c", "d", "a", "e"] and cache.evictions == 1
    built = []
    cache.get("b", lambda: built.append("b") or prepared(1000))
    assert built == ["b"] and list(cache.entries) == ["d", "a", "e", "b"] and cache.nbytes == 4000
    cache.get("huge", lambda: prepared(8000))  # larger than the limit: computed, not kept
    assert list(cache.entries) == ["a", "e", "b"]  # room was made for one of the largest size met then
    cache.get("f", lambda: prepared(1000))  # and now for one of 8000 bytes
    assert list(cache.entries) == ["f"]
    cache.shrink(500)
    assert not cache.entries and cache.nbytes == 0


def test_other_cities_filters_and_steps_are_other_instances(small_store, tmp_path):
    run(tmp_path, small_store, "pair=1_2", "seed_pair=orig_1")
    hits, misses, _ = counts()
    run(tmp_path, small_store, "pair=1_2", "seed_pair=orig_1", "city_filter='region:^Europe'")
    assert (CACHE.hits - hits, CACHE.misses - misses) == (0, 2)
    hits, misses, _ = counts()
    summary, _ = run(tmp_path, small_store, "pair=1_2", "seed_pair=orig_1", "checkpoints=all")
    # its last step is the one compared before (a hit each side); the earlier steps are new
    assert CACHE.hits - hits == 2 and CACHE.misses - misses == 2 * (len(summary["steps"]) - 1)


def test_a_file_rewritten_since_is_read_again(store_copy, tmp_path):
    summary, run_dir = run(tmp_path, store_copy, "pair=1_2", "seed_pair=orig_1")
    folder = representations_dir(store_copy, "revision/exp2/pt2-2_seed1", "angle", 5) / "checkpoint-164073"
    cities = json.loads((folder / "metadata.json").read_text())["city_info"]
    old = torch.load(folder / "representations.pt", weights_only=True)["representations_flat"]
    new = old + torch.randn(old.shape, generator=torch.Generator().manual_seed(1), dtype=old.dtype)
    save_checkpoint(folder, {"representations_flat": new}, cities)
    hits, misses, _ = counts()
    again, _ = run(tmp_path, store_copy, "pair=1_2", "seed_pair=orig_1", "overwrite=true")
    assert (CACHE.hits - hits, CACHE.misses - misses) == (1, 1)  # pt2-1 kept, pt2-2_seed1 read again
    expected, _ = reference_from_files(
        representations_dir(store_copy, "pt2-1", "distance", 5) / "checkpoint-164073", folder)
    assert again["final_cka"] == pytest.approx(expected, abs=1e-12)
    assert again["final_cka"] != pytest.approx(summary["final_cka"], abs=1e-6)


def write_cities(folder, ids, features=3, seed=0):
    cities = [{"row_id": i, "city_id": str(city), "region": "Europe"} for i, city in enumerate(ids)]
    save_checkpoint(folder, {"representations_flat": torch.randn(len(ids), features, generator=torch.Generator()
                                                                 .manual_seed(seed))}, cities)


def test_rows_do_not_depend_on_the_side_an_instance_is_on(tmp_path):
    """Three instances whose city lists hold the same cities in other orders (and one extra city):
    an instance's rows for a comparison are those of the cities sorted by id, whichever side."""
    ids = [1000 + i for i in range(12)]
    folders = {name: tmp_path / name for name in "abc"}
    write_cities(folders["a"], ids)
    write_cities(folders["b"], ids[::-1] + [5000])
    write_cities(folders["c"], ids[6:] + ids[:6])
    keep = parse_filter(None)
    sides = {name: Side(name, "orig", ["t"], tmp_path, name) for name in folders}

    def rows(x, y):
        return aligned_rows(0, folders[x], folders[y], sides[x], sides[y], keep)

    (_, ab_a), (_, ab_b) = rows("a", "b")
    (_, ba_b), (_, ba_a) = rows("b", "a")
    assert ab_a.tolist() == ba_a.tolist() and ab_b.tolist() == ba_b.tolist()
    (_, bc_b), (_, bc_c) = rows("b", "c")
    assert bc_b.tolist() == ab_b.tolist()  # b's rows against c as against a: the same prepared instance
    by_id = {name: {str(c["city_id"]): c["row_id"] for c in
                    json.loads((folders[name] / "metadata.json").read_text())["city_info"]} for name in folders}
    assert ab_b.tolist() == [by_id["b"][str(i)] for i in sorted(ids, key=str)]
    assert bc_c.tolist() == [by_id["c"][str(i)] for i in sorted(ids, key=str)]
    # the same order of the same ids on both sides: file order, as the real store's lists are
    (_, aa), (_, aa_again) = rows("a", "a")
    assert aa.tolist() == aa_again.tolist() == list(range(12))


def test_prepared_values_equal_the_functions_of_two_row_sets():
    """Every built-in measure's prepared path equals its plain function of two row sets."""
    from cka_hydra.schema import CKAConfig, Kernel, MeasureConfig
    from cka_hydra.registry import REGISTRY

    g = torch.Generator().manual_seed(3)
    x = torch.randn(80, 7, generator=g, dtype=torch.float64) + 5
    y = x[:, :4] @ torch.randn(4, 9, generator=g, dtype=torch.float64) + torch.randn(80, 9, generator=g,
                                                                                      dtype=torch.float64)
    configs = [CKAConfig(), CKAConfig(debiased=True), CKAConfig(kernel=Kernel.rbf, sigma_frac=0.7),
               CKAConfig(kernel=Kernel.rbf, debiased=True)]
    cases = [(REGISTRY["cka"], c) for c in configs] + [(REGISTRY["pca_cka"], CKAConfig()),
                                                       (REGISTRY["procrustes"], CKAConfig())]
    for measure, cka in cases:
        terms = measure.terms(cka, MeasureConfig(measure.name))
        value = float(terms.compare(terms.prepare(x), terms.prepare(y)))
        assert value == pytest.approx(float(terms.function(x, y)), abs=1e-12), (measure.name, cka)
        assert float(terms.compare(terms.prepare(y), terms.prepare(x))) == pytest.approx(value, abs=1e-12)


def test_the_engine_runs_without_hydra(small_store):
    """Inputs and the settings in, a Timeline out: nothing of Hydra, no folder written."""
    import cka_hydra.conf as conf
    from cka_hydra.regime_files import load_regime_file
    from cka_hydra.schema import DataConfig, PairConfig, RunConfig, SeedPairConfig
    from cka_hydra.inputs import read_inputs

    regime = load_regime_file(Path(conf.__file__).parent / "regime" / "pt2.yaml")
    run_cfg = RunConfig(regime=regime, pair=PairConfig(1, 2), seed_pair=SeedPairConfig("orig", "1"), layer=5,
                        checkpoints="all", data=DataConfig(str(small_store)))
    result = engine.compute(run_cfg, read_inputs(run_cfg, small_store))
    assert len(result.steps) == 3 and len(result.values) == 3
    assert all(np.isfinite(result.values)) and result.device == "cpu"
    assert not any(small_store.rglob("summary.json"))


def test_a_gram_too_large_to_keep_is_compared_block_by_block(monkeypatch):
    """Above the kernel size kept whole (1 GiB), an RBF instance keeps its centred rows and each
    comparison builds both Grams in blocks: the same value, memory O(256 n)."""
    from cka_hydra import cka
    from cka_hydra.schema import CKAConfig, Kernel, MeasureConfig
    from cka_hydra.registry import REGISTRY, BlockState

    g = torch.Generator().manual_seed(5)
    x, y = (torch.randn(90, d, generator=g, dtype=torch.float64) for d in (5, 7))
    for debiased in (False, True):
        terms = REGISTRY["cka"].terms(CKAConfig(kernel=Kernel.rbf, debiased=debiased), MeasureConfig())
        whole = float(terms.compare(terms.prepare(x), terms.prepare(y)))
        monkeypatch.setattr(cka, "DEFAULT_CACHE_BYTES", 8 * 90 * 90 - 1)
        a, b = terms.prepare(x), terms.prepare(y)
        assert isinstance(a, BlockState) and a.rows.shape == (90, 5)
        assert float(terms.compare(a, b)) == pytest.approx(whole, abs=1e-14)
        monkeypatch.undo()


def test_a_city_list_that_changes_between_checkpoints_is_honoured_at_each(store_copy, tmp_path):
    """The checkpoints of a run usually list the same cities, so a list is filtered once per distinct
    content; one whose cities were added at a checkpoint, or reordered at another, is its own list
    there, and every step's value equals one computed from that step's files alone."""
    folders = sorted(representations_dir(store_copy, "revision/exp2/pt2-2_seed1", "angle", 5).iterdir())
    assert len(folders) >= 3
    added, reordered = folders[-3], folders[-2]
    listed = json.loads((added / "metadata.json").read_text())["city_info"]
    matrix = torch.load(added / "representations.pt", weights_only=True)["representations_flat"]
    extra = [{key: value for key, value in city.items() if key != "city_id"} | {"row_id": 9000 + i}
             for i, city in enumerate(listed[:20])]
    save_checkpoint(added, {"representations_flat": torch.cat([matrix, 3 * matrix[:20]])}, listed + extra)
    listed = json.loads((reordered / "metadata.json").read_text())["city_info"]
    matrix = torch.load(reordered / "representations.pt", weights_only=True)["representations_flat"]
    order = torch.randperm(len(listed), generator=torch.Generator().manual_seed(3))
    save_checkpoint(reordered, {"representations_flat": matrix[order]}, [listed[i] for i in order])
    summary, run_dir = run(tmp_path, store_copy, "pair=1_2", "seed_pair=orig_1", "checkpoints=all")
    with open(run_dir / run_folder.timeline_file("cka"), newline="") as f:
        rows = {int(row["step"]): row for row in csv.DictReader(f)}
    assert set(rows) == {int(folder.name.split("-")[1]) for folder in folders}
    for folder in folders:
        step = int(folder.name.split("-")[1])
        expected, n = reference_from_files(representations_dir(store_copy, "pt2-1", "distance", 5) / folder.name, folder)
        assert float(rows[step]["cka"]) == pytest.approx(expected, abs=1e-12), step
        assert int(rows[step]["n_cities"]) == n
