"""The report's statistics as LaTeX a paper can take: stats.tex, a document that compiles with
pdflatex as it stands, a booktabs table per kind of comparison and setting (so measure).

Pure functions of the report's tables (stats.group_summary, compare_kinds, compare_regimes, trends).
What each table shows is declared once, in TABLES, a Column each: showing another column (another
interval of an estimate, another p-value) is one more entry there."""

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

# what stands for a number a table does not have (no interval or test: a group of one seed pairing)
MISSING = "--"

_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}",
            ">": r"\textgreater{}", "|": r"\textbar{}"}


def escape(text: object) -> str:
    """text as LaTeX typesets it literally: every character special to LaTeX escaped (pt2-1_seed1:
    pt2-1\\_seed1), and <, >, | written so that the default fonts show them."""
    return "".join(_ESCAPES.get(c, c) for c in str(text))


def number(value: float) -> str:
    """A number to 3 decimals, a negative one with a minus sign, not a hyphen ($-$0.167); MISSING
    for NaN."""
    if value is None or math.isnan(value):
        return MISSING
    text = f"{value:.3f}"
    return "0.000" if text == "-0.000" else text.replace("-", "$-$")


def p_value(value: float) -> str:
    """A p-value to 3 decimals, below 0.001 as $<$0.001; MISSING for NaN (no test)."""
    if value is None or math.isnan(value):
        return MISSING
    return "$<$0.001" if value < 0.001 else f"{value:.3f}"


def count(value: float) -> str:
    """A count as an integer; MISSING for NaN (a count of another table, in stats.csv)."""
    return MISSING if value is None or math.isnan(value) else str(int(value))


def interval(value: float, low: float, high: float) -> str:
    """An estimate and its interval: 0.512 [0.490, 0.534], or 0.512 [--] without an interval."""
    bounds = MISSING if math.isnan(low) and math.isnan(high) else f"{number(low)}, {number(high)}"
    return f"{number(value)} [{bounds}]"


@dataclass(frozen=True)
class Column:
    """A column of a LaTeX table: its header (LaTeX), its alignment, and its cell, written as LaTeX
    from a row of the report's table."""
    header: str
    cell: Callable[[pd.Series], str]
    align: str = "r"


def text(name: str, header: str | None = None) -> Column:
    """A column of text, escaped, left-aligned; its header the column's name unless given."""
    return Column(header or escape(name), lambda row: escape(row[name]), "l")


def numeric(name: str, header: str | None = None, write: Callable[[float], str] = number) -> Column:
    """A column of numbers, written by `write` (number, p_value, count)."""
    return Column(header or escape(name), lambda row: write(float(row[name])))


def estimate(name: str, low: str, high: str, header: str) -> Column:
    """An estimate with its interval in one cell (interval): the columns name, low and high."""
    return Column(header, lambda row: interval(float(row[name]), float(row[low]), float(row[high])))


def layers() -> Column:
    """The layer pair: 5, or 3 vs 5 where the first model's layer differs from the second's."""
    return Column("layer", lambda row: str(row["layer"]) if row["layer"] == row["layer_b"]
                  else f"{row['layer']} vs {row['layer_b']}", "l")


def versus(first: str, second: str, header: str) -> Column:
    """Two names compared, the first first: pt1 vs pt3."""
    return Column(header, lambda row: f"{escape(row[first])} vs {escape(row[second])}", "l")


def not_above_chance() -> Column:
    """Of a group's values tested against chance, how many are not above it (2/21); MISSING
    where none was tested."""
    return Column("not above chance", lambda row: f"{int(row['n_not_above_chance'])}/{int(row['n_tested'])}"
                  if row["n_tested"] else MISSING)


@dataclass(frozen=True)
class Table:
    """How one of the report's tables (name: its name in stats.csv's `table` column) is shown: a
    section headed `title`, a table per setting whose caption begins with the setting and goes on
    with `caption` (LaTeX: what the numbers are and the test), its columns, and why a setting may
    have no rows (`empty`, said in the document in place of its table)."""
    name: str
    title: str
    caption: str
    columns: tuple[Column, ...]
    empty: str


OVER_MODELS = ("Over models and seeds (recommended: the seed-pairing test holds the models fixed): the 95\\% "
               "interval and $p$ of the delete-one-model jackknife (a regime's models left out in turn, each with all "
               "its seeds), Student's $t$ with $m - 1$ degrees of freedom, $m$ the fewest models of a regime read.")


