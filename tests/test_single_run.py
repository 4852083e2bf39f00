"""The single comparison: through the real CLI in a subprocess (a few tests), through its entry point in
this process (run_app), and through Hydra's compose API."""

import json
import re
import shutil

import matplotlib.image
import numpy as np
import pytest
import torch
from conftest import (
    RUN, read_json, reference_cka, reference_from_files, reference_rbf_cka, representations_dir, run_app, run_cli,
    compare_into, save_checkpoint,
)
from hydra import compose, initialize_config_module
from hydra.errors import ConfigCompositionException

from cka_hydra import compare, lifecycle
from cka_hydra.app import register
from cka_hydra.errors import InputError
from cka_hydra.schema import run_config

RUN_DIR = "outputs/cka/pt2/pt2-1_vs_pt2-2_seed1/layer5"


def failure(result):
    """The one error line of a failed run, after checking it failed cleanly: `Error: ...` when
    it was refused before it started, a logged `[ERROR]` when its data failed it."""
    assert result.returncode != 0
    assert "Traceback" not in result.stdout and "Warning" not in result.stdout
    errors = [line for line in (result.stdout).splitlines() if "[ERROR]" in line or line.startswith("Error: ")]
    assert len(errors) == 1, result.stdout
    return errors[0]


def test_single_run_writes_its_folder_and_matches_an_independent_reference(small_store, tmp_path):
    result = run_cli(*RUN, f"data.root={small_store}", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    run_dir = tmp_path / RUN_DIR
    assert {p.name for p in run_dir.iterdir()} == {"cka_timeline.csv", "summary.json", ".hydra", "cka.log"}
    assert {p.name for p in (run_dir / ".hydra").iterdir()} == {"config.yaml", "hydra.yaml", "overrides.yaml"}

    summary = read_json(run_dir / "summary.json")
    final = 164073  # pt2 trained 21 epochs of 7813 steps
    expected, n_cities = reference_from_files(
        representations_dir(small_store, "pt2-1", "distance", 5) / f"checkpoint-{final}",
        representations_dir(small_store, "revision/exp2/pt2-2_seed1", "angle", 5) / f"checkpoint-{final}",
    )
    assert summary["final_cka"] == pytest.approx(expected, abs=1e-9)
    assert summary["n_cities"] == n_cities
    assert {k: summary[k] for k in ("exp1", "exp2", "layer", "n_checkpoints", "regime", "pair", "seed_pair",
                                     "tasks_a", "tasks_b", "steps", "kernel", "device")} == {
        "exp1": "pt2-1", "exp2": "pt2-2_seed1", "layer": 5, "n_checkpoints": 1, "regime": "pt2", "pair": "1_2",
        "seed_pair": "orig_1", "tasks_a": ["distance", "trianglearea"], "tasks_b": ["angle", "compass"],
        "steps": [final], "kernel": "linear", "device": "cpu",
    }
    assert summary["mean_cka"] == summary["min_cka"] == summary["max_cka"] == summary["final_cka"]
    assert summary["std_cka"] == 0.0
    assert summary["seconds"] > 0
    assert (run_dir / "cka_timeline.csv").read_text().splitlines() == [
        "step,cka,n_cities,chance", f"{final},{summary['final_cka']!r},{n_cities},{summary['final_chance']!r}"]


def test_timeline_over_all_common_steps(small_store, tmp_path):
    run_dir = compare_into(tmp_path, "regime=pt3", "pair=1_2", "seed_pair=1_2", "layer=3", "checkpoints=all",
                             f"data.root={small_store}")
    assert run_dir == tmp_path / "pt3/pt3-1_seed1_vs_pt3-2_seed2/layer3-all"
    lines = (run_dir / "cka_timeline.csv").read_text().splitlines()
    steps = [int(line.split(",")[0]) for line in lines[1:]]
    assert steps == [0, 82036, 164073]
    values = [float(line.split(",")[1]) for line in lines[1:]]
    summary = read_json(run_dir / "summary.json")
    assert summary["n_checkpoints"] == 3
    assert summary["mean_cka"] == pytest.approx(np.mean(values), abs=1e-15)
    assert summary["std_cka"] == pytest.approx(np.std(values), abs=1e-15)
    for step, value in zip(steps, values):
        expected, _ = reference_from_files(
            representations_dir(small_store, "revision/exp2/pt3-1_seed1", "distance", 3) / f"checkpoint-{step}",
            representations_dir(small_store, "revision/exp2/pt3-2_seed2", "compass", 3) / f"checkpoint-{step}",
        )
        assert value == pytest.approx(expected, abs=1e-9)


FINAL_A = ("pt2-1", "distance", 5)
FINAL_B = ("revision/exp2/pt2-2_seed1", "angle", 5)


def final_reference(store, estimator=reference_cka):
    return reference_from_files(representations_dir(store, *FINAL_A) / "checkpoint-164073",
                                representations_dir(store, *FINAL_B) / "checkpoint-164073", estimator)[0]


@pytest.mark.parametrize(
    "options, label, reference",
    [
        (["cka.debiased=true"], "debiased", lambda x, y: reference_cka(x, y, debiased=True)),
        (["cka.kernel=rbf", "cka.sigma_frac=0.7"], "rbf0.7", lambda x, y: reference_rbf_cka(x, y, 0.7)),
        (["cka.kernel=rbf", "cka.debiased=true"], "rbf0.4-debiased",
         lambda x, y: reference_rbf_cka(x, y, 0.4, debiased=True)),
    ],
)
def test_other_estimators_match_the_reference(small_store, tmp_path, options, label, reference):
    run_dir = compare_into(tmp_path, *RUN, f"data.root={small_store}", *options)
    assert run_dir.name == f"layer5-{label}"
    summary = read_json(run_dir / "summary.json")
    assert summary["final_cka"] == pytest.approx(final_reference(small_store, reference), abs=1e-9)
    assert summary["kernel"] == ("rbf" if "cka.kernel=rbf" in options else "linear")
    assert summary["debiased"] == ("cka.debiased=true" in options)
    assert summary["label"] == label


def test_bootstrap_interval_in_timeline_and_summary(small_store, tmp_path):
    run_dir = compare_into(tmp_path, *RUN, f"data.root={small_store}", "checkpoints=all", "cka.bootstrap=200")
    assert run_dir.name == "layer5-boot200-all"
    lines = (run_dir / "cka_timeline.csv").read_text().splitlines()
    assert lines[0] == "step,cka,n_cities,chance,cka_low,cka_high"
    for line in lines[1:]:
        _, value, _, _, low, high = map(float, line.split(","))
        assert 0 < low < high < 1
    # Resampled duplicate cities raise CKA where the shared signal is weak (step 0 here: noise
    # on 50 cities), so only where the signal dominates must the interval hold the estimate.
    _, value, _, _, low, high = map(float, lines[-1].split(","))
    assert low < value < high
    summary = read_json(run_dir / "summary.json")
    assert summary["bootstrap"] == 200 and summary["confidence"] == 0.95
    assert summary["final_cka_ci"] == [float(x) for x in lines[-1].split(",")[4:]]
    reseeded = compare_into(tmp_path, *RUN, f"data.root={small_store}", "checkpoints=all", "cka.bootstrap=200",
                              "cka.seed=1")
    assert reseeded.name == "layer5-boot200-seed1-all"
    assert read_json(reseeded / "summary.json")["final_cka_ci"] != summary["final_cka_ci"]
    assert read_json(run_dir / "summary.json") == summary


def test_float32_precision_is_close_to_float64(small_store, tmp_path):
    run_dir = compare_into(tmp_path, *RUN, f"data.root={small_store}", "cka.precision=float32")
    summary = read_json(run_dir / "summary.json")
    assert run_dir.name == "layer5-f32" and summary["precision"] == "float32"
    assert summary["final_cka"] == pytest.approx(final_reference(small_store), abs=1e-5)


def test_explicit_steps_and_pt1_seed_layout(small_store, tmp_path):
    run_dir = compare_into(tmp_path, "regime=pt1", "pair=2_6", "seed_pair=2_orig", "layer=3",
                             "checkpoints=[328146,0]", f"data.root={small_store}")
    assert run_dir == tmp_path / "pt1/pt1-2_seed2_vs_pt1-6/layer3-steps0+328146"
    assert read_json(run_dir / "summary.json")["steps"] == [0, 328146]


def folder_bytes(folder):
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_second_run_leaves_the_folder_as_it_was_and_other_settings_go_elsewhere(small_store, tmp_path):
    assert run_app(*RUN, f"data.root={small_store}", cwd=tmp_path).returncode == 0
    run_dir = tmp_path / RUN_DIR
    before = folder_bytes(run_dir)

    again = run_app(*RUN, f"data.root={small_store}", "device=cpu", cwd=tmp_path)  # device decides nothing
    assert again.returncode == 0
    assert f"skipped: {run_dir} already holds this result" in again.stdout
    assert folder_bytes(run_dir) == before  # not even .hydra/ or the log

    other = run_app(*RUN, f"data.root={small_store}", "checkpoints=all", cwd=tmp_path)
    assert other.returncode == 0 and "skipped" not in other.stdout
    assert read_json(tmp_path / (RUN_DIR + "-all") / "summary.json")["n_checkpoints"] == 3
    assert folder_bytes(run_dir) == before


def test_overwrite_recomputes(small_store, tmp_path):
    assert run_app(*RUN, f"data.root={small_store}", cwd=tmp_path).returncode == 0
    seconds = read_json(tmp_path / RUN_DIR / "summary.json")["seconds"]
    forced = run_app(*RUN, f"data.root={small_store}", "overwrite=true", cwd=tmp_path)
    assert forced.returncode == 0
    assert "skipped" not in forced.stdout
    assert read_json(tmp_path / RUN_DIR / "summary.json")["seconds"] != seconds


def test_demo_store_is_written_on_first_use(tmp_path, monkeypatch):
    result = run_app(*RUN, cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    assert "wrote the built-in demo store" in result.stdout and "data.root=" in result.stdout
    demo_dir = tmp_path / "outputs/cka_demo"  # the demo's results never mix with real ones
    summary = read_json(demo_dir / RUN_DIR.removeprefix("outputs/cka/") / "summary.json")
    assert summary["data_root"] == str(tmp_path / "outputs" / "demo_store")
    assert summary["settings"]["data.root"] is None
    assert (demo_dir / "data_root.txt").read_text() == "demo\n"
    assert 0 < summary["final_cka"] < 1
    second = run_app(*RUN, "pair=2_3", cwd=tmp_path)
    assert second.returncode == 0
    assert "wrote the built-in demo store" not in second.stdout
    # the demo store is the one beside its results dir, wherever the command runs from
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    before = {p: p.read_bytes() for p in demo_dir.rglob("*") if p.is_file()}
    again = run_app(*RUN, f"hydra.sweep.dir={demo_dir}", cwd=elsewhere)
    assert again.returncode == 0, again.stdout
    assert "already holds this result" in again.stdout and not any(elsewhere.iterdir())
    assert {p: p.read_bytes() for p in demo_dir.rglob("*") if p.is_file()} == before
    # a start inside outputs/ (its store, or a model's folder in it) is refused, and writes nothing
    for inside in (tmp_path / "outputs/demo_store", tmp_path / "outputs/demo_store/pt2-1"):
        refused = run_app(*RUN, cwd=inside)
        assert refused.returncode == 1
        assert refused.stdout.strip().splitlines()[-1] == (
            f"Error: this folder is inside {tmp_path / 'outputs'}, which holds the results dir cka_demo/: run from "
            "the folder that holds outputs/ (results would go to outputs/.../outputs/, away from those), or name "
            "one: hydra.sweep.dir=...")
        assert not (inside / "outputs").exists()
    # and so is the Python API's, which would write there as well
    monkeypatch.chdir(demo_dir)
    with pytest.raises(InputError, match=f"^compare: this folder is inside the results dir {demo_dir}: "):
        compare(RUN)
    assert not (demo_dir / "outputs").exists()


def test_overlapping_pair_is_refused_with_the_shared_task(small_store, tmp_path):
    line = failure(run_app("regime=pt2", "pair=1_4", f"data.root={small_store}", cwd=tmp_path))
    assert "pair=1_4: pt2-1 and pt2-4 share the training task distance" in line
    assert "allow_overlap=true" in line
    allowed = run_app("regime=pt2", "pair=1_4", "allow_overlap=true", f"data.root={small_store}", cwd=tmp_path)
    assert allowed.returncode == 0, allowed.stdout


def test_a_model_against_itself_at_other_seeds(small_store, tmp_path):
    result = run_app("regime=pt3", "pair=4_4", "seed_pair=orig_2", f"data.root={small_store}", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    assert (tmp_path / "outputs/cka/pt3/pt3-4_vs_pt3-4_seed2/layer5/summary.json").is_file()


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["cka.kernel=rbff"], "Invalid value 'rbff', expected one of [linear, rbf]"),
        (["cka.precision=float16"], "Invalid value 'float16', expected one of [float64, float32]"),
        (["layer=9"], "Could not find 'layer/9'"),
        (["pair=1_9"], "Error: pair=1_9: regime pt2 has no model 9 (it has [1, 2, 3, 4, 5, 6, 7])"),
        (["pair=19"], "Could not find 'pair/19'"),
        (["regime=pt4"], "Could not find 'regime/pt4'"),
        (["overwrite=maybe"], "Value 'maybe' is not a valid bool"),
    ],
)
def test_config_typos_fail_at_once_with_the_options(tmp_path, overrides, expected):
    result = run_app(*overrides, cwd=tmp_path)
    assert result.returncode == 1
    assert expected in result.stdout
    assert not (tmp_path / "outputs/cka_demo").exists()  # (a refused run may write the demo store, on first use)


