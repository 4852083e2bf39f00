"""The real study as it is: a store shaped like the group's pt1 (an extra seed, a failed seed run
with stand-ins, a model whose task failed to train), described in the user's own config dir.

The manual's example (docs/regimes.md, "Your own config dir") is run as written, through
`python -m cka_hydra` in a subprocess: the installed package (a non-editable install in CI),
with the configs in a folder outside the checkout."""

import csv
import itertools
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import built_once, read_json, reference_from_files, representations_dir, run_app, run_cli

from cka_hydra.demo import DemoSpec, write_store

PAGE = Path(__file__).parents[1] / "docs/regimes.md"
TASKS = ["distance", "trianglearea", "angle", "compass", "inside", "perimeter", "crossing"]
SEEDS = ["orig", "1", "2", "3"]
# where each logical instance's files are, written out by hand from the group's parse_exp_name
STAND_INS = {"pt1-5_seed2": "revision/exp4/pt1-5_seed3", "pt1-5_seed3": "revision/exp4/pt1-5_seed4"}


def manual_example():
    """The manual's config files (yaml blocks that start with `# conf/...`) and its commands (the bash
    block that follows them)."""
    text = PAGE.read_text()
    section = text[text.index("## Your own config dir"):text.index("## The report's choice")]
    files = {m["path"]: m["body"] for m in re.finditer(r"```yaml\n# (?P<path>conf/\S+)\n(?P<body>.*?)```", section, re.S)}
    commands = re.search(r"```bash\n(.*?)```", section, re.S).group(1).strip().splitlines()
    return files, commands


@pytest.fixture(scope="module")
def real_pt1(tmp_path_factory):
    """pt1 as the group's store holds it: seeds orig, 1, 2, 3 for every model; pt1-5_seed2 failed
    (its files hold NaN: reading them fails a job), pt1-5_seed4 exists. Layer 5 only."""
    def build(root):
        write_store(root, DemoSpec(n_cities=60, hidden=6, n_checkpoints=3, layers=(5,), regimes=("pt1",),
                                   seeds=("orig", "1", "2", "3", "4")))
        for index in (1, 2, 3, 4, 6, 7):
            shutil.rmtree(root / f"revision/exp4/pt1-{index}_seed4")
        for checkpoint in representations_dir(root, "revision/exp4/pt1-5_seed2", "inside", 5).iterdir():
            data = torch.load(checkpoint / "representations.pt", weights_only=True)
            torch.save({key: value.fill_(float("nan")) if key.startswith("representations") else value
                        for key, value in data.items()}, checkpoint / "representations.pt")

    return built_once(tmp_path_factory, "real_pt1", build)


def folder(instance):
    model, _, seed = instance.partition("_seed")
    return STAND_INS.get(instance, f"revision/exp4/{instance}" if seed else model)


