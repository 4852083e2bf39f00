"""The report's figures and a run's own timeline figure, drawn with matplotlib's `Figure` API
(no pyplot, no display, no global state). Each figure draws the rows it is given, all of them:
which comparisons count is the report's to decide, once for every figure and table
(stats.comparisons_that_count); where a figure compares groups it uses the pairings they share.
Each report figure is written three times over, by one name (files_of): a PNG for the page, a
vector PDF with its fonts embedded for a paper, and a CSV of the numbers it draws; and drawn only
when what it is drawn from has changed (reusable)."""

import contextvars
import functools
import hashlib
import inspect
import logging
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib
import matplotlib.ticker as ticker
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cka_hydra import registry
from cka_hydra.atomic import atomic_path, write_table
from cka_hydra.pairs import instance_name
from cka_hydra.stats import (
    DIFFERENT_TASK, SAME_TASK, not_above_chance, on_common_pairings, pairings_text, trend_comparisons, trend_units,
    unit_means,
)

DPI = 120
# fonts in a figure's PDF as TrueType (Type 42), embedded whole: journals refuse the default Type 3
PDF_PARAMS = {"pdf.fonttype": 42}


def files_of(name: str) -> list[str]:
    """A report figure's files, by its PNG's name: the PNG, its PDF and the CSV of its numbers
    (matrix_pt2_layer5.png: matrix_pt2_layer5.png, .pdf and .csv)."""
    stem = name.removesuffix(".png")
    return [f"{stem}.{suffix}" for suffix in ("png", "pdf", "csv")]


# the PNG text chunk that records what a report figure was drawn from (reusable)
KEY_CHUNK = "cka_hydra figure"
_drawing = contextvars.ContextVar("_drawing", default=None)  # the key of the figure being drawn


@functools.cache
def _code() -> bytes:
    """Every module of the package as installed: a figure drawn by other code is drawn again."""
    digest = hashlib.sha256(matplotlib.__version__.encode())
    for module in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(module.name.encode() + module.read_bytes())
    return digest.digest()


def _digest(value: object, digest: "hashlib._Hash") -> None:
    if isinstance(value, (pd.DataFrame, pd.Series)):
        frame = value.to_frame() if isinstance(value, pd.Series) else value
        frame = frame.drop(columns="run_dir", errors="ignore")  # where a result is, never drawn: a moved study reuses
        digest.update(repr((list(frame.columns), list(map(str, frame.dtypes)), frame.index.names, frame.shape)).encode())
        try:
            digest.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
        except TypeError:  # cells pandas cannot hash (lists): their text
            digest.update(frame.to_csv().encode())
    else:
        digest.update(repr(value).encode())


def reusable(draw: Callable[..., None]) -> Callable[..., None]:
    """A report figure drawn only when its files are missing or were drawn from other arguments
    (the rows, titles, scales: everything but the path) or by other code: a report run again on
    the same results keeps each figure's files as they are, and redraws only what changed. The
    key (a SHA-256 of the arguments and _code) is written into the PNG (KEY_CHUNK)."""
    signature = inspect.signature(draw)

    @functools.wraps(draw)
    def figure(*args: object, **kwargs: object) -> None:
        arguments = signature.bind(*args, **kwargs).arguments
        path = Path(arguments["path"])
        digest = hashlib.sha256(_code() + draw.__name__.encode())
        for name, value in arguments.items():
            if name != "path":
                digest.update(name.encode())
                _digest(value, digest)
        key = digest.hexdigest()
        if _drawn_from(path, key):
            return
        token = _drawing.set(key)
        try:
            draw(*args, **kwargs)
        finally:
            _drawing.reset(token)

    return figure


def _drawn_from(path: Path, key: str) -> bool:
    """Whether all of path's files are there and its PNG records key."""
    from PIL import Image

    if not all((path.parent / name).is_file() for name in files_of(path.name)):
        return False
    try:
        with Image.open(path) as image:
            return image.text.get(KEY_CHUNK) == key
    except (OSError, ValueError):
        return False


