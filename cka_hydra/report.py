"""From a finished sweep folder to the study's tables, figures and one HTML page."""

import html
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cka_hydra import figures, findings, latex, results_dir
from cka_hydra.atomic import atomic_path, write_atomic, write_table
from cka_hydra.covariates import covariate_tests, pair_table, read_covariates, unlisted
from cka_hydra.errors import InputError
from cka_hydra.results import DEFAULT_SETTING, collect, leave_out
from cka_hydra.schema import ReportConfig
from cka_hydra.stats import (
    ALPHA, DIFFERENT_TASK, INCOMPLETE, SHARED_TASK, compare_kinds, compare_regimes, comparisons_that_count, conclusions_of,
    final_values, group_summary, left_out_pairings, measure_agreement, not_above_chance, trend_comparisons, trends,
)

log = logging.getLogger(__name__)

METHOD = """\
Each value is a comparison's similarity at its final step (higher is more alike for every
measure): its CKA for the measures cka and pca_cka, 1 - its disparity for procrustes,
1 - its angle / (pi/2) for shape, and the value itself for svcca, mknn and rsa; each
setting (so each measure) on its own. Comparisons are not independent
observations: every instance (a model at one seed) takes part in many of them. The
unit of variation is therefore the seed pairing (e.g. every orig-vs-seed1 comparison
of a regime and layer): values are averaged within each seed pairing first, and n,
confidence intervals and tests count seed pairings, not comparisons.

- Groups: per setting (measure), regime, layer pair (layer: the first model's, layer_b:
  the second's; equal but in layer maps) and kind of comparison: different-task (models
  that share no training task), same-task cross-seed (one model at two seeds),
  shared-task (allow_overlap runs), one instance, two layers (a model at one seed against
  itself at another layer). Mean over seed pairings, 95% confidence interval from
  Student's t with n - 1 degrees of freedom; std is over the individual comparisons, for
  reference.
- Like for like: a group's mean over all of its seed pairings is reported with its n and
  the pairings (seed_pairings), but every test and every figure that compares groups
  (trends, intra vs inter, layer maps, regime against regime) compares them over the seed
  pairings they all have; the pairings held by only some are named (left_out, or on the
  figure) and take no part. A sweep that adds pairings to one group therefore moves its
  own mean, never a comparison. A pairing with fewer than half as many comparisons as
  its group's fullest one, or, all kinds of a regime and layer pair together (the cells
  of one matrix), as its fullest group's fullest one, is incomplete (one-off runs beside
  a sweep): its comparisons count nowhere, in no mean, n, std, chance level, matrix
  cell, trend or timeline, and it is named (incomplete_pairings, and as left out).
- Same-task cross-seed against different-task (the "intra-task vs inter-task"
  comparison; it needs hydra.sweeper.self_pairs=true): both means come from the seed
  pairings both kinds have, so the test is a paired t-test over seed pairings; effect size
  d_z is the mean difference over the standard deviation of the differences.
- Regime against regime (different-task comparisons): different regimes are different
  training runs, so the test is Welch's unpaired t-test over the seed pairings both have;
  effect size Hedges' g.
- Both comparisons also give their difference's 95% interval (difference_ci_low,
  difference_ci_high): the paired t-test's, and Welch's.
- Trends over training tasks (different-task comparisons of models with equally many tasks,
  a layer with itself): per setting and layer, the least-squares slope of the seed-pairing
  means, over the pairings every number of tasks has, on the number of tasks, its 95% t
  interval with n - 2 degrees of freedom (n: the means) and two-sided p; effect size r,
  Pearson's. It takes every mean as an independent point.
- Chance: every table states the chance level of the groups it compares (chance, as a
  similarity: the mean over the group's comparisons of the exact null mean of biased
  CKA, which a random re-pairing of the cities gives, 0 for debiased CKA; else the
  permutation test's null mean). With null.permutations, each value also has a p-value,
  and matrices (°) and trends (red rings) mark the values not above chance at 5% after
  the Benjamini-Hochberg correction over each figure's values (n_not_above_chance of
  n_tested in the groups table). The test assumes the cities are exchangeable: for a
  spatially smooth representation the p-values are optimistic. Where a chance level is
  known, the groups table's calibrated is the mean of (s - s0) / (1 - s0), each value's
  similarity s above its chance level s0 as a share of the room above it (Groeger et al.
  2026): raw values of different measures are not comparable in size, calibrated ones
  are (cka_results.csv has it per value).

Over models and seeds (the ms_ columns: ms_ci_low, ms_ci_high, ms_p, with n_models):
the tests above take the seed pairing as the unit and hold the models fixed. The ms_
columns let the models vary too: a regime's models are left out one at a time, each
with every comparison it takes part in and all its seeds (the delete-one-model
jackknife of dyadic data, Snijders & Borgatti 1999), the estimate recomputed, and its
jackknife variance summed over the regimes it reads; the interval and the two-sided
test use Student's t with m - 1 degrees of freedom, m the fewest models of a regime
read. Same-task against different-task is paired model by model (each model's
same-task comparisons weigh as its different-task ones). In a simulation of 300
studies (tests/test_inference.py) these intervals covered the true value at about the
nominal 95% where the seed-pairing ones covered 41-92%. They are the ones to report for
a claim about models trained this way. Groups with a single seed pairing get no
seed-pairing interval or test."""


