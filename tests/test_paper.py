"""What a paper takes from the report: stats.tex (LaTeX tables that compile as they stand, every
number as in stats.csv), each figure as a PDF with its fonts embedded, and each figure's numbers
as a CSV beside it."""

import json
import logging
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from conftest import built_once, run_app

from cka_hydra import figures, latex
from cka_hydra.report import write_report

# what each table's caption must name: its test or interval
TESTS = {"groups": "Student's t", "same-task vs different-task": "paired t-test over seed pairings",
         "regime vs regime": "Welch's t-test over seed pairings",
         "trends over training tasks": "OLS slope (per task) of the seed-pairing means, its 95\\% t interval with "
                                       "$n - 2$ degrees of freedom"}
# each table's estimate with its interval: the header of its cell, and its columns in stats.csv
INTERVALS = {"groups": ("mean [95\\% CI]", "mean", "ci_low", "ci_high"),
             "same-task vs different-task": ("difference [95\\% CI]", "difference", "difference_ci_low",
                                             "difference_ci_high"),
             "regime vs regime": ("difference [95\\% CI]", "difference", "difference_ci_low", "difference_ci_high"),
             "trends over training tasks": ("slope [95\\% CI]", "slope", "ci_low", "ci_high")}


@pytest.fixture(scope="module")
def sweep_dir(small_store, tmp_path_factory) -> Path:
    """pt2 and pt3 (a trend, a regime against a regime), two model pairs each and every model also
    against itself (same-task against different-task), at layer 5, under two measures: 60 runs."""
    def build(cwd):
        result = run_app("-m", "sweep", "regime=pt2,pt3", "pair=1_2,2_3", "layer=5", "hydra.sweeper.self_pairs=true",
                         "measure=cka,procrustes", f"data.root={small_store}", "hydra/launcher=basic", cwd=cwd)
        assert result.returncode == 0, result.stdout

    return built_once(tmp_path_factory, "paper", build) / "outputs/cka"


@pytest.fixture(scope="module")
def report(sweep_dir, tmp_path_factory) -> tuple[Path, dict]:
    """The report of sweep_dir: its folder and what write_report returned."""
    out = tmp_path_factory.mktemp("paper") / "report"
    return out, write_report(sweep_dir, out)


def tables_of(tex: str) -> list[str]:
    """The table environments of a LaTeX document, in order."""
    return re.findall(r"\\begin\{table\}.*?\\end\{table\}", tex, flags=re.S)


def rows_of(table: str) -> tuple[list[str], list[list[str]]]:
    """A booktabs table's header cells and body rows' cells (between \\midrule and \\bottomrule)."""
    head = table.split("\\toprule\n")[1].split("\n")[0]
    body = table.split("\\midrule\n")[1].split("\\bottomrule")[0].strip().splitlines()
    cells = [line.removesuffix(" \\\\").split(" & ") for line in body]
    return head.removesuffix(" \\\\").split(" & "), cells


def unlatex(cell: str) -> str:
    """A cell's number as Python reads it: $-$ a minus sign, $<$ a less-than."""
    return cell.replace("$-$", "-").replace("$<$", "<")


def test_stats_tex_holds_each_table_per_setting_with_the_numbers_of_stats_csv(report):
    out, found = report
    assert {"stats.tex", "stats.csv", "stats.md"} <= set(found["files"])
    tex = (out / "stats.tex").read_text()
    assert tex.startswith("\\documentclass{article}") and tex.rstrip().endswith("\\end{document}")
    assert "\\usepackage{booktabs}" in tex
    stats = pd.read_csv(out / "stats.csv", dtype={"seed_pairings": str})
    tables = tables_of(tex)
    expected = [(spec.name, setting) for spec in latex.TABLES for setting in ("default", "procrustes")]
    assert len(tables) == len(expected) == 8  # every table has rows under both measures here
    for table, (name, setting) in zip(tables, expected):
        assert [table.count(rule) for rule in ("\\toprule", "\\midrule", "\\bottomrule")] == [1, 1, 1]
        caption = re.search(r"\\caption\{(.*)\}\n", table).group(1)
        assert TESTS[name] in caption and f"[{setting}; {'cka' if setting == 'default' else setting}]" in caption
        assert "Seed pairings: 1\\_2, orig\\_1, orig\\_2." in caption  # underscores escaped
        assert f"\\label{{{latex.label(name, setting)}}}" in table
        rows = stats[(stats["table"] == name) & (stats["setting"] == setting)]
        header, cells = rows_of(table)
        assert len(cells) == len(rows) > 0 and all(len(row) == len(header) for row in cells)
        column, value, low, high = INTERVALS[name]
        for row, (_, expected_row) in zip(cells, rows.iterrows()):
            numbers = re.fullmatch(r"(\S+) \[(\S+), (\S+)\]", unlatex(row[header.index(column)])).groups()
            assert [float(n) for n in numbers] == pytest.approx(
                [expected_row[value], expected_row[low], expected_row[high]], abs=5e-4)
            if "$p$" in header:
                p = unlatex(row[header.index("$p$")])
                assert p == "<0.001" if expected_row["p"] < 0.001 else float(p) == pytest.approx(expected_row["p"],
                                                                                                   abs=5e-4)
    assert len(set(re.findall(r"\\label\{([^}]*)\}", tex))) == len(tables)  # a label each, none twice
    # every underscore outside math and labels is escaped
    text = re.sub(r"\$[^$]*\$|\\label\{[^}]*\}", "", tex)
    assert re.findall(r"(?<!\\)_", text) == []