def similarity_label(final: pd.DataFrame) -> str:
    """The axis label of one setting's values (one measure, one number of components)."""
    measure = registry.of_result(final["measure"].iloc[0], final["measure_kind"].iloc[0])
    components = final["components"].iloc[0]
    return measure.label.format(k="k" if pd.isna(components) else int(components))


def _new_figure(**kwargs: object) -> Figure:
    """A figure drawn by Agg: its canvas measures text, so tight_layout keeps the labels in."""
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def _steps_axis(ax: Axes) -> None:
    """An x axis of training steps, in thousands: 0, 50k, 100k."""
    ax.set_xlabel("training step")
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v / 1000:g}k" if v else "0"))


def _save_png(fig: Figure, path: Path) -> None:
    """The figure as a PNG at path, atomically; a report figure's with its key (reusable)."""
    key = _drawing.get()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, format="png", metadata=None if key is None else {KEY_CHUNK: key})


@contextmanager
def _pdf_settings() -> Iterator[None]:
    """matplotlib's PDF settings (PDF_PARAMS) while a PDF is written, and fontTools, which subsets
    the fonts it embeds, kept to warnings meanwhile: at INFO it logs some 50 lines per PDF into the
    report's log."""
    fonts = logging.getLogger("fontTools")
    level = fonts.level
    fonts.setLevel(logging.WARNING)
    try:
        with matplotlib.rc_context(PDF_PARAMS):
            yield
    finally:
        fonts.setLevel(level)


def _save(fig: Figure, path: Path, data: pd.DataFrame) -> None:
    """A report figure's files (files_of), each atomically: the PNG at path; beside it, of the same
    name, the PDF (vector, TrueType fonts embedded, no creation date: the same figure gives the
    same bytes) and the CSV of data, the numbers drawn (its index written only when named)."""
    _save_png(fig, path)
    with atomic_path(path.with_suffix(".pdf")) as tmp, _pdf_settings():
        fig.savefig(tmp, format="pdf", metadata={"CreationDate": None})
    write_table(path.with_suffix(".csv"), data.reset_index() if data.index.name else data)


def _seed_order(seed: str) -> tuple[int, str]:
    return (0, "") if seed == "orig" else (1, seed.zfill(4))


def _models(final: pd.DataFrame) -> list[str]:
    return sorted({*final["model_a"], *final["model_b"]}, key=lambda m: int(m.rsplit("-", 1)[1]))


def instance_matrix(final: pd.DataFrame, column: str = "similarity") -> pd.DataFrame:
    """A column of one regime and layer's final values (by default the similarity) as a symmetric
    instance x instance table: every model seen at every seed seen, models grouped and seeds
    within; NaN where no comparison was run."""
    seeds = sorted({*final["seed_a"], *final["seed_b"]}, key=_seed_order)
    names = [instance_name(m, s) for m in _models(final) for s in seeds]
    matrix = pd.DataFrame(np.nan, index=pd.Index(names, name="instance"), columns=names)
    for a, b, value in zip(map(instance_name, final["model_a"], final["seed_a"]),
                           map(instance_name, final["model_b"], final["seed_b"]), final[column].astype(float)):
        matrix.loc[a, b] = matrix.loc[b, a] = value
    return matrix


def model_matrix(final: pd.DataFrame, column: str = "similarity") -> pd.DataFrame:
    """A column of one regime and layer's final values as a symmetric model x model table, each
    cell the mean over the seed pairings compared (a model's own cell: its cross-seed
    comparisons); rows and columns named by the models' training tasks. NaN where no comparison
    was run."""
    tasks = {**dict(zip(final["model_a"], final["tasks_a"])), **dict(zip(final["model_b"], final["tasks_b"]))}
    names = {model: f"{model}: {tasks[model].replace('+', ', ')}" for model in _models(final)}
    matrix = pd.DataFrame(np.nan, index=pd.Index(names.values(), name="model"), columns=list(names.values()))
    for (a, b), group in final.groupby(["model_a", "model_b"]):
        matrix.loc[names[a], names[b]] = matrix.loc[names[b], names[a]] = group[column].astype(float).mean()
    return matrix


