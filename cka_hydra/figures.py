"""The report's figures, drawn with matplotlib's Agg backend (no display needed)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import matplotlib.ticker as ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from cka_hydra.atomic import atomic_path  # noqa: E402
from cka_hydra.pairs import instance_name  # noqa: E402
from cka_hydra.stats import DIFFERENT_TASK, unit_means  # noqa: E402

DPI = 120


def _save(fig: plt.Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI)
    plt.close(fig)


def _seed_order(seed: str) -> tuple[int, str]:
    return (0, "") if seed == "orig" else (1, seed.zfill(4))


def instance_matrix(final: pd.DataFrame) -> pd.DataFrame:
    """Final CKA of one regime and layer as a symmetric instance x instance table: every model
    seen at every seed seen, models grouped and seeds within; NaN where no comparison was run."""
    models = sorted({*final["model_a"], *final["model_b"]}, key=lambda m: int(m.rsplit("-", 1)[1]))
    seeds = sorted({*final["seed_a"], *final["seed_b"]}, key=_seed_order)
    names = [instance_name(m, s) for m in models for s in seeds]
    matrix = pd.DataFrame(np.nan, index=names, columns=names)
    for row in final.itertuples():
        a, b = instance_name(row.model_a, row.seed_a), instance_name(row.model_b, row.seed_b)
        matrix.loc[a, b] = matrix.loc[b, a] = row.cka
    return matrix


def matrix_figure(matrix: pd.DataFrame, title: str, vmin: float, vmax: float, path: Path) -> None:
    n = len(matrix)
    size = max(5.0, 0.42 * n + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    cmap = plt.get_cmap("viridis").with_extremes(bad="white")  # comparisons not run stay blank
    # nearest: one flat cell per comparison, and no resampling of the image at save time
    image = ax.imshow(np.ma.masked_invalid(matrix.to_numpy()), cmap=cmap, vmin=vmin, vmax=vmax,
                      interpolation="nearest")
    ax.set_xticks(range(n), matrix.columns, rotation=90, fontsize=7)
    ax.set_yticks(range(n), matrix.index, fontsize=7)
    models = [name.split("_seed")[0] for name in matrix.index]
    for i in range(1, n):
        if models[i] != models[i - 1]:  # lines between models' seed groups
            ax.axhline(i - 0.5, color="0.3", linewidth=0.8)
            ax.axvline(i - 0.5, color="0.3", linewidth=0.8)
    if n <= 30:
        for (i, j), value in np.ndenumerate(matrix.to_numpy()):
            if not np.isnan(value):
                shade = (value - vmin) / (vmax - vmin) if vmax > vmin else 0.5
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6,
                        color="black" if shade > 0.6 else "white")
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03, label="CKA (final step)")
    fig.tight_layout()
    _save(fig, path)


def trends_figure(final: pd.DataFrame, title: str, path: Path) -> None:
    """Different-task CKA against the number of training tasks, one line per layer: mean over
    seed pairings, error bars their standard deviation (the seed spread)."""
    different = final[(final["kind"] == DIFFERENT_TASK) & (final["n_tasks_a"] == final["n_tasks_b"])]
    units = unit_means(different.rename(columns={"n_tasks_a": "n_tasks"}), ["layer", "n_tasks"])
    fig, ax = plt.subplots(figsize=(6, 4.2))
    regimes = different.groupby("n_tasks_a")["regime"].agg(lambda r: ", ".join(sorted(set(r))))
    for layer, group in units.groupby("layer"):
        spread = group.groupby("n_tasks")["cka"].agg(["mean", "std", "count"])
        ax.errorbar(spread.index, spread["mean"], yerr=spread["std"].fillna(0), marker="o", capsize=4,
                    label=f"layer {layer}")
    ax.set_xticks(regimes.index, [f"{n}\n({r})" for n, r in regimes.items()])
    ax.set_xlabel("training tasks per model (mean over seed pairings; bars: their std)")
    ax.set_ylabel("CKA of models with disjoint tasks")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def timelines_figure(results: pd.DataFrame, title: str, path: Path) -> None:
    """Different-task CKA against training step, a panel per regime and a line per layer: mean
    over comparisons, band one standard deviation."""
    regimes = sorted(results["regime"].unique())
    fig, axes = plt.subplots(1, len(regimes), figsize=(4.5 * len(regimes), 3.8), sharey=True, squeeze=False)
    for ax, regime in zip(axes[0], regimes):
        for layer, group in results[results["regime"] == regime].groupby("layer"):
            curve = group.groupby("step")["cka"].agg(["mean", "std"]).fillna(0)
            ax.plot(curve.index, curve["mean"], marker=".", label=f"layer {layer}")
            ax.fill_between(curve.index, curve["mean"] - curve["std"], curve["mean"] + curve["std"], alpha=0.2)
        ax.set_title(regime, fontsize=10)
        ax.set_xlabel("training step")
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v / 1000:g}k" if v else "0"))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("CKA, models with disjoint tasks\n(mean; band: 1 std over comparisons)")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)
