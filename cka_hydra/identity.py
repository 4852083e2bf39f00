"""What decides a result, and the names that follow from it.

A result is decided by which comparison it is (regime, pair, seed pair, layers) and by its
settings (`settings`): every setting of the schema but those that only say how or whether a job
runs, and those that the others make irrelevant (`unused()` beside each section of the schema).
From these follow the run folder's path (`run_subdir`), its label of the settings that differ
from the defaults, and the results dir's default name. Knows the schema, not Hydra or files.
"""

import functools
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from cka_hydra.pairs import Comparison, instance_name, model_name
from cka_hydra.schema import RunConfig


# Keys that say which comparison a job is: they make the run folder's path.
COMPARISON_KEYS = ("regime", "pair", "seed_pair", "layer", "layer_b")


# Keys that decide how or whether a job runs, never what it computes.
HOW_TO_RUN_KEYS = ("device", "overwrite", "allow_overlap", "allow_excluded", "save_timeline_plot", "cache_mb",
                   "until_step")


def settings(run: RunConfig) -> dict[str, Any]:
    """Every setting that decides a comparison's result, besides which comparison it is, by
    dotted key as plain JSON values. Settings that the others make irrelevant are left out
    (`cka.sigma_frac` unless the kernel is rbf), so that runs bound to agree compare equal.

    Derived from the schema: a setting added to it later takes part without changes here."""
    unused = set(COMPARISON_KEYS) | run.unused()
    return _flatten({f.name: getattr(run, f.name) for f in fields(run) if f.name not in unused})


@functools.cache
def default_settings() -> dict[str, Any]:
    """The default of every setting that `settings` may hold, irrelevant ones included: the
    study's defaults, against which run folder names say what differs. measure.pca_filter's
    default is whatever city_filter is (Follows)."""
    defaults = _flatten({
        f.name: f.default_factory() if callable(f.default_factory) else f.default
        for f in fields(RunConfig) if f.name not in COMPARISON_KEYS
    }, keep_unused=True)
    return defaults | {"measure.pca_filter": Follows("city_filter")}


def _flatten(values: dict[str, Any], prefix: str = "", keep_unused: bool = False) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in values.items():
        if name in HOW_TO_RUN_KEYS:
            continue
        if is_dataclass(value):
            unused = value.unused() if hasattr(value, "unused") and not keep_unused else set()
            flat |= _flatten({f.name: getattr(value, f.name) for f in fields(value) if f.name not in unused},
                             f"{prefix}{name}.", keep_unused)
        else:
            flat[prefix + name] = value.value if isinstance(value, Enum) else value
    return flat


DEMO = "demo"  # data_root.txt of a results dir computed from the built-in demo store


def results_dir_name(data_root: str | None) -> str:
    """The default results dir: the demo's results never share a folder with real ones."""
    return "outputs/cka" if data_root is not None else "outputs/cka_demo"


# Short names of settings that differ from the default. A label may read other settings (the
# rbf kernel names its bandwidth) and may be "" when another label already says it.
def _short(value: Any) -> str:
    return hashlib.sha256(json.dumps(value).encode()).hexdigest()[:8]


def _steps(steps: Any) -> str:
    if isinstance(steps, str):
        return steps
    return "steps" + ("+".join(map(str, steps)) if len(steps) <= 3 else "-" + _short(steps))


_LABELS: dict[str, Callable[[Any, Mapping[str, Any]], str]] = {
    "checkpoints": lambda v, s: _steps(v),
    "city_filter": lambda v, s: f"filter-{_short(v)}" if v else "nofilter",
    "cka.kernel": lambda v, s: f"{v}{s['cka.sigma_frac']!r}" if v == "rbf" else v,
    "cka.sigma_frac": lambda v, s: "",  # in the kernel's label
    "cka.debiased": lambda v, s: "debiased" if v else "biased",
    "cka.precision": lambda v, s: {"float32": "f32", "float64": "f64"}.get(v, v),
    "cka.bootstrap": lambda v, s: f"boot{v}",
    "cka.confidence": lambda v, s: f"ci{v!r}",
    "cka.seed": lambda v, s: f"seed{v}",
    "measure.name": lambda v, s: v,
    # svcca with variance=null keeps measure.components components: its variance label says so
    "measure.components": lambda v, s: "" if "measure.variance" in s and s["measure.variance"] is None else f"k{v}",
    "measure.pca_filter": lambda v, s: f"pcafilter-{_short(v)}" if v else "pcanofilter",
    "measure.alpha": lambda v, s: f"alpha{v!r}",
    "measure.center": lambda v, s: "centred" if v else "uncentred",
    "measure.variance": lambda v, s: f"var{v!r}" if v is not None else f"k{s['measure.components']}",
    "measure.k": lambda v, s: f"knn{v}",
    "measure.metric": lambda v, s: f"nn-{v}",
    "measure.rdm": lambda v, s: f"rdm-{v}",
    "null.permutations": lambda v, s: f"null{v}",
    "null.seed": lambda v, s: f"nullseed{v}",
    "measure._target_": lambda v, s: "",  # a user measure: its name says it
    "measure.kind": lambda v, s: "",
}