@reusable
def matrix_figure(matrix: pd.DataFrame, title: str, label: str, vmin: float, vmax: float, path: Path,
                  marked: pd.DataFrame | None = None, intervals: pd.DataFrame | None = None,
                  below: pd.DataFrame | None = None) -> None:
    """A heat map of a matrix; the cells `marked` holds true for get a '*' (comparisons at
    another final step than the rest), those `below` holds true for a '°' (not above chance),
    and each cell's `intervals` value, where given, is shown beneath it as +- (a bootstrap
    interval's half-width). Its CSV: the matrix as drawn, its rows' names in the first column."""
    n = len(matrix)
    stars = np.zeros(matrix.shape, dtype=bool) if marked is None else marked.to_numpy(dtype=float) > 0
    rings = np.zeros(matrix.shape, dtype=bool) if below is None else below.to_numpy(dtype=float) > 0
    halves = np.full(matrix.shape, np.nan) if intervals is None else intervals.to_numpy(dtype=float)
    size = max(5.0, 0.55 * n + 2.5)  # cells large enough for their numbers at 8-9 pt
    labels = 0.06 * max(len(str(name)) for name in matrix.index)  # inches for the tick labels
    fig = _new_figure(figsize=(size + 1.2 + labels, size + labels))
    ax = fig.subplots()
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="white")  # comparisons not run stay blank
    # nearest: one flat cell per comparison, and no resampling of the image at save time
    image = ax.imshow(np.ma.masked_invalid(matrix.to_numpy()), cmap=cmap, vmin=vmin, vmax=vmax,
                      interpolation="nearest")
    ax.set_xticks(range(n), matrix.columns, rotation=90, fontsize=7)
    ax.set_yticks(range(n), matrix.index, fontsize=7)
    models = [name.split("_seed")[0].split(":")[0] for name in matrix.index]
    for i in range(1, n):
        if models[i] != models[i - 1]:  # lines between models' seed groups
            ax.axhline(i - 0.5, color="0.3", linewidth=0.8)
            ax.axvline(i - 0.5, color="0.3", linewidth=0.8)
    if n <= 30:
        for (i, j), value in np.ndenumerate(matrix.to_numpy()):
            if not np.isnan(value):
                shade = (value - vmin) / (vmax - vmin) if vmax > vmin else 0.5
                text = f"{value:.2f}" + ("*" if stars[i, j] else "") + ("°" if rings[i, j] else "")
                if not np.isnan(halves[i, j]):
                    text += f"\n±{halves[i, j]:.2f}"
                ax.text(j, i, text, ha="center", va="center",
                        fontsize=(9 if n <= 10 else 8) - (0 if np.isnan(halves[i, j]) else 1),
                        color="black" if shade > 0.6 else "white")
    else:
        rows, columns = np.nonzero(stars)
        ax.scatter(columns, rows, marker="*", s=12, color="red")
        rows, columns = np.nonzero(rings)
        ax.scatter(columns, rows, marker="o", s=14, facecolors="none", edgecolors="white")
    ax.set_title(title, fontsize=10, wrap=True)
    # one line: tight_layout misplaces the axes beside a colour bar whose label has two
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03,
                 label=f"{label} (final step{'; ±: bootstrap interval' if intervals is not None else ''})")
    fig.tight_layout()
    _save(fig, path, matrix)


@reusable
def trends_figure(final: pd.DataFrame, title: str, path: Path) -> None:
    """Different-task similarity against the number of training tasks, one line per layer (one
    setting's trends_panel); its CSV: the points drawn (trend_points)."""
    fig = _new_figure(figsize=(6, 4.6))
    points = trends_panel(fig.subplots(), final, title)
    fig.tight_layout()
    _save(fig, path, points)