CONCLUSIONS_METHOD = """\
The study's three claims under each setting (so each measure) of this report, side by side: the
numbers are computed as the report's own tables compute them, of the same comparisons (those that
count, see the report), each setting on its own.

- Trend over training tasks: models trained on disjoint tasks grow more alike with the number of
  tasks they were trained on (pt1, pt2, pt3: 1, 2, 3 tasks per model). Per setting and layer, the
  different-task comparisons of two models with equally many tasks, at that layer, are averaged per
  seed pairing and number of tasks, over the seed pairings every point of the setting has (as its
  trends figure draws them). Estimate: the least-squares slope of those means on the number of
  tasks (per task), its 95% t interval with n - 2 degrees of freedom and its two-sided p; effect
  size r, the Pearson correlation of the number of tasks with the means. The slope takes every mean
  as an independent point. Direction: rises, falls or flat, the slope's sign.
- Same-task cross-seed against different-task, per regime and layer pair (the statistics' table of
  that name): the mean paired difference, same-task minus different-task, over the seed pairings
  both kinds have, its paired t interval and p; effect size d_z. Direction: higher or lower, the
  same-task side's.
- Regime against regime, different-task comparisons (the statistics' table of that name): the
  difference of the two regimes' means, the first named minus the second, over the seed pairings
  both have, Welch's interval and p; effect size Hedges' g; n_units counts both regimes' units.
  Direction: higher or lower, the first named regime's.

Every value is read as a similarity, higher meaning more alike: a distance as 1 - it over its
largest value (Procrustes disparity: 1 - d; the shape metric's angle: 1 - angle / (pi/2)), so that
a direction means the same under every measure. The raw values of different measures are not
comparable in size, only in direction: compare directions, effect sizes and p-values across
measures, not estimates or intervals. directions_agree: whether every setting with a
direction for a claim, layer pair and comparison (what) goes the same way (yes or no; - with fewer
than two). "-": no interval, test or effect size (a single seed pairing, or a slope through two
means). What this study's seed pairings allow a seed-pairing test is said below.

Agreement between measures: over the comparisons every setting of this report has (the same regime,
instances and layers; their number is n), Kendall's tau-b between each two settings' similarities,
and its p-value: 1 when two settings rank the comparisons alike, -1 when in reverse. With fewer
than 3 such comparisons there is no tau. The p-value takes the comparisons as independent, which
they are not (every instance takes part in many): it is optimistic; read tau."""


REPORT_FILE = results_dir.REPORT_FILE  # what the last report found and wrote; the next one removes those files (figures it draws again alike it keeps)


