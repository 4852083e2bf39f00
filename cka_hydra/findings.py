"""What the report leads with: each claim of the study as a few rows (its number, its interval over
models and seeds, and the seed-pairing one), what a missing analysis needs, and the sentences
about the design, all generated from the tables of the design actually run. Pure functions of
the report's tables (stats.py, covariates.py)."""

import itertools
from typing import NamedTuple

import pandas as pd

from cka_hydra import stats

class Claim(NamedTuple):
    """One of the study's claims: its name in stats (the conclusions' claim), its title on the
    page, the report's table that holds it, its estimate's column, and what it compares."""
    claim: str
    title: str
    table: str
    column: str
    what: str


# the claims the page leads with, in the conclusions' order
CLAIMS = (
    Claim(stats.TREND, "Trend over the number of training tasks", "trends over training tasks", "slope",
          "different-task similarity per training task"),
    Claim(stats.KINDS, "Same-task cross-seed against different-task", "same-task vs different-task", "difference",
          "same-task minus different-task"),
    Claim(stats.REGIMES, "Regime against regime", "regime vs regime", "difference",
          "first regime minus second, different-task"),
)

# what each claim needs, said where a study lacks it
NEEDS = {
    "trends over training tasks": "different-task comparisons at two or more numbers of training tasks "
                                  "(e.g. -m sweep regime=pt1,pt2,pt3)",
    "same-task vs different-task": "each model compared with itself at another seed: add "
                                   "hydra.sweeper.self_pairs=true to the sweep",
    "regime vs regime": "different-task comparisons of two or more regimes (e.g. -m sweep regime=pt2,pt3)",
    "n_shared_tasks": "model pairs that share some training tasks beside pairs that share none: a sweep "
                      "with allow_overlap=true",
}


def _number(value: float, digits: int = 3) -> str:
    return "-" if pd.isna(value) else f"{value:.{digits}f}"


def _p(value: float) -> str:
    return "-" if pd.isna(value) else "< 0.001" if value < 0.001 else f"{value:.3f}"


def _interval(low: float, high: float) -> str:
    return "-" if pd.isna(low) or pd.isna(high) else f"[{_number(low)}, {_number(high)}]"


def _what(table: str, row: pd.Series) -> str:
    layer = f"layer {row['layer']}" + (f" vs {row['layer_b']}" if row["layer_b"] != row["layer"] else "")
    if table == "trends over training tasks":
        return f"{layer}: {row['n_tasks']} tasks ({row['regimes']})"
    if table == "regime vs regime":
        return f"{layer}: {row['regime_a']} vs {row['regime_b']}"
    return f"{layer}: {row['regime']}"


def claim_rows(tables: dict[str, pd.DataFrame], setting: str) -> dict[str, pd.DataFrame]:
    """Per claim (CLAIMS' title) that the setting's tables have, a row per comparison: the estimate,
    its 95% interval and p over models and seeds (recommended), and over seed pairings."""
    out = {}
    for _, title, name, column, _ in CLAIMS:
        table = tables.get(name, pd.DataFrame())
        rows = table[table["setting"] == setting] if len(table) else table
        if rows.empty:
            continue
        low, high = ("ci_low", "ci_high") if name == "trends over training tasks" else (
            "difference_ci_low", "difference_ci_high")
        out[title] = pd.DataFrame({
            "compared": [_what(name, row) for _, row in rows.iterrows()],
            column: [_number(v) for v in rows[column]],
            "95% CI over models and seeds": [_interval(a, b) for a, b in zip(rows["ms_ci_low"], rows["ms_ci_high"])],
            "p (models and seeds)": [_p(v) for v in rows["ms_p"]],
            "models": [int(v) for v in rows["n_models"]],
            "95% CI over seed pairings": [_interval(a, b) for a, b in zip(rows[low], rows[high])],
            "p (seed pairings)": [_p(v) for v in rows["p"]],
        })
    return out


def covariate_rows(tests: pd.DataFrame, setting: str) -> pd.DataFrame:
    """The setting's similarity-against-covariate rows (covariates.covariate_tests) for the page."""
    rows = tests[tests["setting"] == setting] if len(tests) else tests
    return pd.DataFrame({"covariate": rows.get("covariate", []),
                         "compared": [f"layer {r['layer']}: {r['regime']}" for _, r in rows.iterrows()],
                         "Spearman rho": [_number(v, 2) for v in rows.get("rho", [])],
                         "95% CI over models": [_interval(a, b) for a, b in zip(rows.get("ci_low", []),
                                                                                 rows.get("ci_high", []))],
                         "Mantel p": [_p(v) for v in rows.get("mantel_p", [])],
                         "pairs": rows.get("n_pairs", []), "models": rows.get("n_models", [])})


def missing(tables: dict[str, pd.DataFrame], covariate_tests: pd.DataFrame) -> list[str]:
    """A sentence per analysis the report would make but this study cannot, and what it needs."""
    lines = [f"{title}: not in this study; it needs {NEEDS[name]}."
             for _, title, name, _, _ in CLAIMS if tables.get(name, pd.DataFrame()).empty]
    if covariate_tests.empty or "n_shared_tasks" not in set(covariate_tests["covariate"]):
        lines.append(f"Similarity against task overlap (n_shared_tasks): not in this study; it needs "
                     f"{NEEDS['n_shared_tasks']}.")
    return lines


def pairings_sentence(final: pd.DataFrame) -> str:
    """What the seed pairings of the comparisons that count allow a seed-pairing test, said from
    the pairings actually run."""
    pairings = sorted(final["seed_pairing"].unique())
    n = len(pairings)
    if n == 0:
        return "No comparison counts in this study's tables (only comparisons of an instance with itself)."
    if n < 2:
        return (f"The study has a single seed pairing ({', '.join(pairings)}): the seed-pairing tables have no "
                "interval or test; the intervals over models and seeds stand alone.")
    sides = {p: tuple(p.split("_")) for p in pairings}
    sharing = [(a, b) for a, b in itertools.combinations(pairings, 2)
               if sides[a][0] == sides[b][0] or sides[a][1] == sides[b][1]]
    shared = (f"; pairings that share a seed on one side ({', '.join(f'{a} and {b}' for a, b in sharing[:3])}"
              f"{', ...' if len(sharing) > 3 else ''}) are not independent, so their p-values are approximate"
              if sharing else "")
    return (f"With this study's {n} seed pairings ({', '.join(pairings)}) a seed-pairing test has at most {n - 1} "
            f"degree{'' if n == 2 else 's'} of freedom{shared}. It holds the models fixed: its interval says "
            "nothing of other models trained the same way. The interval over models and seeds does (recommended).")