@reusable
def conclusions_trends_figure(final: pd.DataFrame, title: str, path: Path) -> None:
    """The trends of several settings side by side, a trends_panel per setting: one x axis of
    training tasks, each panel its own y scale (the values of different measures compare in
    direction, not in size); its CSV: every panel's points (trend_points), by setting."""
    settings = sorted(final["setting"].unique())
    columns = min(3, len(settings))
    rows = -(-len(settings) // columns)
    fig = _new_figure(figsize=(5.5 * columns, 5 * rows))
    axes = fig.subplots(rows, columns, sharex=True, squeeze=False).flatten()
    points = pd.concat([trends_panel(ax, final[final["setting"] == setting], f"[{setting}]")
                        for ax, setting in zip(axes, settings)], ignore_index=True)
    for ax in axes[len(settings):]:  # a last row's empty places
        ax.set_axis_off()
    _tasks_axis(axes[0], trend_comparisons(final))  # the shared axis: every setting's numbers of tasks
    fig.suptitle(title, fontsize=10, wrap=True)
    fig.tight_layout()
    _save(fig, path, points)


def trend_points(different: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The points of one setting's trends (of its stats.trend_comparisons), a row per layer and
    number of training tasks: the mean over the seed pairings every point has (stats.trend_units),
    std (the error bars: the seed spread), n_units (those pairings), and not_above_chance, whether
    some of the point's values are not above chance (Benjamini-Hochberg over the figure's values);
    with those pairings and the ones left out, held by only some points."""
    units, common, left_out = trend_units(different)  # like for like: the same seeds at every point
    below = different.assign(below=not_above_chance(different)).groupby(["layer", "n_tasks_a"])["below"].any()
    points = units.groupby(["layer", "n_tasks"], as_index=False)["similarity"].agg(
        mean="mean", std="std", n_units="count")
    points["not_above_chance"] = [bool(below.get(key, False)) for key in zip(points["layer"], points["n_tasks"])]
    return points, common, left_out


def trends_panel(ax: Axes, final: pd.DataFrame, title: str) -> pd.DataFrame:
    """One setting's different-task similarity against the number of training tasks on ax, one line
    per layer (trend_points): mean over the seed pairings every point has, error bars their
    standard deviation (the seed spread), red rings where some value is not above chance; returns
    the points drawn, with the setting and measure, the regimes at each number of tasks and the
    seed pairings averaged."""
    different = trend_comparisons(final)
    points, common, left_out = trend_points(different)
    layers = sorted(points["layer"].unique())
    ringed = "some value not above chance (5%, Benjamini-Hochberg)"  # the legend's entry, once
    for i, (layer, spread) in enumerate(points.groupby("layer")):
        dodge = (i - (len(layers) - 1) / 2) * 0.04  # so that layers at one x do not hide each other
        ax.errorbar(spread["n_tasks"] + dodge, spread["mean"], yerr=spread["std"].fillna(0), marker="o", capsize=4,
                    label=f"layer {layer}")
        low = spread[spread["not_above_chance"]]
        if len(low):
            ax.scatter(low["n_tasks"] + dodge, low["mean"], s=160, facecolors="none", edgecolors="red",
                       label=ringed, zorder=3)
            ringed = None
    _tasks_axis(ax, different)
    ax.set_xlabel(textwrap.fill(f"training tasks per model; mean over the {len(common)} seed pairings every point has "
                                f"({', '.join(common)}); bars: their std", 80)
                  + ("\n" + textwrap.fill(f"left out, held by only some points: {', '.join(left_out)}", 80)
                     if left_out else ""), fontsize=8)
    ax.set_ylabel(f"{similarity_label(final)}\nmodels with disjoint tasks", fontsize=9)
    ax.set_title(title, fontsize=10, wrap=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    points.insert(0, "setting", final["setting"].iloc[0])
    points.insert(1, "measure", final["measure"].iloc[0])
    return points.assign(regimes=points["n_tasks"].map(_regimes_by_tasks(different)),
                         seed_pairings=pairings_text(common))


def _tasks_axis(ax: Axes, different: pd.DataFrame) -> None:
    """An x axis of training tasks: a tick at each number of them, named with its regimes."""
    regimes = _regimes_by_tasks(different)
    ax.set_xticks(regimes.index, [f"{n}\n({r})" for n, r in regimes.items()])


def _regimes_by_tasks(different: pd.DataFrame) -> pd.Series:
    """The regimes at each number of training tasks (n_tasks_a), named in one string ("pt2, pt3")."""
    return different.groupby("n_tasks_a")["regime"].agg(lambda r: ", ".join(sorted(set(r))))


def timeline_curves(results: pd.DataFrame) -> pd.DataFrame:
    """The timelines figure's curves: per regime and layer, the mean and standard deviation of the
    similarity at each step over the comparisons that hold it (`n_at` of the curve's `n`); `full`
    marks the steps every comparison holds, the curve proper. Where some comparisons hold later
    steps (a study still growing), `tail` follows one fixed set too: the `n_tail` comparisons that
    hold the newest step, their mean from the last step all hold on."""
    rows = []
    for (regime, layer), group in results.groupby(["regime", "layer"]):
        n_runs = group["run_dir"].nunique()
        curve = group.groupby("step").agg(mean=("similarity", "mean"), std=("similarity", "std"),
                                          n_at=("run_dir", "nunique")).fillna({"std": 0})
        curve["full"] = curve["n_at"] == n_runs
        curve["tail"], curve["n_tail"] = float("nan"), 0
        if not curve["full"].all():
            newest = group.loc[group["step"] == curve.index.max(), "run_dir"].unique()
            start = curve.index[curve["full"]].max() if curve["full"].any() else curve.index.min()
            later = group[group["run_dir"].isin(newest) & (group["step"] >= start)]
            curve["tail"] = later.groupby("step")["similarity"].mean()
            curve["n_tail"] = len(newest)
        rows.append(curve.reset_index().assign(regime=regime, layer=layer, n=n_runs))
    return pd.concat(rows, ignore_index=True)


@reusable
def timelines_figure(results: pd.DataFrame, title: str, path: Path) -> None:
    """Different-task similarity against training step, a panel per regime and a line per layer
    (timeline_curves): mean over comparisons, band one standard deviation, over the steps every
    comparison holds; dashed with open markers, the comparisons that hold later steps, from their
    own mean at the last step all hold. Its CSV: the curves (timeline_curves)."""
    curves = timeline_curves(results)
    regimes = sorted(curves["regime"].unique())
    fig = _new_figure(figsize=(max(6.0, 4.5 * len(regimes)), 4.4))
    axes = fig.subplots(1, len(regimes), sharey=True, squeeze=False)
    for ax, regime in zip(axes[0], regimes):
        of_regime = curves[curves["regime"] == regime]
        tails = []
        for layer, curve in of_regime.groupby("layer"):
            full, tail = curve[curve["full"]], curve[curve["tail"].notna()]
            (line,) = ax.plot(full["step"], full["mean"], marker=".", label=f"layer {layer} (n={curve['n'].iloc[0]})")
            ax.fill_between(full["step"], full["mean"] - full["std"], full["mean"] + full["std"], alpha=0.2,
                            color=line.get_color())
            if len(tail):
                ax.plot(tail["step"], tail["tail"], linestyle="--", marker="o", mfc="none", color=line.get_color())
                tails.append(f"{curve['n_tail'].iloc[0]} of {curve['n'].iloc[0]}")
        note = (f"\ndashed, open: the comparisons that hold later steps ({', '.join(dict.fromkeys(tails))}),\n"
                "their own mean from the last step all hold" if tails else "")
        ax.set_title(f"{regime}{note}", fontsize=9)
        _steps_axis(ax)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"{similarity_label(results)}\nmodels with disjoint tasks\n"
                          "(mean; band: 1 std over comparisons)", fontsize=9)
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(title, fontsize=10, wrap=True)
    fig.tight_layout()
    _save(fig, path, curves)


def run_timeline_figure(timeline: pd.DataFrame, column: str, label: str, title: str, path: Path) -> None:
    """One run's timeline (the research group's `cka_timeline.png`): its value at each step, the
    mean over steps dashed, the bootstrap interval as a band where it was computed. A PNG alone:
    its numbers are the run's timeline CSV, beside it."""
    fig = _new_figure(figsize=(6.4, 4.2))
    ax = fig.subplots()
    ax.plot(timeline["step"], timeline[column], marker="o", label=label)
    if "cka_low" in timeline:
        ax.fill_between(timeline["step"], timeline["cka_low"], timeline["cka_high"], alpha=0.2,
                        label="bootstrap interval")
    mean = float(timeline[column].mean())
    ax.axhline(mean, linestyle="--", color="0.4", label=f"mean over steps: {mean:.4f}")
    _steps_axis(ax)
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10, wrap=True)
    fig.tight_layout()
    _save_png(fig, path)