def test_layer_typo_lists_the_options(tmp_path):
    result = run_app("layer=9", cwd=tmp_path)
    assert "Available options in 'layer'" in result.stdout and "\t6\n" in result.stdout


def break_store(root, instance_dir, task, layer, step, tensors=None, cities=None):
    folder = representations_dir(root, instance_dir, task, layer) / f"checkpoint-{step}"
    meta = json.loads((folder / "metadata.json").read_text())
    save_checkpoint(folder, tensors, cities if cities is not None else meta["city_info"])
    return folder


@pytest.mark.parametrize(
    "args, breakage, expected",
    [
        (["layer=4"], None, r"no representation folder at .*distance_firstcity_last_and_trans_l4/representations \(.* holds: distance_firstcity_last_and_trans_l[35], distance_firstcity_last_and_trans_l[35]\)"),
        (["data.root=/no/such/folder"], None, r"data.root=/no/such/folder: no such folder"),
        (["checkpoints=[0,5]"], None, r"checkpoints: steps \[5\] are not held by both pt2-1 and pt2-2_seed1; common steps: \[0, 82036, 164073\]"),
        (["cka.sigma_frac=0"], None, r"cka.sigma_frac=0.0: expected a positive number"),
        (["city_filter='regoin:^A'"], None, r"city_filter: unknown field 'regoin'; city_info has: city_id, country, name, region, row_id, x, y"),
        (["city_filter='name:^City 1'"], None, r"Error: city_filter keeps \d of pt2-1's 60 cities at step 164073: a comparison needs at least 10"),
        ([], "not_a_dict", r"checkpoint-164073/representations.pt: expected a dict with a 'representations_flat' or 'representations' tensor, got list"),
        ([], "nan", r"checkpoint-164073/representations.pt: 3 NaN/Inf values among the compared cities at step 164073"),
        ([], "constant", r"step 164073, pt2-2_seed1: CKA is undefined: the compared representation is constant"),
        ([], "no_checkpoints", r"no checkpoints in .*pt2-2_seed1/.*representations: expected checkpoint-<step>/ folders"),
        ([], "no_common_step", r"pt2-1 and pt2-2_seed1 share no checkpoint step: pt2-1 has \[0, 82036, 164073\], pt2-2_seed1 has \[5, 6\]"),
        ([], "mixed_ids", r"/pt2-1/.*/checkpoint-164073/metadata.json identifies its cities by row_id, .*/pt2-2_seed1/.*/checkpoint-164073/metadata.json by city_id: ids of different kinds cannot be matched"),
    ],
)
def test_bad_input_gets_one_clear_line(store_copy, tmp_path, args, breakage, expected):
    b = ("revision/exp2/pt2-2_seed1", "angle", 5)
    folder = representations_dir(store_copy, *b)
    if breakage == "not_a_dict":
        break_store(store_copy, *b, 164073, tensors=[1, 2])
    elif breakage == "nan":
        data = torch.load(folder / "checkpoint-164073/representations.pt", weights_only=True)
        flat = data["representations_flat"].clone()
        cities = json.loads((folder / "checkpoint-164073/metadata.json").read_text())["city_info"]
        kept = [i for i, c in enumerate(cities) if c["region"] != "Atlantis" and c["row_id"] >= 1000]
        flat[kept[0], 0], flat[kept[1], 1], flat[kept[2], 0] = float("nan"), float("inf"), float("-inf")
        break_store(store_copy, *b, 164073, tensors={"representations_flat": flat})
    elif breakage == "constant":
        break_store(store_copy, *b, 164073, tensors={"representations_flat": torch.full((60, 12), 3.5)})
    elif breakage == "mixed_ids":  # the same cities, identified by city_id on one side and row_id on the other
        cities = json.loads((folder / "checkpoint-164073/metadata.json").read_text())["city_info"]
        tensors = torch.load(folder / "checkpoint-164073/representations.pt", weights_only=True)
        break_store(store_copy, *b, 164073, tensors=tensors, cities=[{**c, "city_id": c["row_id"]} for c in cities])
    elif breakage in ("no_checkpoints", "no_common_step"):
        for child in folder.iterdir():
            (child / "metadata.json").unlink()
        if breakage == "no_common_step":
            for step in (5, 6):
                save_checkpoint(folder / f"checkpoint-{step}", {"representations_flat": torch.zeros(1, 1)}, [])
    result = run_app(*RUN, f"data.root={store_copy}", *args, cwd=tmp_path)
    assert re.search(expected, failure(result)), failure(result)
    run_dirs = [p.parent for p in tmp_path.rglob(".hydra")]
    if failure(result).startswith("Error: "):  # refused before it started: nothing written
        assert not (tmp_path / "outputs").exists()
    else:  # failed by its data: the run's folder records why, and holds nothing that looks like a result
        assert len(run_dirs) == 1 and not (run_dirs[0] / "summary.json").exists()
        assert re.search(expected, (run_dirs[0] / "error.txt").read_text())