def compiled(tex: str, folder: Path) -> subprocess.CompletedProcess:
    """pdflatex on tex as stats.tex in folder, as docs/report.md says to run it, stopping at the first error."""
    (folder / "stats.tex").write_text(tex)
    return subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "stats.tex"], cwd=folder,
                          capture_output=True, text=True, timeout=120)


def test_stats_tex_compiles_as_it_stands(report, tex, tmp_path):
    out, _ = report
    result = compiled((out / "stats.tex").read_text(), tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert (tmp_path / "stats.pdf").read_bytes().startswith(b"%PDF")
    assert "Overfull \\hbox" not in result.stdout  # wide tables are scaled to fit


AWKWARD = "pt2-1_seed1 & 50% #1 {x} ~^\\ <a|b>"  # every character special to LaTeX


def awkward_document() -> str:
    """stats.tex of one groups row whose names hold every character special to LaTeX, the other
    tables without rows."""
    groups = pd.DataFrame([dict(setting=AWKWARD, measure="cka", regime=AWKWARD, layer=3, layer_b=5, kind=AWKWARD,
                                n_comparisons=4, n_units=2, seed_pairings="orig_1 1_2", mean=0.5123, std=0.1,
                                ci_low=0.4901, ci_high=0.5344, chance=0.04, calibrated=float("nan"),
                                n_not_above_chance=1, n_tested=4, n_models=5, ms_ci_low=0.41, ms_ci_high=0.61)])
    empty = pd.DataFrame()
    return latex.document({"groups": groups, "same-task vs different-task": empty, "regime vs regime": empty,
                           "trends over training tasks": groups.iloc[:0]}, {AWKWARD: "cka"}, AWKWARD)


def test_latex_writes_numbers_and_escapes_names_and_says_why_a_table_is_left_out():
    assert latex.escape("pt2-1_seed1") == "pt2-1\\_seed1"
    assert latex.escape("50% & #1") == "50\\% \\& \\#1"
    assert (latex.number(-0.1674), latex.number(-0.0001), latex.number(float("nan"))) == ("$-$0.167", "0.000", "--")
    assert (latex.p_value(0.0004), latex.p_value(0.0031), latex.p_value(float("nan"))) == ("$<$0.001", "0.003", "--")
    assert latex.interval(0.5123, float("nan"), float("nan")) == "0.512 [--]"
    tex = awkward_document()
    assert "0.512 [0.490, 0.534]" in tex and " & 3 vs 5 & " in tex and " & 1/4 \\\\" in tex
    assert "pt2-1\\_seed1 \\& 50\\% \\#1 \\{x\\} \\textasciitilde{}\\textasciicircum{}\\textbackslash{}" in tex
    # said in the document, not only in a comment: a section without a table says why
    assert tex.count("No table: no setting has its comparisons (") == 3
    with pytest.raises(ValueError, match="groups: rows of settings not given: " + re.escape(AWKWARD)):
        latex.document({spec.name: pd.DataFrame() for spec in latex.TABLES[1:]}
                       | {"groups": pd.DataFrame({"setting": [AWKWARD]})}, {}, "none")


def test_a_document_of_names_special_to_latex_compiles(tex, tmp_path):
    result = compiled(awkward_document(), tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]


def test_every_figure_is_also_a_pdf_with_embedded_fonts_and_a_csv_of_its_numbers(report):
    out, found = report
    files = set(found["files"])
    images = sorted(name for name in files if name.endswith(".png"))
    assert "conclusions_trends.png" in images and "models_pt2_layer5_procrustes.png" in images
    for image in images:
        stem = image.removesuffix(".png")
        assert {f"{stem}.pdf", f"{stem}.csv"} <= files and (out / f"{stem}.csv").is_file()
        pdf = (out / f"{stem}.pdf").read_bytes()
        assert pdf.startswith(b"%PDF") and b"/FontFile2" in pdf and b"/Type3" not in pdf, stem  # TrueType, embedded
        assert len(pd.read_csv(out / f"{stem}.csv")) > 0
    if shutil.which("pdffonts"):
        listed = subprocess.run(["pdffonts", out / "trends.pdf"], capture_output=True, text=True).stdout.splitlines()
        assert len(listed) > 2 and all(line.split()[-5] == "yes" for line in listed[2:])  # the emb column
    for page, shown in (("index.html", [name for name in images if name != "conclusions_trends.png"]),
                        ("conclusions.html", ["conclusions_trends.png"])):
        text = (out / page).read_text()
        assert len(text.encode()) < 100_000 and "data:image" not in text  # linked, not embedded
        for image in shown:
            stem = image.removesuffix(".png")
            assert f"<a href='{stem}.pdf'>PDF</a>, <a href='{stem}.csv'>numbers (CSV)</a>" in text
    assert "<a href='stats.tex'>stats.tex</a>" in (out / "index.html").read_text()


def test_a_figures_csv_holds_the_numbers_it_draws(report):
    out, _ = report
    results = pd.read_csv(out / "cka_results.csv", dtype={"seed_a": str, "seed_b": str})
    final = results[results["final"] & (results["setting"] == "default") & (results["regime"] == "pt2")]
    final = final[final["instance_a"] != final["instance_b"]]  # an instance with itself: drawn nowhere
    drawn = pd.read_csv(out / "models_pt2_layer5.csv", index_col="model")
    names = {model: drawn.index[[name.startswith(f"{model}:") for name in drawn.index]][0]
             for model in {*final["model_a"], *final["model_b"]}}
    expected = pd.DataFrame(float("nan"), index=drawn.index, columns=drawn.columns)
    for (a, b), group in final.groupby(["model_a", "model_b"]):  # the mean over the seed pairings compared
        expected.loc[names[a], names[b]] = expected.loc[names[b], names[a]] = group["similarity"].mean()
    pd.testing.assert_frame_equal(drawn, expected, check_exact=False, rtol=0, atol=1e-12)

    trends = pd.read_csv(out / "trends.csv", dtype={"seed_pairings": str})
    different = final.assign(pairing=final["seed_a"] + "_" + final["seed_b"])
    different = different[different["n_shared_tasks"] == 0]
    unit_means = different.groupby("pairing")["similarity"].mean()
    pt2 = trends[trends["regimes"] == "pt2"].iloc[0]
    assert (pt2["n_tasks"], pt2["n_units"]) == (2, 3)
    assert (pt2["mean"], pt2["std"]) == pytest.approx((unit_means.mean(), unit_means.std(ddof=1)), abs=1e-12)
    side_by_side = pd.read_csv(out / "conclusions_trends.csv", dtype={"seed_pairings": str})
    apart = pd.concat([trends, pd.read_csv(out / "trends_procrustes.csv", dtype={"seed_pairings": str})],
                      ignore_index=True)
    pd.testing.assert_frame_equal(side_by_side, apart)


def test_the_next_report_removes_the_pdfs_and_csvs_it_listed(report, sweep_dir, tmp_path):
    out, found = report
    copy, again = tmp_path / "cka", tmp_path / "report"
    shutil.copytree(sweep_dir, copy)
    shutil.copytree(out, again)
    for run_dir in copy.glob("*/*/layer5-procrustes"):  # one measure left: no procrustes figures
        shutil.rmtree(run_dir)
    second = write_report(copy, again)
    gone = [name for name in found["files"] if name not in second["files"]]
    assert "models_pt2_layer5_procrustes.pdf" in gone and "conclusions_trends.csv" in gone
    assert not any((again / name).exists() for name in gone)
    assert sorted(path.name for path in again.iterdir()) == sorted([*second["files"], "report.json"])
    assert json.loads((again / "report.json").read_text())["files"] == second["files"]


def test_a_figures_pdf_is_written_without_a_word_in_the_log(tmp_path, caplog):
    """fontTools subsets the fonts a PDF embeds, and at INFO logs some 50 lines per PDF: none reach
    the report's log."""
    matrix = pd.DataFrame([[0.5, 0.25], [0.25, float("nan")]], index=pd.Index(["a_1", "b"], name="instance"),
                          columns=["a_1", "b"])
    with caplog.at_level(logging.INFO):
        figures.matrix_figure(matrix, "title", "CKA", 0, 1, tmp_path / "matrix.png")
    assert caplog.records == [] and logging.getLogger("fontTools").level == logging.NOTSET
    assert b"/FontFile2" in (tmp_path / "matrix.pdf").read_bytes()
    assert (tmp_path / "matrix.csv").read_text() == "instance,a_1,b\na_1,0.5,0.25\nb,0.25,\n"