# the columns of stats.compare_kinds that kinds_figure draws: points, bars and tick labels
KINDS_DRAWN = ("setting", "measure", "regime", "layer", "layer_b", "same_task", "same_task_ci_low", "same_task_ci_high",
               "different_task", "different_task_ci_low", "different_task_ci_high", "effect_size_dz", "p", "n_units",
               "seed_pairings")


@reusable
def kinds_figure(tests: pd.DataFrame, label: str, title: str, path: Path) -> None:
    """Same-task cross-seed against different-task similarity (the "intra-task vs inter-task"
    comparison), a panel per regime and a pair of points per layer: each kind's mean over the
    seed pairings both kinds have, bars its 95% t interval, annotated with the paired test over
    those pairings (one setting's same-layer rows of stats.compare_kinds): points and test are
    over the same units. Its CSV: those rows' columns drawn (KINDS_DRAWN), by regime and layer."""
    regimes = sorted(tests["regime"].unique())
    fig = _new_figure(figsize=(max(6.0, 4.5 * len(regimes)), 4.6))
    axes = fig.subplots(1, len(regimes), sharey=True, squeeze=False)
    for ax, regime in zip(axes[0], regimes):
        rows = tests[tests["regime"] == regime].sort_values("layer")
        for offset, kind, column, colour in ((-0.12, SAME_TASK, "same_task", "tab:blue"),
                                             (0.12, DIFFERENT_TASK, "different_task", "tab:orange")):
            means = rows[column].to_numpy()
            errors = np.nan_to_num(np.array([means - rows[f"{column}_ci_low"], rows[f"{column}_ci_high"] - means]))
            ax.errorbar(np.arange(len(rows)) + offset, means, yerr=errors, fmt="o", capsize=4, color=colour,
                        label=kind)
        ticks = [f"layer {row.layer}\nd_z={row.effect_size_dz:.2g}\np={row.p:.2g}\nn={row.n_units}"
                 for row in rows.itertuples()]
        ax.set_xticks(range(len(rows)), ticks, fontsize=8)
        ax.set_xlim(-0.5, len(rows) - 0.5)
        ax.set_title(regime, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"{label}\n(mean over the seed pairings both kinds have; bars: 95% CI)", fontsize=9)
    axes[0][-1].legend(fontsize=8)
    pairings = sorted(set(tests["seed_pairings"]))
    fig.suptitle(f"{title}\n" + textwrap.fill("seed pairings: " + ("; ".join(pairings) if len(pairings) < 4
                                                                  else "per layer, see stats.md"), 100),
                 fontsize=10, wrap=True)
    fig.tight_layout()
    _save(fig, path, tests.sort_values(["regime", "layer"])[list(KINDS_DRAWN)])


