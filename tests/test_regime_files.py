"""A regime is named after its file: the renamed copy refused in one line, a second view of a store
under a new name, another store layout, a project folder of the user's own, a run started in
outputs/. What each case is about runs `python -m cka_hydra` as a user would (the installed
package, a new process); what merely sets it up runs in this process."""

import shutil
from pathlib import Path

import yaml
from conftest import read_json, run_app, run_cli

from cka_hydra.regime_files import load_regime_file

PACKAGED = Path(__file__).parents[1] / "conf" / "regime"
NARROW = ["layer=5", "seed_pair=orig_1"]


def user_regime(folder: Path, option: str, **changes) -> Path:
    """conf/regime/<option>.yaml in folder: the packaged pt2 with changes (None removes a key)."""
    regime = {**yaml.safe_load((PACKAGED / "pt2.yaml").read_text()), **changes}
    path = folder / "conf" / "regime" / f"{option}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({k: v for k, v in regime.items() if v is not None}, sort_keys=False))
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_copy_saved_under_a_new_name_is_refused_in_one_line_before_anything_is_written(small_store, tmp_path):
    shutil.copytree(PACKAGED, tmp_path / "conf" / "regime")
    (tmp_path / "conf/regime/pt1.yaml").rename(tmp_path / "conf/regime/pt1_real.yaml")  # keeps `name: pt1`
    for run, args in ((run_cli, ["-m", "sweep", "regime=pt1_real", *NARROW]),
                      (run_app, ["regime=pt1_real", "pair=1_2", *NARROW])):
        result = run(*args, f"data.root={small_store}", "--config-dir", "conf", cwd=tmp_path)
        assert result.returncode == 1
        assert result.stdout.strip().splitlines() == [
            f"Error: {tmp_path}/conf/regime/pt1_real.yaml, line 3: name: pt1: a regime is named after its file, so "
            "expected name: pt1_real. To read pt1's folders under that name, write each model's folder with {index}: "
            'original_dir: "pt1-{index}", seed_dir: "revision/exp4/pt1-{index}_seed{seed}"']
        assert not (tmp_path / "outputs").exists()
    # the name mended but not the templates: the regime's folders are not in the store, which is
    # said once for the sweep, before anything is written
    renamed = tmp_path / "conf/regime/pt1_real.yaml"
    renamed.write_text(renamed.read_text().replace("name: pt1", "name: pt1_real"))
    result = run_app("-m", "sweep", "regime=pt1_real", *NARROW, f"data.root={small_store}", "--config-dir", "conf",
                     cwd=tmp_path)
    assert result.returncode == 1
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith(f"Error: no representation folder at {small_store}/pt1_real-1/") and last.endswith(
        "(and so for every one of the 21 pt1_real jobs: nothing was launched)"), last
    assert f"({small_store} exists and holds: pt1-1, " in last  # where the folders are
    assert not (tmp_path / "outputs").exists()
    # regime.name on the command line is the same mistake
    result = run_app("regime=pt2", "regime.name=pt9", "pair=1_2", *NARROW, f"data.root={small_store}", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.strip().splitlines()[-1] == (
        "Error: regime.name=pt9: a regime is named after its file, regime/pt2.yaml (name: pt2); choose another "
        "regime with regime=NAME")


def test_a_second_view_of_a_store_is_a_regime_of_its_own_and_touches_no_other_regimes_results(small_store, tmp_path):
    store = f"data.root={small_store}"
    study = run_app("-m", "sweep", "regime=pt2", *NARROW, store, cwd=tmp_path)
    assert study.returncode == 0, study.stdout
    results = tmp_path / "outputs" / "cka"
    pt2_before = snapshot(results / "pt2")
    pt2_rows = [line for line in (results / "jobs.csv").read_text().splitlines() if line.startswith("pt2,")]

    # pt2's folders, under the name mypt2, without model 7 and with a stand-in for pt2-4 at seed 1
    user_regime(tmp_path, "mypt2", name="mypt2", original_dir="pt2-{index}",
                seed_dir="revision/exp2/pt2-{index}_seed{seed}", exclude={"mypt2-7": "crossing failed"},
                folders={"mypt2-4_seed1": "revision/exp2/pt2-4_seed2"})
    assert load_regime_file(tmp_path / "conf/regime/mypt2.yaml").name == "mypt2"
    view = run_cli("-m", "sweep", "regime=mypt2", *NARROW, store, "--config-dir", "conf", cwd=tmp_path)
    assert view.returncode == 0, view.stdout
    # pt2's 14 valid pairs, less the 4 with model 7
    assert ("mypt2: 21 candidates; removed 7 for shared training task, 4 for excluded mypt2-7 (crossing failed), "
            "0 for same comparison twice; 10 jobs") in view.stdout
    jobs = [line for line in (results / "jobs.csv").read_text().splitlines() if line.startswith("mypt2,")]
    assert len(jobs) == 10 and all(",done," in line for line in jobs)

    assert snapshot(results / "pt2") == pt2_before  # nothing of pt2's results, nor its rows, was touched
    assert [line for line in (results / "jobs.csv").read_text().splitlines() if line.startswith("pt2,")] == pt2_rows
    for summary_file in (results / "mypt2").rglob("summary.json"):
        ours = read_json(summary_file)
        assert ours["regime"] == "mypt2" and ours["model_a"].startswith("mypt2-")
        twin = results / "pt2" / str(summary_file.parent.relative_to(results / "mypt2")).replace("mypt2", "pt2")
        if "pt2-4_seed1" in str(twin):  # the stand-in: pt2-4's seed 2 read as its seed 1
            assert ours["folder_b" if "_vs_mypt2-4" in str(summary_file) else "folder_a"] == \
                "revision/exp2/pt2-4_seed2"
        else:  # the same files as pt2's comparison: the same value
            assert ours["final_cka"] == read_json(twin / "summary.json")["final_cka"]
            assert (ours["folder_a"], ours["folder_b"]) == (read_json(twin / "summary.json")["folder_a"],
                                                            read_json(twin / "summary.json")["folder_b"])


def test_a_regime_of_another_store_layout_reads_its_own_folders(small_store, tmp_path):
    # the small store's pt3 models, laid out as runs/<model>/seed-<seed>/layer<L>/
    other = tmp_path / "other_store"
    regime = yaml.safe_load((PACKAGED / "pt3.yaml").read_text())
    for index, tasks in regime["models"].items():
        for seed in regime["seeds"]:
            model = f"pt3-{index}"
            source = small_store / (model if seed == "orig" else f"revision/exp2/{model}_seed{seed}")
            layer_dir = source / f"analysis_higher/{tasks[0]}_firstcity_last_and_trans_l5/representations"
            if layer_dir.is_dir():
                shutil.copytree(layer_dir, other / "runs" / f"lab-{model}" / f"seed-{seed}" / "layer5")
    user_regime(tmp_path, "lab", name="lab", models=regime["models"], original_dir="runs/lab-pt3-{index}/seed-orig",
                seed_dir="runs/lab-pt3-{index}/seed-{seed}", representations_dir="layer{layer}")
    result = run_cli("-m", "sweep", "regime=lab", *NARROW, f"data.root={other}", "--config-dir", "conf", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    ours = read_json(tmp_path / "outputs/cka/lab/lab-1_vs_lab-2_seed1/layer5/summary.json")
    assert ours["folder_a"] == "runs/lab-pt3-1/seed-orig" and ours["folder_b"] == "runs/lab-pt3-2/seed-1"
    packaged = run_app("regime=pt3", "pair=1_2", *NARROW, f"data.root={small_store}", "hydra.run.dir=pt3_run",
                       cwd=tmp_path)
    assert packaged.returncode == 0, packaged.stdout
    assert ours["final_cka"] == read_json(tmp_path / "pt3_run/summary.json")["final_cka"]  # the same files


def test_a_project_folder_with_its_own_conf_package_and_a_run_started_in_outputs(small_store, tmp_path):
    project = tmp_path / "project"
    (project / "conf").mkdir(parents=True)
    (project / "conf" / "__init__.py").write_text("")  # the user's own `conf` package, importable from here
    (project / "conf" / "settings.yaml").write_text("lr: 0.1\n")
    store = f"data.root={small_store}"
    sweep = run_cli("-m", "sweep", "regime=pt3", *NARROW, store, cwd=project)
    assert sweep.returncode == 0, sweep.stdout
    report = run_cli("report", store, cwd=project)
    assert report.returncode == 0, report.stdout
    assert (project / "outputs/cka/report/index.html").is_file()

    before = snapshot(project / "outputs")
    for args in (["-m", "sweep", "regime=pt3", *NARROW, store], ["regime=pt3", "pair=1_2", *NARROW, store]):
        refused = run_app(*args, cwd=project / "outputs")
        assert refused.returncode == 1
        assert refused.stdout.strip().splitlines() == [
            "Error: this folder holds the results dir cka/: run from the folder that holds outputs/ (results would "
            "go to outputs/outputs/, away from those), or name one: hydra.sweep.dir=..."]
    assert snapshot(project / "outputs") == before and not (project / "outputs/outputs").exists()