def over_models(value: str) -> tuple[Column, ...]:
    """The columns of an estimate over models and seeds (inference.Estimate.columns)."""
    return (numeric("n_models", "models", count), estimate(value, "ms_ci_low", "ms_ci_high", "[95\\% CI, models]"),
            numeric("ms_p", "$p$, models", p_value))


TABLES = (
    Table("groups", "Groups of comparisons",
          "mean similarity over seed pairings with its 95\\% confidence interval (Student's t, $n - 1$ degrees of "
          "freedom; $n$: seed pairings); std over the comparisons; chance: the mean chance level, as a similarity; "
          "calibrated: the mean of $(s - s_0) / (1 - s_0)$; not above chance: values not above chance at 5\\% "
          "(permutation test, Benjamini-Hochberg) of those tested. No test: groups are compared in the tables below. "
          "Over models and seeds (recommended: the seed-pairing interval holds the models fixed): the 95\\% interval "
          "of the delete-one-model jackknife (a regime's models left out in turn, each with all its seeds), "
          "Student's $t$ with $m - 1$ degrees of freedom for its $m$ models.",
          (text("regime"), layers(), text("kind"), numeric("n_units", "$n$", count),
           numeric("n_comparisons", "comparisons", count), estimate("mean", "ci_low", "ci_high", "mean [95\\% CI]"),
           numeric("n_models", "models", count),
           estimate("mean", "ms_ci_low", "ms_ci_high", "mean [95\\% CI, models]"),
           numeric("std"), numeric("chance"), numeric("calibrated"), not_above_chance()),
          "only comparisons of an instance with itself"),
    Table("same-task vs different-task", "Same-task cross-seed against different-task",
          "each kind's mean similarity over the seed pairings both kinds have, with its 95\\% t interval; the "
          "difference, same-task minus different-task, with its 95\\% interval, $t$ and $p$ of the paired "
          "t-test over seed pairings ($n$: pairings); effect size $d_z$, the mean difference over the standard "
          "deviation of the differences. " + OVER_MODELS,
          (text("regime"), layers(), numeric("n_units", "$n$", count),
           estimate("same_task", "same_task_ci_low", "same_task_ci_high", "same-task [95\\% CI]"),
           estimate("different_task", "different_task_ci_low", "different_task_ci_high",
                    "different-task [95\\% CI]"),
           estimate("difference", "difference_ci_low", "difference_ci_high", "difference [95\\% CI]"),
           numeric("effect_size_dz", "$d_z$"), numeric("t", "$t$"), numeric("p", "$p$", p_value),
           *over_models("difference")),
          "no regime and layer pair has both kinds at a common seed pairing (hydra.sweeper.self_pairs=true "
          "runs the same-task ones)"),
    Table("regime vs regime", "Regime against regime, different-task comparisons",
          "each regime's mean similarity over the seed pairings both regimes have; the difference, first "
          "regime minus second, with the 95\\% interval, $t$ and $p$ of Welch's t-test over seed pairings "
          "($n$: pairings of each regime); effect size Hedges' $g$. " + OVER_MODELS,
          (layers(), versus("regime_a", "regime_b", "regimes"), numeric("n_units_a", "$n$ first", count),
           numeric("n_units_b", "$n$ second", count), numeric("mean_a", "first"), numeric("mean_b", "second"),
           estimate("difference", "difference_ci_low", "difference_ci_high", "difference [95\\% CI]"),
           numeric("hedges_g", "$g$"), numeric("t", "$t$"), numeric("p", "$p$", p_value),
           *over_models("difference")),
          "fewer than two regimes with different-task comparisons"),
    Table("trends over training tasks", "Trends over the number of training tasks",
          "different-task similarity against the number of training tasks per model: the OLS slope (per task) of "
          "the seed-pairing means, its 95\\% t interval with $n - 2$ degrees of freedom and two-sided $p$; $r$: "
          "Pearson's correlation of the number of tasks with the means; $n$: the means (seed pairings times "
          "numbers of tasks). With two means a line fits exactly: no interval, $p$ or $r$. " + OVER_MODELS,
          (layers(), text("n_tasks", "training tasks"), text("regimes"), numeric("n_units", "$n$", count),
           estimate("slope", "ci_low", "ci_high", "slope [95\\% CI]"), numeric("r", "$r$"),
           numeric("p", "$p$", p_value), *over_models("slope")),
          "fewer than two numbers of training tasks with different-task comparisons of a layer with itself"),
)