@reusable
def layer_map_figure(final: pd.DataFrame, label: str, title: str, path: Path) -> None:
    """Different-task similarity of the first model's layer (rows) against the second model's
    (columns), a panel per regime: each cell the mean over seed pairings of the mean over model
    pairs, over the pairings every cell of its panel has, with its number of comparisons (one
    setting's stats.final_values). Its CSV: the cells, a row each (similarity, n_comparisons)."""
    different = final[final["kind"] == DIFFERENT_TASK]
    keys = ["regime", "layer", "layer_b"]
    units = pd.concat([on_common_pairings(unit_means(group, keys), ["layer", "layer_b"])[0]
                       for _, group in different.groupby("regime")])
    cells = units.groupby(keys)["similarity"].mean()
    counts = different.merge(units[[*keys, "seed_pairing"]], on=[*keys, "seed_pairing"]).groupby(keys).size()
    regimes = sorted(cells.index.unique("regime"))
    vmin, vmax = cells.min(), cells.max()
    fig = _new_figure(figsize=(4.2 * len(regimes) + 1, 4), layout="constrained")
    axes = fig.subplots(1, len(regimes), squeeze=False)
    for ax, regime in zip(axes[0], regimes):
        grid = cells[regime].unstack("layer_b")
        n = counts[regime].unstack("layer_b").reindex_like(grid)
        image = ax.imshow(np.ma.masked_invalid(grid.to_numpy()), cmap="viridis", vmin=vmin, vmax=vmax,
                          interpolation="nearest")
        for (i, j), value in np.ndenumerate(grid.to_numpy()):
            if not np.isnan(value):
                shade = (value - vmin) / (vmax - vmin) if vmax > vmin else 0.5
                ax.text(j, i, f"{value:.2f}\nn={int(n.iat[i, j])}", ha="center", va="center", fontsize=7,
                        color="black" if shade > 0.6 else "white")
        ax.set_xticks(range(len(grid.columns)), grid.columns)
        ax.set_yticks(range(len(grid.index)), grid.index)
        ax.set_xlabel("second model's layer (layer_b)")
        ax.set_ylabel("first model's layer (layer)")
        ax.set_title(regime, fontsize=10)
    fig.colorbar(image, ax=list(axes[0]), fraction=0.046, pad=0.03,
                 label=f"{label}\nmodels with disjoint tasks, final step")
    fig.suptitle(title, fontsize=10, wrap=True)
    _save(fig, path, pd.DataFrame({"similarity": cells, "n_comparisons": counts}).dropna(subset="similarity")
          .astype({"n_comparisons": int}).reset_index())