def write_report(sweep_dir: Path, out_dir: Path, exclude: list[str] | None = None,
                 regime_exclude: dict[str, str] | None = None, allow_excluded: bool = False,
                 min_runs: int = ReportConfig.min_runs, covariates: Path | None = None,
                 covariate_rule: str = ReportConfig.covariate_rule,
                 mantel_permutations: int = ReportConfig.mantel_permutations,
                 mantel_seed: int = ReportConfig.mantel_seed) -> dict[str, Any]:
    """Write every table and figure of the report into out_dir, in place of the previous
    report's files; returns what was found and written.

    Comparisons of the models or instances that `exclude` names are left out of every table,
    figure and test, and so (unless allow_excluded) are those the regimes exclude
    (regime_exclude: name -> reason) and those computed with allow_excluded. Settings with fewer
    than min_runs runs get no figures. Similarity against covariates (cka_hydra.covariates): the
    built-in n_shared_tasks where it varies, and those of the CSV file `covariates` (model-level
    values made pair-level by covariate_rule), each with a Mantel test of mantel_permutations
    permutations drawn from mantel_seed; the file is read, and refused, before anything is written."""
    results, left_out, meanings, left_out_runs = collect(sweep_dir, exclude=out_dir)
    given = None if covariates is None else read_covariates(covariates, results, covariate_rule)
    exclude = [name.strip() for name in exclude or []]
    reasons = {} if allow_excluded else dict(regime_exclude or {})
    reasons |= {name: "exclude= of this report" for name in exclude}
    results, excluded = leave_out(results, reasons, allow_excluded)
    for name, what in excluded.items():
        log.info("left out %s (%s): %d runs", name, what["reason"], what["runs"])
    # kept with allow_excluded although a regime leaves them out: said as plainly as what is left out
    kept = results[results["excluded"] != ""].groupby("excluded")["run_dir"].nunique().to_dict()
    for why, n in kept.items():
        log.info("kept although excluded (allow_excluded=true): %s: %d runs", why, n)
    if results.empty:
        raise InputError(f"no results under {sweep_dir} are left once {', '.join(excluded)} are excluded")
    meanings = {label: meaning for label, meaning in meanings.items() if label in set(results["setting"])}
    n_runs = results["run_dir"].nunique()
    skipped = ", ".join([f"{n} {reason}" for reason, n in sorted(left_out.items())]
                        + [f"{what['runs']} of {name} (excluded)" for name, what in excluded.items()]) or "none"
    log.info("read %d runs from %s; left out: %s", n_runs, sweep_dir, skipped)
    settings = sorted(meanings)
    runs = results.groupby("setting")["run_dir"].nunique()
    for setting in settings:
        log.info("setting %s: %d runs (%s)", setting, runs[setting], meanings[setting])
    if len(settings) > 1:
        log.info("results of %d settings: each is reported on its own, never pooled", len(settings))
    drawn = [setting for setting in settings if runs[setting] >= min_runs]
    if len(drawn) < len(settings):
        log.info("%d settings with fewer than %d runs are listed without figures (min_runs=%d)",
                 len(settings) - len(drawn), min_runs, min_runs)
    out_dir.mkdir(parents=True, exist_ok=True)
    earlier_figures = _remove_previous(out_dir)

    write_table(out_dir / "cka_results.csv", results)
    written = ["cka_results.csv"]
    try:
        with atomic_path(out_dir / "cka_results.parquet") as tmp:
            results.to_parquet(tmp, index=False)
        written.append("cka_results.parquet")
    except ImportError:
        log.info("no Parquet engine (pip install pyarrow): wrote the CSV only")

    # the comparisons that count, once, for every table and figure below (like for like)
    final, not_counted = comparisons_that_count(final_values(results))
    pairings_left_out = left_out_pairings(not_counted)
    for line in pairings_left_out["text"]:
        log.info("left out as an %s: %s", INCOMPLETE, line)
    tables = {
        "groups": group_summary(final, not_counted),
        "same-task vs different-task": compare_kinds(final, interval=True),
        "regime vs regime": compare_regimes(final, interval=True),
        "trends over training tasks": trends(final),
    }
    images = []
    scales = colour_scales(final[final["setting"].isin(drawn)])
    for setting in drawn:
        images += _figures(results[results["setting"] == setting], final[final["setting"] == setting], scales,
                           _of_setting(tables["same-task vs different-task"], setting),
                           setting, out_dir)
    # (no table has rows when every comparison is of an instance with itself)
    stats_csv = pd.concat([t.assign(table=name) for name, t in tables.items() if len(t)] or [pd.DataFrame(
        columns=["table"])], ignore_index=True)
    counts = {c for t in tables.values() for c in t if c.startswith("n_") and pd.api.types.is_numeric_dtype(t[c])}
    for column in sorted(counts):  # counts, not floats, where tables do not share them (n_tasks: "1, 2, 3")
        stats_csv[column] = pd.Series([None if pd.isna(v) else int(v) for v in stats_csv[column]], dtype=object)
    write_table(out_dir / "stats.csv", stats_csv)
    final_steps = {setting: {int(step): int(n) for step, n in sorted(final[final["setting"] == setting]["step"]
                                                                     .value_counts().items())} for setting in settings}
    # which regimes end where: regimes trained for different numbers of steps compare different lengths
    mixed = [f"- {setting}: " + ", ".join(f"{n} at step {step}" for step, n in steps.items())
             + f" ({_steps_by_regime(final[final['setting'] == setting])})"
             for setting, steps in final_steps.items() if len(steps) > 1]
    method = f"{METHOD}\n\n{findings.pairings_sentence(final)}"
    markdown = ["# Statistics", "", method, "", _left_out_text(pairings_left_out), ""] + (
        ["Final values from different steps, pooled in these tables (regimes trained for different numbers of "
         "steps compare different training lengths; a side that lacks the later checkpoints, in a study still "
         "growing, ends its comparisons at the last step both sides have):", "", *mixed, ""] if mixed else [])
    for name, table in tables.items():
        markdown += [f"## {name}", "", _shown(table).to_markdown(index=False)
                     if len(table)
                     else "(no such comparisons in this sweep)", ""]
    write_atomic(out_dir / "stats.md", "\n".join(markdown))
    measure_of = results.groupby("setting")["measure"].first()
    write_atomic(out_dir / "stats.tex", latex.document(tables, {setting: measure_of[setting] for setting in settings},
                                                       f"Statistics of {n_runs} runs"))
    written += ["stats.csv", "stats.md", "stats.tex", *(name for image in images for name in figures.files_of(image))]
    measures = final["measure"].nunique()
    if measures > 1:
        log.info("results of %d measures: the study's conclusions under each, side by side, in conclusions.html",
                 measures)
        written += _conclusions(final, tables, drawn, out_dir)
    covariate_tests_, covariate_files = _covariates(final, given, drawn, mantel_permutations, mantel_seed, out_dir)
    written += covariate_files
    not_analysed = [] if given is None else unlisted(given, results)
    if given is not None:
        log.info("covariates of %s: %d of the results' %ss not in it, not analysed", covariates,
                 len(not_analysed), given["level"].iloc[0])
    setting_rows = {name: {"runs": int(runs[name]), "settings": meanings[name], "figures": name in drawn,
                           "final_steps": final_steps[name]} for name in settings}
    write_atomic(out_dir / "index.html", _page(
        sweep_dir, n_runs, skipped, excluded, kept, setting_rows, min_runs, images, tables, pairings_left_out,
        "conclusions.html" in written, _covariates_section(covariate_files, covariates, not_analysed),
        _findings(tables, covariate_tests_, final, drawn or settings, measure_of, "conclusions.html" in written),
        method, mixed, _blanks(final)))
    written.append("index.html")
    found = {"sweep_dir": str(sweep_dir), "runs": n_runs, "left_out": dict(left_out), "left_out_runs": left_out_runs,
             "excluded": excluded, "kept_although_excluded": kept,
             "left_out_pairings": json.loads(pairings_left_out.drop(columns="text").to_json(orient="records")),
             "min_runs": min_runs, "settings": setting_rows,
             "covariates": None if given is None else {"file": str(covariates), "rule": covariate_rule,
                                                       "not_analysed": not_analysed},
             "files": written}
    for name in set(earlier_figures) - set(written):  # figures of the previous report this one did not draw
        (out_dir / name).unlink(missing_ok=True)
    write_atomic(out_dir / REPORT_FILE, json.dumps(found, indent=2) + "\n")
    log.info("wrote %d files to %s: open %s", len(written) + 1, out_dir, out_dir / "index.html")
    return found