PREAMBLE = r"""\documentclass{article}
\usepackage[landscape,margin=2cm]{geometry}
\usepackage{booktabs}
\usepackage{graphicx}
% a table wider than the line or taller than the page is scaled down to fit; any other stays as it is
\newsavebox{\fitted}
\newcommand{\fit}[1]{%
  \sbox{\fitted}{#1}%
  \ifdim\wd\fitted>\linewidth\sbox{\fitted}{\resizebox{\linewidth}{!}{\usebox{\fitted}}}\fi
  \ifdim\dimexpr\ht\fitted+\dp\fitted\relax>0.8\textheight
    \sbox{\fitted}{\resizebox{!}{0.8\textheight}{\usebox{\fitted}}}\fi
  \usebox{\fitted}}
\begin{document}
"""

# tables held before a \clearpage places them: LaTeX holds at most 18 floats
TABLES_PER_FLUSH = 10


def label(*parts: str) -> str:
    """A \\label's key from its parts: tab:groups:rbf0.4 (what a key may not hold made a hyphen)."""
    return "tab:" + ":".join(re.sub(r"[^A-Za-z0-9.-]+", "-", part) for part in parts)


def _pairings(rows: pd.DataFrame) -> str:
    """The seed pairings a table's rows average, for its caption: named where every row has the
    same ones, else where to find each row's."""
    sets = set(rows["seed_pairings"])
    if len(sets) == 1:
        return f"Seed pairings: {escape(', '.join(next(iter(sets)).split()))}."
    return "Each row's seed pairings: stats.csv, column seed\\_pairings."


def table_tex(spec: Table, rows: pd.DataFrame, setting: str, measure: str) -> str:
    """One setting's rows of one of the report's tables as a LaTeX table environment: booktabs
    rules, the caption (setting, measure, spec.caption, the seed pairings) above, a label
    (tab:<table>:<setting>)."""
    header = " & ".join(column.header for column in spec.columns) + r" \\"
    body = [" & ".join(column.cell(row) for column in spec.columns) + r" \\" for _, row in rows.iterrows()]
    caption = f"{spec.title} [{escape(setting)}; {escape(measure)}]: {spec.caption} {_pairings(rows)}"
    return "\n".join([
        r"\begin{table}[htbp]", r"\centering", r"\small", f"\\caption{{{caption}}}",
        f"\\label{{{label(spec.name, setting)}}}",
        f"\\fit{{\\begin{{tabular}}{{{''.join(column.align for column in spec.columns)}}}",
        r"\toprule", header, r"\midrule", *body, r"\bottomrule", r"\end{tabular}}", r"\end{table}"])


def document(tables: dict[str, pd.DataFrame], settings: dict[str, str], title: str) -> str:
    """stats.tex: the report's tables (by their names in TABLES) as a LaTeX document, a section per
    table and in it a table per setting (settings: setting -> its measure, in order), under
    `title` (plain text). A setting without rows in a table, or a table without rows, gets a sentence
    saying why in place of its table; rows of a setting not in settings raise ValueError."""
    parts = [PREAMBLE, f"\\section*{{{escape(title)}}}",
             "Every number here is in stats.csv (its column table names the table), where every value keeps "
             "all its digits; how each is computed: stats.md. Similarities read higher as more alike under every "
             "measure; the raw values of different measures are not comparable in size."]
    held = 0
    for spec in TABLES:
        table = tables[spec.name]
        unknown = set(table.get("setting", [])) - set(settings)
        if unknown:
            raise ValueError(f"{spec.name}: rows of settings not given: {', '.join(sorted(unknown))}")
        parts.append(f"\\section*{{{escape(spec.title)}}}")
        if table.empty:
            parts.append(f"No table: no setting has its comparisons ({escape(spec.empty)}).")
            continue
        for setting, measure in settings.items():
            rows = table[table["setting"] == setting]
            if rows.empty:
                parts.append(f"No table of {escape(setting)}: {escape(spec.empty)}.")
                continue
            parts.append(table_tex(spec, rows, setting, measure))
            held += 1
            if held == TABLES_PER_FLUSH:
                parts.append(r"\clearpage")
                held = 0
        parts.append(r"\clearpage")
        held = 0
    parts.append(r"\end{document}")
    return "\n".join(parts) + "\n"