def test_compose_api_builds_the_same_job(small_store, tmp_path):
    register()
    with initialize_config_module(config_module="cka_hydra.conf", version_base="1.3"):
        cfg = compose("config", overrides=["regime=pt3", "pair='2_3'", "seed_pair='1_2'", "layer='5'",
                                           f"data.root={small_store}"])
        with pytest.raises(ConfigCompositionException, match="cka.kernel"):
            compose("config", overrides=["cka.kernel=cosine"])
    assert cfg.regime.name == "pt3" and (cfg.pair.a, cfg.pair.b) == (2, 3)
    assert (cfg.seed_pair.a, cfg.seed_pair.b, cfg.layer) == ("1", "2", 5)
    assert list(cfg.regime.models[2]) == ["compass", "inside", "perimeter"]
    assert cfg.checkpoints == "final" and cfg.device == "auto"

    assert lifecycle.run(run_config(cfg), tmp_path / "direct")["status"] == "done"
    result = run_app("regime=pt3", "pair=2_3", "seed_pair=1_2", "layer=5", f"data.root={small_store}", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    via_cli = read_json(tmp_path / "outputs/cka/pt3/pt3-2_seed1_vs_pt3-3_seed2/layer5/summary.json")
    direct = read_json(tmp_path / "direct" / "summary.json")
    assert direct["final_cka"] == via_cli["final_cka"]
    assert direct["settings"] == via_cli["settings"]


def test_info_lists_the_sweeper_plugin(tmp_path):
    result = run_cli("--info", "plugins", cwd=tmp_path)  # Hydra's plugin scan in a fresh interpreter
    assert result.returncode == 0
    assert "CKASweeper" in result.stdout


def test_a_space_after_a_filter_fields_colon_is_ignored_and_a_term_that_keeps_nothing_is_named(small_store, tmp_path):
    """The issue's finding: `region: ^Asia` kept no city, so the filter kept Europe alone, unannounced."""
    def n_cities(city_filter):
        cwd = tmp_path / str(len(list(tmp_path.iterdir())))
        cwd.mkdir()
        result = run_app(*RUN, f"data.root={small_store}", f"city_filter={city_filter}", cwd=cwd)
        assert result.returncode == 0, result.stdout
        return result.stdout, read_json(next(cwd.rglob("summary.json")))["n_cities"]

    _, spaced = n_cities('"region:^Europe || region: ^Asia"')
    _, europe = n_cities('"region:^Europe"')
    _, both = n_cities('"region:^(Europe|Asia)"')
    assert spaced == both > europe
    output, typo = n_cities('"region:^Europe || region: ^Asai"')
    assert typo == europe
    assert "city_filter: the term 'region:^Asai' keeps no city of pt2-1 or pt2-2_seed1 at step 164073 (a typo?)" \
        in output


def test_final_names_both_last_steps_when_one_side_lags(store_copy, tmp_path):
    lagging = representations_dir(store_copy, "revision/exp2/pt2-2_seed1", "angle", 5)
    shutil.rmtree(lagging / "checkpoint-164073")
    result = run_app(*RUN, f"data.root={store_copy}", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    log = (tmp_path / RUN_DIR / "cka.log").read_text()
    message = ("checkpoints=final: pt2-1's last step is 164073, pt2-2_seed1's is 82036; comparing step 82036, the "
               "last both hold")
    assert message in result.stdout and message in log
    summary = read_json(tmp_path / RUN_DIR / "summary.json")
    assert (summary["steps"], summary["last_step_a"], summary["last_step_b"]) == ([82036], 164073, 82036)


def test_the_runs_own_timeline_figure(small_store, tmp_path):
    """save_timeline_plot=true draws <measure>_timeline.png beside the timeline; it is not part of the
    result, so a finished result gets its figure without being recomputed."""
    run = [*RUN, f"data.root={small_store}", "checkpoints=all"]
    assert run_app(*run, cwd=tmp_path).returncode == 0
    run_dir = tmp_path / "outputs/cka/pt2/pt2-1_vs_pt2-2_seed1/layer5-all"
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    result = run_app(*run, "save_timeline_plot=true", cwd=tmp_path)
    assert result.returncode == 0 and "skipped" in result.stdout, result.stdout
    image = matplotlib.image.imread(run_dir / "cka_timeline.png")
    assert image.shape[0] >= 300 and image.shape[1] >= 400
    assert {name: (run_dir / name).read_bytes() for name in before} == before  # the result untouched
    result = run_app(*run, "save_timeline_plot=true", "measure=procrustes", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    assert (tmp_path / "outputs/cka/pt2/pt2-1_vs_pt2-2_seed1/layer5-procrustes-all/procrustes_timeline.png").is_file()


def test_a_timeline_figure_is_redrawn_when_its_result_changes(store_copy, tmp_path):
    run = [*RUN, f"data.root={store_copy}", "checkpoints=all", "save_timeline_plot=true"]
    assert run_app(*run, cwd=tmp_path).returncode == 0
    run_dir = tmp_path / "outputs/cka/pt2/pt2-1_vs_pt2-2_seed1/layer5-all"
    first = (run_dir / "cka_timeline.png").read_bytes()
    shutil.rmtree(representations_dir(store_copy, "revision/exp2/pt2-2_seed1", "angle", 5) / "checkpoint-164073")
    assert run_app(*[arg for arg in run if arg != "save_timeline_plot=true"], cwd=tmp_path).returncode == 0
    assert not (run_dir / "cka_timeline.png").exists()  # drawn from the result it replaced
    assert run_app(*run, cwd=tmp_path).returncode == 0
    assert (run_dir / "cka_timeline.png").read_bytes() != first


def test_one_filter_in_other_spellings_is_one_setting(small_store, tmp_path):
    folders = set()
    for spelling in ('"region:^Europe || region: ^Asia"', '" region:^Europe||region:^Asia "'):
        result = run_app(*RUN, f"data.root={small_store}", f"city_filter={spelling}", cwd=tmp_path)
        assert result.returncode == 0, result.stdout
        folders |= {p.parent.name for p in tmp_path.rglob("summary.json")}
    assert len(folders) == 1
    assert read_json(next(tmp_path.rglob("summary.json")))["settings"]["city_filter"] == \
        "region:^Europe || region:^Asia"


def test_stray_spaces_in_a_command_line(small_store, tmp_path):
    assert run_app("regime=pt2 ", "pair=1_2 ", "layer=5 ", f"data.root={small_store}", cwd=tmp_path).returncode == 0
    result = run_app("layer=", "5", cwd=tmp_path)
    assert result.returncode == 1 and "a space after '=' splits a setting in two: write layer=5" in result.stdout
    result = run_app("-m", "my_study", cwd=tmp_path)
    assert result.returncode == 1 and "(a config of your own, my_study.yaml? name its folder: --config-dir DIR)" in \
        result.stdout