def _steps_by_regime(final: pd.DataFrame) -> str:
    """Where each regime's final values are: "pt1: 252 at step 328146; pt2: 252 at step 164073"."""
    counts = final.groupby(["regime", "step"]).size()
    return "; ".join(f"{regime}: " + ", ".join(f"{n} at step {step}" for (_, step), n in of_regime.items())
                     for regime, of_regime in counts.groupby(level="regime"))


def _left_out_text(pairings: pd.DataFrame) -> str:
    """What comparisons_that_count left out, and why, in a sentence (stats.left_out_pairings' rows)."""
    if pairings.empty:
        return "Seed pairings left out: none (no incomplete seed pairing)."
    return (f"Left out as an {INCOMPLETE}: {'; '.join(pairings['text'])}. A seed pairing is incomplete when "
            "it has fewer than half as many comparisons as the fullest pairing of its group or, counting all "
            "kinds of its regime and layer pair together (the cells of one matrix), as the fullest pairing of any "
            "group there: it would weigh as much as a sweep's pairings in every mean, and make some cells of a "
            "matrix average more pairings than the others. Its comparisons take no part in any table, figure or "
            "test (they stay in cka_results.csv; report.json lists their run folders under left_out_pairings).")


def _shown(table: pd.DataFrame) -> pd.DataFrame:
    """A table for reading: no interval or test (NaN, a group of one unit) shows as "-"."""
    return table.astype(object).map(lambda v: "-" if pd.isna(v) else f"{v:.4g}" if isinstance(v, float) else v)