@reusable
def covariate_figure(pairs: pd.DataFrame, tests: pd.DataFrame, label: str, covariate: str, title: str,
                     path: Path) -> None:
    """One setting's similarity (y) against one covariate (x), a point per pair, a panel per regime
    (rows) and layer (columns) that `tests` has (covariates.covariate_tests' rows, of the pairs of
    covariates.pair_table), each titled with its Spearman rho and Mantel p, or its note."""
    regimes, layers = sorted(tests["regime"].unique()), sorted(tests["layer"].unique())
    fig = _new_figure(figsize=(max(6.0, 4.2 * len(layers)), 3.6 * len(regimes) + 0.8))
    axes = fig.subplots(len(regimes), len(layers), squeeze=False)
    for ax in axes.flatten():
        ax.set_axis_off()  # a regime without that layer stays blank
    for test in tests.itertuples():
        ax = axes[regimes.index(test.regime)][layers.index(test.layer)]
        ax.set_axis_on()
        points = pairs[(pairs["regime"] == test.regime) & (pairs["layer"] == test.layer)]
        ax.scatter(points["value"], points["similarity"], s=18, alpha=0.8)
        said = test.note or f"rho={test.rho:.2f}, Mantel p={test.mantel_p:.3g}"
        ax.set_title(f"{test.regime}, layer {test.layer}: {said} (n={test.n_pairs} pairs)", fontsize=9)
        ax.set_xlabel(f"{covariate} ({test.rule})", fontsize=8)
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10, wrap=True)
    fig.tight_layout()
    drawn = pairs.merge(tests[["regime", "layer"]], on=["regime", "layer"])
    _save(fig, path, drawn.assign(covariate=covariate))