def test_the_manual_example_on_a_store_shaped_like_the_real_pt1(real_pt1, tmp_path):
    files, commands = manual_example()
    assert set(files) == {"conf/regime/pt1.yaml", "conf/study_pt1.yaml", "conf/measure/procrustes5.yaml"}
    for path, body in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(body)
    sweep, report, measure = (command.replace("/path/to/experiments", str(real_pt1)).split()[3:]
                              for command in commands)
    result = run_cli(*sweep, "layer=5", cwd=tmp_path)  # the store holds layer 5 only
    assert result.returncode == 0, result.stdout
    assert "pt1: 126 candidates; removed 0 for shared training task, 36 for excluded pt1-7 (crossing task failed " \
           "to train), 0 for same comparison twice; 90 jobs" in result.stdout

    with open(tmp_path / "outputs/cka/jobs.csv") as f:
        jobs = list(csv.DictReader(f))
    seed_pairs = list(itertools.combinations(SEEDS, 2))
    expected = {(f"{a}_{b}", f"{sa}_{sb}") for a, b in itertools.combinations(range(1, 7), 2) for sa, sb in seed_pairs}
    assert {(j["pair"], j["seed_pair"]) for j in jobs} == expected and len(jobs) == 90
    assert {j["status"] for j in jobs} == {"done"}
    for job in jobs:  # each value from the files an independent reading of the store names
        summary = read_json(tmp_path / "outputs/cka" / job["run_dir"] / "summary.json")
        a, b = summary["exp1"], summary["exp2"]
        assert (summary["folder_a"], summary["folder_b"]) == (folder(a), folder(b))
        step = "checkpoint-328146"
        value, n = reference_from_files(
            *(representations_dir(real_pt1, folder(i), TASKS[int(i.split("-")[1][0]) - 1], 5) / step for i in (a, b)))
        assert summary["final_cka"] == pytest.approx(value, abs=1e-10) and summary["n_cities"] == n

    result = run_app(*report, cwd=tmp_path)  # in this process, from here on: the subprocess showed the install
    assert result.returncode == 0, result.stdout
    results = pd.read_csv(tmp_path / "outputs/cka/report/cka_results.csv", dtype={"seed_a": str, "seed_b": str})
    assert len(results) == 90 and "pt1-7" not in set(results["model_b"])
    assert {"pt1-5_seed2", "pt1-5_seed3"} <= set(results["instance_b"]) | set(results["instance_a"])

    result = run_app(*measure, "layer=5", "pair=1_5", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    summary = read_json(tmp_path / "outputs/cka/pt1/pt1-1_vs_pt1-5_seed2/layer5-procrustes-k5/summary.json")
    assert (summary["measure"], summary["components"], summary["folder_b"]) == (
        "procrustes", 5, "revision/exp4/pt1-5_seed3")


def write_config_dir(tmp_path):
    files, _ = manual_example()
    conf = tmp_path / "conf"
    (conf / "regime").mkdir(parents=True)
    (conf / "regime/pt1.yaml").write_text(files["conf/regime/pt1.yaml"])
    return conf


def test_an_excluded_instance_is_refused_alone_and_left_out_of_the_report(real_pt1, tmp_path):
    conf = write_config_dir(tmp_path)
    store = f"data.root={real_pt1}"
    one = ["regime=pt1", "pair=1_7", "seed_pair=orig_1", "layer=5"]
    result = run_app("--config-dir", str(conf), *one, store, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.strip().splitlines()[-1] == ("Error: pt1-7_seed1: regime pt1 excludes pt1-7 (crossing task "
                                                      "failed to train); set allow_excluded=true to compare it anyway")
    assert not (tmp_path / "outputs").exists()
    result = run_app("--config-dir", str(conf), *one, store, "allow_excluded=true", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    summary = read_json(tmp_path / "outputs/cka/pt1/pt1-1_vs_pt1-7_seed1/layer5/summary.json")
    assert summary["excluded"] == {"pt1-7_seed1": "crossing task failed to train"}
    for other in (["pair=1_5", "seed_pair=orig_2"], ["pair=2_5", "seed_pair=1_3"]):
        assert run_app("--config-dir", str(conf), "regime=pt1", *other, "layer=5", store, cwd=tmp_path).returncode == 0

    report = tmp_path / "outputs/cka/report"
    result = run_app("report", store, cwd=tmp_path)  # without the config dir: the run's own record
    assert result.returncode == 0, result.stdout
    found = read_json(report / "report.json")
    assert found["runs"] == 2 and found["excluded"] == {"pt1-7_seed1": {"reason": "crossing task failed to train",
                                                                        "runs": 1}}
    assert "pt1-7_seed1" in (report / "index.html").read_text()
    result = run_app("report", store, "allow_excluded=true", cwd=tmp_path)
    found = read_json(report / "report.json")
    assert found["runs"] == 3 and found["kept_although_excluded"] == {"pt1-7_seed1: crossing task failed to train": 1}
    assert "Kept although excluded (allow_excluded=true): pt1-7_seed1" in (report / "index.html").read_text()
    result = run_app("report", store, "--config-dir", str(conf), "exclude=[pt1-2, pt1-5_seed3]", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    found = read_json(report / "report.json")
    assert found["runs"] == 1 and set(found["excluded"]) == {"pt1-7", "pt1-2"}  # pt1-5_seed3: the same run as pt1-2
    assert found["excluded"]["pt1-7"]["reason"] == "crossing task failed to train (regime/pt1.yaml)"
    results = pd.read_csv(report / "cka_results.csv")
    assert set(results["instance_b"]) == {"pt1-5_seed2"}
    result = run_app("report", store, "exclude=pt1-2", cwd=tmp_path)  # one name, without brackets
    assert result.returncode == 0 and set(read_json(report / "report.json")["excluded"]) == {"pt1-2", "pt1-7_seed1"}
    result = run_app("report", store, "exclude=[pt1-9]", cwd=tmp_path)
    assert result.returncode == 1 and "exclude=pt1-9: no model or instance of these results has that name" in \
        result.stdout


@pytest.mark.parametrize("change, message", [
    (("  pt1-7: crossing", "  pt1-9: crossing"),
     "line 12: regime 'pt1': exclude: pt1-9 is no model or instance of it (its models are pt1-1 ... pt1-7, its seeds "
     "orig, 1, 2, 3: e.g. pt1-7 or pt1-7_seed3)"),
    (("pt1-7: crossing task failed to train", "pt1-7: ''"), "line 12: regime 'pt1': exclude: pt1-7: expected the "
                                                             "reason it is left out"),
    (("pt1-5_seed2: revision", "pt1-5_seed9: revision"), "line 14: regime 'pt1': folders: pt1-5_seed9 is no instance"),
    (("pt1-5_seed3: revision", "pt1-5_seed3: /revision"), "line 15: regime 'pt1': folders: pt1-5_seed3: "
                                                           "'/revision/exp4/pt1-5_seed4': expected a relative path"),
    (("pt1-5_seed3: revision", "pt1-5_seed3: ../revision"), "line 15: regime 'pt1': folders: pt1-5_seed3: "
                                                             "'../revision/exp4/pt1-5_seed4': expected a relative path"),
    (("pt1-7: crossing task failed to train", "pt1-7:"), "line 12: regime 'pt1': exclude: pt1-7: expected the reason "
                                                          "it is left out"),
    (("  pt1-7: crossing task failed to train\n", "  - pt1-7\n"), "line 11: regime 'pt1': exclude: expected a "
                                                                   "mapping, one `pt1-7: crossing task failed to train` "
                                                                   "line each"),
    (("  pt1-5_seed3: revision", "  pt1-5_seed2: again\n  pt1-5_seed3: revision"), "line 15: pt1-5_seed2 is listed "
                                                                                 "twice (YAML would keep only the last)"),
    (("exclude:", "exlude:"), "line 11: exlude: unknown key; a regime has: name, models, seeds, original_dir, "
                              "seed_dir, representations_dir, exclude, folders"),
], ids=["unknown model", "no reason", "unknown instance", "absolute folder", "folder outside data.root", "null reason",
        "a list", "a folder twice", "a misspelt key"])
def test_a_bad_exclude_or_folders_entry_names_its_file_and_line(real_pt1, tmp_path, change, message):
    conf = write_config_dir(tmp_path)
    regime = conf / "regime/pt1.yaml"
    regime.write_text(regime.read_text().replace(*change))
    for command in (["regime=pt1", "pair=1_2", "layer=5"], ["-m", "sweep", "regime=pt1", "layer=5"], ["report"]):
        result = run_app("--config-dir", str(conf), *command, f"data.root={real_pt1}", cwd=tmp_path)
        assert result.returncode == 1
        assert result.stdout.strip().splitlines() == [result.stdout.strip().splitlines()[-1]]  # one line
        assert result.stdout.strip().startswith(f"Error: {regime}, {message}"), result.stdout
    assert not (tmp_path / "outputs").exists()


def test_the_config_dir_is_searched_first_and_names_its_own_commands(real_pt1, tmp_path):
    conf = write_config_dir(tmp_path)
    preset = ("defaults:\n  - sweep\n  - _self_\nhydra:\n  sweeper:\n    params:\n      regime: pt1\n      layer: '5'\n"
              "      pair: 1_5\n")
    (conf / "pair_1_5_only.yaml").write_text(preset)
    result = run_app("-m", "pair_1_5_only", "--config-dir", str(conf), f"data.root={real_pt1}", cwd=tmp_path)
    assert result.returncode == 1 and "Error: pair=15: no such option (a YAML file reads 1_5 as the number 15: " \
        "quote it, '1_5')" in result.stdout
    (conf / "pair_1_5_only.yaml").write_text(preset.replace("1_5", "'1_5'"))
    result = run_app("-m", "pair_1_5_only", "--config-dir", str(conf), f"data.root={real_pt1}",
                     "hydra.sweeper.dry_run=true", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    assert "6 jobs (dry run: nothing computed)" in result.stdout  # the user's pt1: 4 seeds, C(4, 2) seed pairings
    assert "seed_pair='2_3'" in result.stdout
    without = run_app("-m", "pair_1_5_only", f"data.root={real_pt1}", cwd=tmp_path)
    assert without.returncode == 1 and "Error: pair_1_5_only: not a command" in without.stdout
    for flag in (["--config-dir", str(tmp_path / "nope")], ["--config-dir"]):
        result = run_app(*flag, cwd=tmp_path)
        assert result.returncode == 1 and "Error: --config-dir" in result.stdout, result.stdout
    # the packaged pt1 is used without the flag: no seed 3, and no exclusion
    result = run_app("regime=pt1", "pair=1_7", "seed_pair=orig_2", "layer=5", f"data.root={real_pt1}", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    assert json.loads((tmp_path / "outputs/cka/pt1/pt1-1_vs_pt1-7_seed2/layer5/summary.json").read_text())[
        "folder_b"] == "revision/exp4/pt1-7_seed2"
    assert np.isfinite(read_json(tmp_path / "outputs/cka/pt1/pt1-1_vs_pt1-7_seed2/layer5/summary.json")["final_cka"])