# Said by data_root.txt and summary.json instead: a results dir holds one data root.
_UNNAMED = {"data.root"}


_PLAIN = re.compile(r"[\w.+]{1,24}")


def _label(key: str, value: Any, settings: Mapping[str, Any]) -> str:
    if key in _LABELS:
        return _LABELS[key](value, settings)
    # a setting without a label of its own: readable when short and plain, else hashed
    name = key.rsplit(".", 1)[-1]
    return f"{name}{value}" if _PLAIN.fullmatch(str(value)) else f"{name}-{_short(value)}"


@dataclass(frozen=True)
class Follows:
    """A default that is another setting's value (measure.pca_filter's is city_filter's)."""

    key: str


def changed(settings: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that differ from the defaults (a setting without a default differs)."""
    def default(key: str) -> Any:
        value = defaults[key]
        return settings.get(value.key) if isinstance(value, Follows) else value

    return {k: v for k, v in settings.items() if k not in defaults or default(k) != v}


def settings_label(settings: Mapping[str, Any], defaults: Mapping[str, Any]) -> str:
    """`rbf0.4-all`, `debiased-f32`, `filter-1a2b3c4d`: one short part per setting that differs
    from the defaults, in schema order; "" for the defaults."""
    parts = [_label(k, v, settings) for k, v in changed(settings, defaults).items() if k not in _UNNAMED]
    return "-".join(part for part in parts if part)


def describe(settings: Mapping[str, Any], defaults: Mapping[str, Any]) -> str:
    """The settings that differ from the defaults, as Hydra overrides: `cka.kernel=rbf
    checkpoints=all city_filter="region:^Europe"` (quote the whole for a shell)."""
    return " ".join(f"{_OVERRIDE_KEYS.get(k, k)}={_override_value(v)}"
                    for k, v in changed(settings, defaults).items() if k not in _UNNAMED | _IN_MEASURE_FILE)


_OVERRIDE_KEYS = {"measure.name": "measure"}  # a group option, chosen as the group


_IN_MEASURE_FILE = {"measure._target_", "measure.kind"}  # a user measure's, set by choosing it


def _override_value(value: Any) -> str:
    text = override_text(value)
    return text if not isinstance(value, str) or _PLAIN.fullmatch(value) else json.dumps(value)


def run_subdir(run: RunConfig) -> str:
    """A run's folder below its results dir (subdir), from its typed config."""
    return subdir(run.comparison, settings(run), default_settings())


def subdir(comparison: Comparison, settings: Mapping[str, Any], defaults: Mapping[str, Any]) -> str:
    """A run folder's path below the results dir: `pt2/pt2-1_vs_pt2-2_seed1/layer5[-rbf0.4-all]`, or
    with the second instance at another layer `.../layer3_vs_layer5[-...]`."""
    c = comparison
    a = instance_name(model_name(c.regime, c.a), c.seed_a)
    b = instance_name(model_name(c.regime, c.b), c.seed_b)
    layers = f"layer{c.layer}" if c.layer_b == c.layer else f"layer{c.layer}_vs_layer{c.layer_b}"
    label = settings_label(settings, defaults)
    return f"{c.regime}/{a}_vs_{b}/{layers}" + (f"-{label}" if label else "")


def data_root_text(data_root: str | None) -> str:
    """What data_root.txt holds for a data root (data.root, None for the demo store)."""
    return DEMO if data_root is None else data_root


def store_of(settings: Mapping[str, Any] | None) -> str:
    """The data root a result's settings name, as data_root_text spells it."""
    return data_root_text((settings or {}).get("data.root"))


def demo_store(results_dir: Path | None) -> Path:
    """The built-in demo store of a results dir: beside it, in the same folder (outputs/demo_store
    beside outputs/cka_demo), wherever the command runs from; for a run written outside any
    results dir, outputs/demo_store of the folder it runs in."""
    return (Path("outputs").resolve() if results_dir is None else results_dir.resolve().parent) / "demo_store"


def store_path(text: str, results_dir: Path | None) -> Path:
    """The store a data_root.txt text names, for the results dir that records it."""
    return demo_store(results_dir) if text == DEMO else Path(text)


def data_root_words(text: str) -> str:
    return "the built-in demo store" if text == DEMO else f"data.root={text}"


def result_identity(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """What makes two results of one comparison the same: their settings, less the data root
    (results dir and summary say that: a store that moved keeps its results)."""
    return {k: v for k, v in (settings or {}).items() if k not in _UNNAMED}


def override_text(value: Any) -> str:
    """A value as an override spells it: null, true, [0,7], region:^A."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
