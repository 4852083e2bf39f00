"""The Python API: compare() equals the command line, load_results() the report's table."""

from pathlib import Path

import pandas as pd
import pytest

from cka_hydra import compare, load_results, run_folder
from cka_hydra.errors import InputError

from conftest import RUN, read_json, run_app, run_cli

SWEEP = ["-m", "sweep", "regime=pt3", "layer=5", "seed_pair=orig_1"]


def test_compare_equals_the_command_line(small_store, tmp_path, monkeypatch):
    cli_dir = tmp_path / "cli"
    cli_dir.mkdir()
    assert run_cli(*RUN, f"data.root={small_store}", "checkpoints=all", cwd=cli_dir).returncode == 0
    (cli_run,) = [p.parent for p in (cli_dir / "outputs").rglob(run_folder.SUMMARY_FILE)]
    cli = pd.read_csv(cli_run / run_folder.timeline_file("cka"))

    api_dir = tmp_path / "api"
    api_dir.mkdir()
    monkeypatch.chdir(api_dir)
    timeline = compare([*RUN, f"data.root={small_store}", "checkpoints=all"])
    assert list(timeline.columns) == ["step", "value", "n_cities", "chance", "calibrated"]
    assert timeline["calibrated"].tolist() == pytest.approx(
        ((timeline["value"] - timeline["chance"]) / (1 - timeline["chance"])).tolist(), abs=1e-15)
    assert timeline["step"].tolist() == cli["step"].tolist()
    assert timeline["value"].tolist() == pytest.approx(cli["cka"].tolist(), abs=1e-12)
    api_run = api_dir / cli_run.relative_to(cli_dir)  # the same folder, below the working directory
    for name in (run_folder.SUMMARY_FILE, run_folder.timeline_file("cka"), ".hydra/config.yaml", ".hydra/overrides.yaml",
                 ".hydra/hydra.yaml", "cka.log"):
        assert (api_run / name).is_file(), name
    assert "final cka" in (api_run / "cka.log").read_text()
    assert timeline.attrs["summary"]["settings"] == read_json(cli_run / run_folder.SUMMARY_FILE)["settings"]
    # the command line finds compare's result and skips it; compare again reads it, touching nothing
    result = run_cli(*RUN, f"data.root={small_store}", "checkpoints=all", cwd=api_dir)
    assert result.returncode == 0 and "skipped" in result.stdout
    before = {p: p.stat().st_mtime_ns for p in api_run.rglob("*")}
    again = compare([*RUN, f"data.root={small_store}", "checkpoints=all"])
    assert again["value"].tolist() == timeline["value"].tolist()
    assert {p: p.stat().st_mtime_ns for p in api_run.rglob("*")} == before


def test_compare_without_writing_writes_nothing(small_store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    written = compare([*RUN, f"data.root={small_store}", "cka.bootstrap=20"], write=False)
    assert list(written.columns) == ["step", "value", "n_cities", "chance", "cka_low", "cka_high", "calibrated"]
    assert written.attrs["summary"]["measure"] == "cka"
    assert not any(tmp_path.iterdir())
    again = compare([*RUN, f"data.root={small_store}", "cka.bootstrap=20"])
    pd.testing.assert_frame_equal(written, again)


@pytest.mark.parametrize("overrides, message", [
    (["regime=pt9"], "Could not find 'regime/pt9' Available options in 'regime': pt1 pt2 pt3"),
    (["cka.kernal=rbf"], "To append to your config use \\+cka.kernal=rbf Key 'kernal' not in 'CKAConfig'"),
    (["+cka.kernal=rbf"], "cka.kernal: unknown setting"),
    (["pair=1_4"], "pair=1_4: pt2-1 and pt2-4 share the training task"),
])
def test_compare_refuses_bad_input_with_one_line(small_store, tmp_path, monkeypatch, overrides, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=message) as err:
        compare([*RUN, f"data.root={small_store}", *overrides])
    assert "\n" not in str(err.value)
    assert not (tmp_path / "outputs").exists()


def test_compare_and_load_results_say_what_they_expected(tmp_path):
    with pytest.raises(InputError, match=r"expected a list of overrides"):
        compare("regime=pt3")
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match=r"not a folder; expected a results dir"):
        load_results(tmp_path / "file")


def test_load_results_is_the_reports_table(small_store, tmp_path):
    assert run_app(*SWEEP, f"data.root={small_store}", "checkpoints=all", cwd=tmp_path).returncode == 0
    results_dir = tmp_path / "outputs" / "cka"
    broken = sorted(p.parent for p in results_dir.rglob(run_folder.SUMMARY_FILE))[0]
    (broken / run_folder.SUMMARY_FILE).unlink()  # now an incomplete folder
    assert run_app("report", f"data.root={small_store}", cwd=tmp_path).returncode == 0

    frame = load_results(results_dir)
    csv = pd.read_csv(results_dir / "report" / "cka_results.csv", keep_default_na=False, na_values=[""])
    assert list(frame.columns) == list(csv.columns)
    assert len(frame) == len(csv) == 6 * 3  # 6 complete comparisons at 3 steps
    assert frame["value"].tolist() == pytest.approx(csv["value"].tolist(), abs=1e-15)
    assert frame.attrs["left_out"] == {"incomplete": 1}
    assert frame.attrs["left_out_runs"][0]["run_dir"] == str(broken.relative_to(results_dir))
    for run_dir, rows in frame.groupby("run_dir"):
        summary = read_json(Path(run_dir) / run_folder.SUMMARY_FILE)
        assert rows["step"].tolist() == summary["steps"]
        assert rows.loc[rows["final"], "value"].item() == summary["final_cka"]
        assert (rows["instance_a"].unique().tolist(), rows["instance_b"].unique().tolist()) == (
            [summary["exp1"]], [summary["exp2"]])


def test_load_results_counts_a_result_written_from_python(small_store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    compare([*RUN, f"data.root={small_store}"])
    compare([*RUN[:-1], "layer=3", f"data.root={small_store}"], write=False)  # not written: not there
    frame = load_results("outputs/cka")
    assert frame["run_dir"].nunique() == 1 and frame.attrs["left_out"] == {}
    with pytest.raises(InputError, match="no such folder; expected a results dir"):
        load_results(tmp_path / "nothing")