def _remove_previous(out_dir: Path) -> list[str]:
    """Remove the files the previous report wrote (only those: out_dir may hold other things of
    the user's), but for its figures' files: a figure drawn from the same rows is kept as it is
    (figures.reusable), and write_report removes the others once it is written, so that no stale
    figure outlives its data. Returns the figures' files kept, which REPORT_FILE lists meanwhile:
    a report that fails half-way leaves a record of them for the next."""
    try:
        previous = json.loads((out_dir / REPORT_FILE).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    previous = [name for name in previous if isinstance(name, str) and "/" not in name]
    figures_ = {Path(name).stem for name in previous if name.endswith(".png")}
    kept = [name for name in previous if Path(name).stem in figures_ and Path(name).suffix in (".png", ".pdf", ".csv")]
    write_atomic(out_dir / REPORT_FILE, json.dumps({"files": kept, "incomplete": "a report began here and did not "
                                                    "end: these files are of the report before it"}, indent=2) + "\n")
    for name in set(previous) - set(kept) - {REPORT_FILE}:
        (out_dir / name).unlink(missing_ok=True)
    return kept


def _of_setting(table: pd.DataFrame, setting: str) -> pd.DataFrame:
    return table[table["setting"] == setting] if len(table) else table


def colour_scales(final: pd.DataFrame) -> dict[tuple[str, str], tuple[float, float]]:
    """One colour scale per measure, across the settings drawn and the regimes, so that matrices
    side by side compare (one colour, one value): (lowest, highest) same-layer final similarity,
    widened to multiples of 0.05; keyed by (measure, regime) for each regime."""
    same_layer = final[final["layer"] == final["layer_b"]]
    scales = {measure: (float(np.floor(group["similarity"].min() * 20) / 20),
                        float(np.ceil(group["similarity"].max() * 20) / 20))
              for measure, group in same_layer.groupby("measure")}
    return {(measure, regime): scales[measure]
            for measure, regime in same_layer[["measure", "regime"]].drop_duplicates().itertuples(index=False)}


def _figures(results: pd.DataFrame, final: pd.DataFrame, scales: dict[tuple[str, str], tuple[float, float]],
             kinds: pd.DataFrame, setting: str, out_dir: Path) -> list[str]:
    """One setting's figures, each file named after the setting unless it is the default (so
    after the measure: matrix_pt3_layer5_procrustes.png), from its results and its rows of the
    same-task vs different-task table. Everything but the layer map shows the comparisons of a
    layer with the same layer."""
    names: list[str] = []
    if final.empty:  # only comparisons of an instance with itself: nothing to draw
        return names
    suffix = "" if setting == DEFAULT_SETTING else f"_{setting}"
    label = figures.similarity_label(final)
    same_layer = final[final["layer"] == final["layer_b"]]
    for (regime, layer), group in same_layer.groupby(["regime", "layer"]):
        measure = group["measure"].iloc[0]
        vmin, vmax = scales[(measure, regime)]
        scale = f"colour scale {vmin:.2f}-{vmax:.2f}: every setting of {measure}, every regime"
        steps = group["step"].value_counts()
        group = group.assign(other_step=group["step"] != steps.index[0],  # the most common final step
                             half_width=(group["cka_high"] - group["cka_low"]) / 2,  # bootstrap, where computed
                             below=not_above_chance(group))  # Benjamini-Hochberg over the figure's values
        at = f"final at step {steps.index[0]}"
        others = ", ".join(map(str, sorted(steps.index[1:])))
        if others:
            log.warning("%s, layer %d [%s]: comparisons at different final steps: %s", regime, layer, setting,
                        ", ".join(f"{n} at step {step}" for step, n in steps.items()))
        for kind, matrix_of in (("matrix", figures.instance_matrix), ("models", figures.model_matrix)):
            name = f"{kind}_{regime}_layer{layer}{suffix}.png"
            what = "instances" if kind == "matrix" else "models (mean over seed pairings)"
            where = at  # the cells starred: comparisons whose two sides' last common step is another
            if others:
                where += (f"; * {int(group['other_step'].sum())} comparisons at other final steps ({others})"
                          if kind == "matrix" else f"; *: some of its comparisons at other final steps ({others})")
            intervals = matrix_of(group, "half_width") if group["half_width"].notna().any() else None
            tested = group["p_value"].notna().any()
            chance = (f"; °: not above chance at {ALPHA:.0%} (permutation test, Benjamini-Hochberg over the "
                      f"{int(group['p_value'].notna().sum())} comparisons drawn)" if tested else "")
            chance += (f"; chance level {group['chance_similarity'].min():.2f}-{group['chance_similarity'].max():.2f}"
                       if group["chance_similarity"].notna().any() else "")
            figures.matrix_figure(matrix_of(group), f"{regime}, layer {layer}: {what}, {where}{chance}\n{label} "
                                  f"[{setting}]; {scale}", label, vmin, vmax, out_dir / name,
                                  marked=matrix_of(group, "other_step"), intervals=intervals,
                                  below=matrix_of(group, "below") if tested else None)
            names.append(name)
    different = same_layer[same_layer["kind"] == DIFFERENT_TASK]
    if different["n_tasks_a"].nunique() > 1:  # against the number of training tasks: two or more of them
        name = f"trends{suffix}.png"
        figures.trends_figure(same_layer, f"Models trained on disjoint tasks\n[{setting}]", out_dir / name)
        names.append(name)
    kinds = kinds[kinds["layer"] == kinds["layer_b"]] if len(kinds) else kinds
    if len(kinds):
        name = f"intra_inter{suffix}.png"
        figures.kinds_figure(kinds, label,
                             f"Intra-task (one model, two seeds) against inter-task (disjoint tasks)\n[{setting}]",
                             out_dir / name)
        names.append(name)
    if (final["layer"] != final["layer_b"]).any() and (final["kind"] == DIFFERENT_TASK).any():
        name = f"layer_map{suffix}.png"
        figures.layer_map_figure(final, label, f"Layer map\n[{setting}]", out_dir / name)
        names.append(name)
    steps = results.merge(different[["run_dir"]], on="run_dir")
    if (steps.groupby("run_dir")["step"].nunique() > 1).any():
        name = f"timelines{suffix}.png"
        figures.timelines_figure(steps, f"Over training, models trained on disjoint tasks\n[{setting}]",
                                 out_dir / name)
        names.append(name)
    return names


def _conclusions(final: pd.DataFrame, tables: dict[str, pd.DataFrame], drawn: list[str], out_dir: Path) -> list[str]:
    """A report of two or more measures: the study's conclusions under each setting side by side, of
    the comparisons that count (final; tables: the report's, of them), into out_dir: conclusions.csv
    (stats.conclusions_of),
    measure_agreement.csv (stats.measure_agreement), the trends of every setting drawn (drawn: of
    at least min_runs runs) that has two or more numbers of training tasks, a panel each
    (conclusions_trends.png, with its PDF and CSV), and conclusions.html, which shows them; returns the
    files' names."""
    table = conclusions_of(*(tables[claim.table] for claim in findings.CLAIMS))
    agreement = measure_agreement(final)
    write_table(out_dir / "conclusions.csv", table)
    write_table(out_dir / "measure_agreement.csv", agreement)
    names = ["conclusions.csv", "measure_agreement.csv"]
    trend = trend_comparisons(final[final["setting"].isin(drawn)])
    tasks = trend.groupby("setting")["n_tasks_a"].nunique()
    images = []
    if (tasks > 1).any():
        images.append("conclusions_trends.png")
        figures.conclusions_trends_figure(trend[trend["setting"].isin(tasks.index[tasks > 1])],
                                          "Models trained on disjoint tasks, under each setting",
                                          out_dir / images[0])
    parts = [_head("The study's conclusions under each measure"),
             "<h1>The study's conclusions under each measure</h1><p>Of the comparisons of "
             "<a href='index.html'>the report</a>. Data: <a href='conclusions.csv'>conclusions.csv</a>, "
             "<a href='measure_agreement.csv'>measure_agreement.csv</a>.</p>",
             "<details><summary>Method: how each number is computed</summary>"
             f"<pre>{html.escape(CONCLUSIONS_METHOD)}\n\n{html.escape(findings.pairings_sentence(final))}</pre>"
             "</details>"]
    settings = sorted(final["setting"].unique())
    for claim in findings.CLAIMS:
        rows = table[table["claim"] == claim.claim].drop(columns="claim")
        lacking = [setting for setting in settings if setting not in set(rows["setting"])]
        parts.append(f"<h2>{html.escape(claim.claim)}</h2>" + (_shown(rows).to_html(index=False) if len(rows) else "")
                     + (f"<p>No rows of {html.escape(', '.join(lacking))}: a setting needs "
                        f"{html.escape(findings.NEEDS[claim.table])}.</p>" if lacking else ""))
    parts += ["<h2>Agreement between measures</h2>", _shown(agreement).to_html(index=False),
              *(_figure(name) for name in images), "</body></html>"]
    write_atomic(out_dir / "conclusions.html", "\n".join(parts))
    return [*names, *(name for image in images for name in figures.files_of(image)), "conclusions.html"]


def _covariates(final: pd.DataFrame, given: pd.DataFrame | None, drawn: list[str], permutations: int, seed: int,
                out_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    """Similarity against covariates, of the comparisons that count (final), into out_dir:
    covariates.csv (covariates.covariate_tests, of the built-in n_shared_tasks and the file's
    covariates, `given`: read_covariates') and, per setting drawn and covariate, its figure
    (covariate_<name>.png, suffixed as the other figures); returns the tests and the files' names,
    none where nothing is tested (no file given and n_shared_tasks constant)."""
    tests = covariate_tests(final, given, permutations, seed)
    if tests.empty:
        return tests, []
    write_table(out_dir / "covariates.csv", tests)
    names = ["covariates.csv"]
    pairs = pair_table(final, given)
    for (setting, covariate), rows in tests[tests["setting"].isin(drawn)].groupby(["setting", "covariate"]):
        name = f"covariate_{covariate}{'' if setting == DEFAULT_SETTING else f'_{setting}'}.png"
        figures.covariate_figure(pairs[(pairs["setting"] == setting) & (pairs["covariate"] == covariate)], rows,
                                 figures.similarity_label(final[final["setting"] == setting]), covariate,
                                 f"Similarity against {covariate}, a point per pair of two models\nSpearman's "
                                 f"rho; Mantel test, {permutations} permutations of the labels, seed {seed} "
                                 f"[{setting}]",
                                 out_dir / name)
        names += figures.files_of(name)
    return tests, names


def _covariates_section(names: list[str], source: Path | None, not_analysed: list[str]) -> str:
    """The page's section of similarity against covariates (names: _covariates' files), or none."""
    if not names:
        return ""
    given = (f" and of <code>{html.escape(str(source))}</code> ({len(not_analysed)} models or instances of the "
             "results are not in it: not analysed)" if source is not None else "")
    return ("<h2>Similarity against covariates</h2><p>Spearman's rho between each pair of two models' "
            "similarity (a layer with itself; the mean over the seed pairings every pair of its regime and layer "
            f"has) and each covariate: n_shared_tasks, the training tasks two models share, where it varies{given}; "
            "per setting, regime and layer, with a Mantel test: the models' labels are permuted over the rows and "
            "columns of the covariate's matrix together, since pairs that share a model are not independent. "
            "Data: <a href='covariates.csv'>covariates.csv</a>.</p><div class='grid'>"
            + "".join(_figure(name) for name in names if name.endswith(".png")) + "</div>")


def _head(title: str) -> str:
    """A page's head, up to its body."""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
            "body{font-family:sans-serif;margin:2em;max-width:1400px}img{max-width:100%;border:1px solid #ddd}"
            "figure{margin:0 0 1em 0}figcaption{font-size:0.8em;color:#555}"
            ".grid{display:grid;grid-template-columns:1fr 1fr;gap:1em}"
            "table{border-collapse:collapse;font-size:0.85em;display:block;overflow-x:auto;max-width:100%}"
            "td,th{border:1px solid #ccc;padding:2px 6px}"
            "pre{white-space:pre-wrap;background:#f6f6f6;padding:1em}</style></head><body>")


def _figure(name: str) -> str:
    """A figure on a page, linked, not embedded: a study of many settings stays a page of kilobytes;
    its caption links its PDF and the CSV of its numbers (figures.files_of)."""
    _, pdf, csv = figures.files_of(name)
    return (f"<figure><a href='{name}'><img alt='{name}' src='{name}' loading='lazy'></a>"
            f"<figcaption>{name} (click for full size); <a href='{pdf}'>PDF</a>, "
            f"<a href='{csv}'>numbers (CSV)</a></figcaption></figure>")


def _findings(tables: dict[str, pd.DataFrame], covariate_tests_: pd.DataFrame, final: pd.DataFrame,
              settings: list[str], measures: pd.Series, with_conclusions: bool) -> str:
    """The page's lead: the first setting's claims, each a small table of its numbers and
    intervals (findings.claim_rows), its similarity against covariates, and what the study lacks
    for the analyses it does not have."""
    setting = DEFAULT_SETTING if DEFAULT_SETTING in settings else settings[0]
    measure = measures[setting]
    parts = [f"<h2>Findings [{html.escape(setting)}: {html.escape(measure)}]</h2>"
             f"<p>{html.escape(findings.pairings_sentence(final))}</p>"]
    claims = findings.claim_rows(tables, setting)
    for claim in findings.CLAIMS:
        if claim.title in claims:
            parts.append(f"<h3>{html.escape(claim.title)} ({html.escape(claim.what)})</h3>"
                         + claims[claim.title].to_html(index=False))
    covariates = findings.covariate_rows(covariate_tests_, setting)
    if len(covariates):
        parts.append("<h3>Similarity against covariates (Spearman's rho over pairs of two models; Mantel test: "
                     "the models' labels permuted)</h3>" + covariates.to_html(index=False))
    lacking = findings.missing(tables, covariate_tests_)
    if lacking:
        parts.append("<p>" + "<br>".join(html.escape(line) for line in lacking) + "</p>")
    others = [name for name in settings if name != setting]
    if others:
        parts.append(f"<p>The other settings ({html.escape(', '.join(others))}): their rows in the statistics "
                     "below" + (", and every measure's conclusions side by side in "
                                "<a href='conclusions.html'>conclusions.html</a>" if with_conclusions else "")
                     + ".</p>")
    return "\n".join(parts)


def _blanks(final: pd.DataFrame) -> str:
    """Why a matrix has blank cells, from the comparisons actually run."""
    pairings = ", ".join(sorted(final["seed_pairing"].unique()))
    overlap = ("pairs of models that share a training task are compared too (allow_overlap=true)"
               if (final["kind"] == SHARED_TASK).any() else
               "pairs of models that share a training task are not compared (allow_overlap=true runs them)")
    return (f"Blank cells are comparisons this study did not run: each pair of models is compared at the seed "
            f"pairings {pairings} only (the sweep's seed policy: seed_policy=all runs every pairing), {overlap}, "
            "and an instance against itself (similarity 1) is not drawn.")


def _page(sweep_dir: Path, n_runs: int, skipped: str, excluded: dict[str, dict], kept: dict[str, int],
          settings: dict[str, dict], min_runs: int, images: list[str], tables: dict[str, pd.DataFrame],
          pairings_left_out: pd.DataFrame, with_conclusions: bool, covariates: str, lead: str, method: str,
          mixed: list[str], blanks: str) -> str:
    """One page beside its figures: the findings first (lead), then the figures, the statistics
    (the method one click away), similarity against covariates (covariates: HTML), the model
    matrices in a grid and the instance matrices one per row (blanks: why cells are blank), and
    last what was read and left out; with_conclusions: linked to conclusions.html."""
    matrices = [name for name in images if name.startswith(("matrix_", "models_"))]
    n_left = int(pairings_left_out["comparisons"].sum())
    parts = [
        _head("CKA report"),
        f"<h1>CKA report</h1><p>{n_runs} runs from <code>{html.escape(str(sweep_dir))}</code>; left out: "
        f"{html.escape(skipped)}"
        + (f"; {n_left} comparison{'' if n_left == 1 else 's'} at incomplete seed pairings (see Runs read)"
           if n_left else "")
        + ". Data: <a href='cka_results.csv'>cka_results.csv</a>, "
        "<a href='stats.csv'>stats.csv</a>, <a href='stats.md'>stats.md</a>, "
        "<a href='stats.tex'>stats.tex</a> (the tables in LaTeX, for a paper); every figure also as PDF and as "
        "the CSV of its numbers."
        + (" The study's conclusions under each measure, side by side: <a href='conclusions.html'>conclusions.html</a>."
           if with_conclusions else "") + "</p>",
        lead,
        *(["<p>Final values from different steps, pooled in the tables: regimes trained for different numbers of "
           "steps compare different training lengths, and an instance that lacks the later checkpoints (a study "
           "still growing) ends its comparisons at the last step both sides have:<br>"
           + "<br>".join(html.escape(line.removeprefix("- ")) for line in mixed) + "</p>"] if mixed else []),
        "<h2>Figures</h2><div class='grid'>",
        *(_figure(name) for name in images if name not in matrices),
        "</div><h2>Statistics</h2><details><summary>Method: how each number is computed</summary>"
        f"<pre>{html.escape(method)}</pre></details>",
    ]
    for name, table in tables.items():
        body = (_shown(table).to_html(index=False) if len(table)
                else f"<p>none: {html.escape(_need(name))}</p>")
        parts.append(f"<h3>{html.escape(name)}</h3>{body}")
    parts += [covariates, "<h2>Model matrices</h2>", f"<p>{html.escape(blanks)} One colour scale per measure "
              "across the regimes: one colour is one value side by side.</p><div class='grid'>",
              *(_figure(name) for name in matrices if name.startswith("models_")),
              "</div><h2>Instance matrices</h2><p>Every instance (a model at a seed) against every other, one per "
              f"row: 21 x 21 cells and more. {html.escape(blanks)}</p><details><summary>The "
              f"{sum(name.startswith('matrix_') for name in matrices)} instance matrices (click to open)</summary>",
              *(_figure(name) for name in matrices if name.startswith("matrix_")), "</details>",
              "<h2>Runs read</h2><h3>Settings</h3><p>Results of different settings are never pooled. A setting "
              f"with fewer than {min_runs} runs (<code>min_runs</code>; the narrowest sweep, pt3 at one layer and seed "
              "pairing, has 7) is a one-off check: it is listed here and in the statistics, without figures of its "
              "own.</p>",
              pd.DataFrame([{"setting": name, **row} for name, row in settings.items()]).to_html(index=False),
              "<h3>Left out</h3>" + (pd.DataFrame([{"model or instance": name, **what}
                                                   for name, what in excluded.items()]).to_html(index=False)
                                     if excluded else "<p>No model or instance.</p>")
              + "<p>Every comparison of a model or instance named here is left out of every table, figure and test: "
              "the report's <code>exclude=[...]</code>, the regimes' <code>exclude</code> entries, and runs computed "
              "with <code>allow_excluded=true</code> (<code>report allow_excluded=true</code> keeps the last two).</p>"
              + "".join(f"<p>Kept although excluded (allow_excluded=true): {html.escape(why)}: {n} runs.</p>"
                        for why, n in kept.items())
              + f"<p>{html.escape(_left_out_text(pairings_left_out))}</p>", "</body></html>"]
    return "\n".join(parts)


def _need(table: str) -> str:
    """What a table of the statistics needs, for a study without its comparisons."""
    return f"it needs {findings.NEEDS[table]}" if table in findings.NEEDS else "no such comparisons in this study"
