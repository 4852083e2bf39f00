"""The settings of a comparison and of the report: types, defaults and value checks.

The settings' defaults live here, each value's check beside it (in `__post_init__`), and what a
section's settings make irrelevant (`unused()`); the options of the groups `regime`, `pair`,
`seed_pair`, `layer` and `measure` live in `conf/`. Hydra composes a config onto these
dataclasses (cka_hydra.app registers them), so a mistyped value fails at composition;
`run_config` then turns it into plain dataclasses once, refusing keys the schema does not know.
Below that edge nothing sees a `DictConfig`.
"""

import functools
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import Any, Dict, List, Optional

from omegaconf import MISSING, DictConfig, OmegaConf

from cka_hydra import registry
from cka_hydra.errors import InputError
from cka_hydra.filters import STUDY_FILTER, parse_filter
from cka_hydra.pairs import Comparison, instance_name, model_name, regime_instances
from cka_hydra.store import Layout

@dataclass
class RegimeConfig:
    name: str = MISSING
    # model index -> training tasks, first task first
    models: Dict[int, List[str]] = MISSING
    seeds: List[str] = MISSING
    original_dir: str = MISSING
    seed_dir: str = MISSING
    representations_dir: str = MISSING
    # model (every seed) or instance -> why it is left out: never planned, refused in a single
    # run (allow_excluded=true runs it), left out of the report
    exclude: Any = field(default_factory=dict)  # Any: a list or a null reason gets our message, with its line
    # instance -> its folder below data.root, where it is not where original_dir/seed_dir say
    # (a stand-in seed); results keep the instance's name
    folders: Any = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Names become folder names, and templates paths below data.root: none may leave them."""
        where = f"regime {self.name!r}"
        named = [(("name",), self.name), *((("seeds", i), seed) for i, seed in enumerate(self.seeds)),
                 *((("models", index, i), task) for index, tasks in self.models.items() for i, task in enumerate(tasks))]
        for key, value in named:
            if not _PLAIN_NAME.fullmatch(str(value)):
                raise RegimeError(key, f"{where}: {key[0]}: {str(value)!r} is not a plain name (letters, digits, '_', "
                                  "'-', '.'; no path separator or '..'): it names folders")
        for key, placeholders in Layout.PLACEHOLDERS.items():
            template = getattr(self, key)
            if not _relative(template):
                raise RegimeError((key,), f"{where}: {key}={template!r}: expected a relative path below data.root, "
                                  "without '..'")
            try:
                names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
            except ValueError as err:  # an unclosed brace
                names = {f"({err})"}
            if not names <= placeholders:
                raise RegimeError((key,), f"{where}: {key}={template!r}: its placeholders may be "
                                  f"{', '.join('{' + p + '}' for p in sorted(placeholders))} only")
        if not self.models or not self.seeds:
            raise RegimeError(("models",), f"{where}: expected at least one model and one seed")
        instances = regime_instances(self.name, self.models, self.seeds)
        models = [model_name(self.name, index) for index in self.models]
        known = (f"its models are {models[0]} ... {models[-1]}, its seeds {', '.join(self.seeds)}: "
                 f"e.g. {models[-1]} or {instance_name(models[-1], self.seeds[-1])}")
        examples = {"exclude": "pt1-7: crossing task failed to train", "folders": "pt1-5_seed2: revision/exp4/pt1-5_seed3"}
        for key, example in examples.items():
            if not isinstance(getattr(self, key), Mapping):
                raise RegimeError((key,), f"{where}: {key}: expected a mapping, one `{example}` line each")
        for name, reason in self.exclude.items():
            if name not in models and name not in instances:
                raise RegimeError(("exclude", name), f"{where}: exclude: {name} is no model or instance of it "
                                  f"({known})")
            if not str(reason or "").strip():
                raise RegimeError(("exclude", name), f"{where}: exclude: {name}: expected the reason it is left out")
        for name, folder in self.folders.items():
            if name not in instances:
                raise RegimeError(("folders", name), f"{where}: folders: {name} is no instance of it ({known})")
            if not isinstance(folder, str) or not _relative(folder) or not folder.strip("/"):
                raise RegimeError(("folders", name), f"{where}: folders: {name}: {folder!r}: expected a relative "
                                  "path below data.root, without '..'")


def _relative(path: str) -> bool:
    return not (PurePosixPath(path).is_absolute() or ".." in PurePosixPath(path).parts or "\\" in path)


class RegimeError(InputError):
    """A regime's value that is not valid, with its key in the regime (for the line of its file)."""

    def __init__(self, key: tuple, message: str) -> None:
        super().__init__(message)
        self.key = key


# a name that is one folder name: never '..', '/', or empty
_PLAIN_NAME = re.compile(r"(?!\.\.?$)[A-Za-z0-9_.-]+")


@dataclass
class PairConfig:
    a: int = MISSING
    b: int = MISSING


@dataclass
class SeedPairConfig:
    a: str = MISSING
    b: str = MISSING


@dataclass
class DataConfig:
    # the experiments folder; None: the built-in demo store, beside the results dir (identity.demo_store)
    root: Optional[str] = None

    def __post_init__(self) -> None:
        if self.root is not None:  # one spelling per folder, so that equal roots compare equal
            self.root = str(Path(self.root).expanduser().resolve())


class Kernel(Enum):
    linear = "linear"
    rbf = "rbf"


class Precision(Enum):
    float64 = "float64"
    float32 = "float32"  # faster on some GPUs; docs/measures.md states its error


# fewer bootstrap resamples give an interval too rough to read (a caution, not a refusal)
ROUGH_BOOTSTRAP = 100


@dataclass
class CKAConfig:
    kernel: Kernel = Kernel.linear
    # rbf bandwidth: sigma^2 = sigma_frac^2 * median squared distance
    sigma_frac: float = 0.4
    # unbiased HSIC estimator (Song et al. 2012) in all three terms
    debiased: bool = False
    precision: Precision = Precision.float64
    # resamples of the cities for a percentile confidence interval; 0: none
    bootstrap: int = 0
    # of the bootstrap interval
    confidence: float = 0.95
    # of the bootstrap resampling
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.sigma_frac > 0:
            raise InputError(f"cka.sigma_frac={self.sigma_frac}: expected a positive number")
        if self.bootstrap < 0 or self.bootstrap == 1:
            raise InputError(f"cka.bootstrap={self.bootstrap}: expected 0 (no interval) or a number of resamples, 2 or "
                             f"more (at least {ROUGH_BOOTSTRAP} for an interval worth reading)")
        if not 0 < self.confidence < 1:
            raise InputError(f"cka.confidence={self.confidence}: expected a level between 0 and 1, such as 0.95")

    def cautions(self) -> list[str]:
        """What to tell the user of settings that run but give a poor result."""
        if 0 < self.bootstrap < ROUGH_BOOTSTRAP:
            return [f"cka.bootstrap={self.bootstrap}: a percentile interval from fewer than {ROUGH_BOOTSTRAP} resamples "
                    "is rough (its bounds move with cka.seed); 1000 is usual"]
        return []

    def unused(self) -> set[str]:
        """Settings that cannot change the result, given the others."""
        unused = set()
        if self.kernel is not Kernel.rbf:
            unused.add("sigma_frac")
        if not self.bootstrap:
            unused |= {"confidence", "seed"}
        return unused


# fewer permutations give p-values too coarse to read at 1% (a caution, not a refusal)
ROUGH_PERMUTATIONS = 99


@dataclass
class NullConfig:
    # random re-pairings of the cities per value (one side's rows permuted), the same for every
    # step of a run: the null mean, its standard deviation and a p-value; 0: none
    permutations: int = 0
    # of the permutations
    seed: int = 0

    def __post_init__(self) -> None:
        if self.permutations < 0:
            raise InputError(f"null.permutations={self.permutations}: expected 0 (no permutation test) or a number "
                             f"of permutations, such as 1000")

    def cautions(self) -> list[str]:
        if 0 < self.permutations < ROUGH_PERMUTATIONS:
            return [f"null.permutations={self.permutations}: the smallest p-value is 1/{self.permutations + 1}; "
                    "1000 or more is usual"]
        return []

    def unused(self) -> set[str]:
        """Without permutations, neither setting changes a result (results keep their folders)."""
        return set() if self.permutations else {"permutations", "seed"}


# pca_filter's default: whatever city_filter is (an interpolation, resolved when Hydra composes)
FOLLOWS_CITY_FILTER = "${city_filter}"


class Neighbourhood(Enum):
    cosine = "cosine"  # rows scaled to unit norm (Huh et al.)
    euclidean = "euclidean"


class RDM(Enum):
    correlation = "correlation"  # 1 - the Pearson correlation of two cities' rows
    euclidean = "euclidean"  # their squared Euclidean distance


@dataclass
class MeasureConfig:
    # set by the group option: measure=cka|pca_cka|procrustes|shape|svcca|mknn|rsa, or a
    # measure/NAME.yaml of your --config-dir (named after its file)
    name: Optional[str] = "cka"
    # principal components kept per instance (pca_cka, procrustes; svcca with variance=null)
    components: int = 3
    # the cities each instance's PCA is fitted on (it is applied to all); see docs/store.md, "City filter"
    pca_filter: Optional[str] = FOLLOWS_CITY_FILTER
    # shape: 1 aligns by rotations only, 0 by any invertible linear map (each side whitened),
    # between: partial whitening (netrep's LinearMetric)
    alpha: float = 1.0
    # shape: centre each side's columns (a translation changes nothing)
    center: bool = True
    # svcca: each side keeps the fewest components holding this share of its variance; null:
    # measure.components of them
    variance: Optional[float] = 0.99
    # mknn: neighbours per city
    k: int = 10
    # mknn: nearness of two cities' rows
    metric: Neighbourhood = Neighbourhood.cosine
    # rsa: the dissimilarity of two cities' rows
    rdm: RDM = RDM.correlation
    # a user measure's function (module.function: f(x, y) -> float) and whether it gives a
    # similarity or a distance
    _target_: Optional[str] = None
    kind: Optional[str] = None

    def __post_init__(self) -> None:
        if self.components < 1:
            raise InputError(f"measure.components={self.components}: expected 1 or more principal components")
        if not 0 <= self.alpha <= 1:
            raise InputError(f"measure.alpha={self.alpha}: expected a number from 0 (any invertible linear map) to 1 "
                             "(rotations only)")
        if self.variance is not None and not 0 < self.variance <= 1:
            raise InputError(f"measure.variance={self.variance}: expected a share of the variance, above 0 and at "
                             "most 1, such as 0.99 (or null: keep measure.components components)")
        if self.k < 1:
            raise InputError(f"measure.k={self.k}: expected 1 or more neighbours per city")
        if self._target_ is None and self.kind is not None:
            raise InputError(f"measure.kind={self.kind}: only a user measure (one with _target_) has a kind")
        self.registered  # the name is a measure, and a user measure's function imports

    @functools.cached_property
    def registered(self) -> registry.Measure:
        if self._target_ is None:
            return registry.get(str(self.name))
        return registry.user_measure(str(self.name), self._target_, self.kind)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (to a worker) without the measure found: a user's function is imported where it
        is used, from that process's working directory."""
        return {key: value for key, value in self.__dict__.items() if key != "registered"}

    def cautions(self) -> list[str]:
        """Another measure's settings, changed: this measure does not read them (a sweep over
        measures may set them for the others)."""
        default = MeasureConfig()
        changed = [f"measure.{key}={_text(getattr(self, key))}" for key in _MEASURE_SETTINGS
                   if key in self.unused() and key != "pca_filter" and getattr(self, key) != getattr(default, key)]
        return [f"{', '.join(changed)}: ignored, as measure={self.name} does not read "
                f"{'it' if len(changed) == 1 else 'them'} with these settings"] if changed else []

    def unused(self) -> set[str]:
        """Settings that cannot change the result, given the others: those of other measures (each
        measure declares its own, registry.Measure.settings), and a user measure's function and
        kind unless it is one. With measure=cka all of them: its results keep the settings, and so
        the run folders, they had before measures existed."""
        measure = self.registered
        unused = set(_MEASURE_SETTINGS) - set(measure.settings(self))
        if measure.target is None:
            unused |= {"_target_", "kind"}
        if measure.name == "cka" and measure.target is None:
            unused.add("name")
        return unused


# the settings of some measures but not all (registry.Measure.settings says whose)
_MEASURE_SETTINGS = ("components", "pca_filter", "alpha", "center", "variance", "k", "metric", "rdm")


def _text(value: Any) -> Any:
    """A setting's value as the command line spells it (false, null, euclidean)."""
    if isinstance(value, Enum):
        return value.value
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else value


def _filter_text(text: Optional[str], setting: str) -> Optional[str]:
    """A city filter's text, checked, in one spelling (`region: ^Asia ` is `region:^Asia`), so that
    filters that keep the same cities share run folders; "" keeps every city, as null does."""
    if not (text or "").strip():
        return None
    return parse_filter(text, setting).canonical


DEVICE = re.compile(r"auto|cpu|cuda(?::(\d+))?")  # the device setting; the group is a GPU's index


@dataclass
class RunConfig:
    regime: RegimeConfig = MISSING
    pair: PairConfig = MISSING
    seed_pair: SeedPairConfig = MISSING
    layer: int = MISSING
    # the second instance's layer; null: the same as layer
    layer_b: Optional[int] = None
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    cka: CKAConfig = field(default_factory=CKAConfig)
    null: NullConfig = field(default_factory=NullConfig)
    # final (largest common step) | all (every common step) | [0, 7813, ...]
    checkpoints: Any = "final"
    # see docs/store.md, "City filter"; None keeps every city
    city_filter: Optional[str] = STUDY_FILTER
    data: DataConfig = field(default_factory=DataConfig)
    # auto (a GPU when torch sees one) | cpu | cuda | cuda:N
    device: str = "auto"
    # recompute even when the run folder holds the result, and replace a result of another data root
    overwrite: bool = False
    # compare two models that share a training task
    allow_overlap: bool = False
    # compare an instance that its regime's `exclude` leaves out
    allow_excluded: bool = False
    # also draw the timeline as <measure>_timeline.png beside it (not part of the result)
    save_timeline_plot: bool = False
    # memory for the prepared instances a worker keeps between comparisons (least recently used
    # go first); 0: none kept
    cache_mb: int = 2048
    # the newest checkpoint step to use (null: the newest there is): a store still being
    # written, read as it was at that step (the sweeper's follow rounds set it)
    until_step: Optional[int] = None

    def __post_init__(self) -> None:
        self.checkpoints = _checkpoint_spec(self.checkpoints)
        self.city_filter = _filter_text(self.city_filter, "city_filter")
        pca_filter = self.measure.pca_filter
        if pca_filter == FOLLOWS_CITY_FILTER:  # a RunConfig made in Python, not composed
            pca_filter = self.city_filter
        # checked after city_filter, which it follows by default: an error names the setting given;
        # a new MeasureConfig, so that the one passed in is never changed after its own checks
        self.measure = replace(self.measure, pca_filter=_filter_text(pca_filter, "measure.pca_filter"))
        for name, layer in (("layer", self.layer), ("layer_b", self.layer_b)):
            if layer is not None and layer < 0:
                raise InputError(f"{name}={layer}: expected a layer index, 0 or more")
        if self.layer_b is None:
            self.layer_b = self.layer
        seeds = list(self.regime.seeds)
        if self.pair.a > self.pair.b:  # pair=2_1 seed_pair=orig_1 is pair=1_2 seed_pair=1_orig: one folder for it
            self.pair = PairConfig(self.pair.b, self.pair.a)
            self.seed_pair = SeedPairConfig(self.seed_pair.b, self.seed_pair.a)
            self.layer, self.layer_b = self.layer_b, self.layer
        if (self.pair.a == self.pair.b and {self.seed_pair.a, self.seed_pair.b} <= set(seeds)
                and (seeds.index(self.seed_pair.a), self.layer) > (seeds.index(self.seed_pair.b), self.layer_b)):
            # a model against itself at (seed 1, layer 5) and (orig, layer 3) is the comparison
            # (orig, 3) against (1, 5): every measure is symmetric
            self.seed_pair = SeedPairConfig(self.seed_pair.b, self.seed_pair.a)
            self.layer, self.layer_b = self.layer_b, self.layer
        if not DEVICE.fullmatch(self.device):
            raise InputError(f"device={self.device}: expected auto, cpu, cuda or cuda:N")
        if self.until_step is not None and self.until_step < 0:
            raise InputError(f"until_step={self.until_step}: expected a checkpoint step, 0 or more (or null: the newest)")
        if self.cache_mb < 0:
            raise InputError(f"cache_mb={self.cache_mb}: expected the prepared instances' memory limit in MB, 0 or "
                             "more (0: nothing kept between comparisons)")
        if self.measure.name != "cka":
            changed = [f"cka.{f.name}" for f in fields(CKAConfig)
                       if getattr(self.cka, f.name) != getattr(CKAConfig(), f.name)]
            if changed:
                raise InputError(f"{', '.join(changed)}: the cka.* settings are measure=cka's; measure="
                                 f"{self.measure.name} is {self.measure.registered.description} in float64, "
                                 "without bootstrap: leave them out, or set measure=cka (in a sweep: sweep them with "
                                 "measure=cka alone)")

    def unused(self) -> set[str]:
        """Settings that cannot change the result, given the others."""
        return set() if self.measure.name == "cka" else {"cka"}

    def cautions(self) -> list[str]:
        """What to tell the user of settings that run but give a poor result."""
        return self.measure.cautions() + self.cka.cautions() + self.null.cautions()

    @property
    def comparison(self) -> Comparison:
        return Comparison(self.regime.name, self.pair.a, self.pair.b, self.seed_pair.a, self.seed_pair.b, self.layer,
                          self.layer_b)


def _checkpoint_spec(spec: Any) -> Any:
    """`final`, `all`, or the sorted distinct steps of a list (or of one step)."""
    if spec in ("final", "all"):
        return spec
    steps = [spec] if isinstance(spec, int) and not isinstance(spec, bool) else spec
    if (not isinstance(steps, list) or not steps
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in steps)):
        raise InputError(f"checkpoints={spec}: expected final, all, or a list of steps such as [0,7813]")
    return sorted(set(steps))


@dataclass
class ReportConfig:
    data: DataConfig = field(default_factory=DataConfig)
    # the sweep's folder (its hydra.sweep.dir); by default the one a sweep on data.root writes
    sweep_dir: str = "${cka_results_dir:${data.root}}"
    out_dir: str = "${sweep_dir}/report"
    # models or instances to leave out of every table, figure and test: [pt2-7,pt3-7]
    exclude: List[str] = field(default_factory=list)
    # keep the comparisons the regimes' `exclude` entries leave out (and runs made with allow_excluded)
    allow_excluded: bool = False
    # a setting with fewer runs is listed without figures of its own (a one-off check); 7: the
    # narrowest sweep, pt3's 7 model pairs at one layer and seed pairing
    min_runs: int = 7
    # a CSV of values per pair of models (or instances), or per model, to correlate similarity with
    # (cka_hydra.covariates); relative to the folder the report is run from
    covariates: Optional[str] = None
    # how a file of models' values becomes pairs' values: absolute_difference |x_a - x_b|, or product
    covariate_rule: str = "absolute_difference"
    # the Mantel test's permutations of the models' labels, drawn by numpy's default_rng(mantel_seed)
    mantel_permutations: int = 10000
    mantel_seed: int = 0

    def __post_init__(self) -> None:
        from cka_hydra.covariates import RULES  # pandas and scipy: only for the report

        if self.min_runs < 1:
            raise InputError(f"min_runs={self.min_runs}: expected 1 or more runs")
        if self.covariates is not None and not self.covariates.strip():
            raise InputError("covariates=: expected the path of a CSV file (or null: no covariates)")
        if self.covariate_rule not in RULES:
            raise InputError(f"covariate_rule={self.covariate_rule}: expected one of {', '.join(RULES)}")
        if self.mantel_permutations < 1:
            raise InputError(f"mantel_permutations={self.mantel_permutations}: expected 1 or more permutations")
        if self.mantel_seed < 0:
            raise InputError(f"mantel_seed={self.mantel_seed}: expected 0 or more (numpy's default_rng takes no "
                             "negative seed)")


def run_config(cfg: DictConfig, choices: Any = None) -> RunConfig:
    """The composed config of a comparison as plain dataclasses, with every value checked.

    Raises InputError for a key the schema does not know: Hydra lets `+key=value` add one,
    and a typo such as `+cka.kernal=rbf` must not run with the default kernel. A user's
    measure/NAME.yaml that names no measure is named after its file: its option in choices
    (hydra.runtime.choices, the config's own unless given: a job's config has no hydra node).
    """
    measure = cfg.get("measure")
    if OmegaConf.is_dict(measure) and measure.get("_target_") is not None and measure.get("name") in (None, "cka"):
        choice = (choices if choices is not None else OmegaConf.select(cfg, "hydra.runtime.choices") or {}).get(
            "measure")
        if choice is None:
            raise InputError(f"measure: _target_ {measure._target_}: expected measure.name as well")
        cfg = OmegaConf.merge(cfg, {"measure": {"name": choice}})
    return _typed(cfg, RunConfig)


def report_config(cfg: DictConfig) -> ReportConfig:
    """The composed config of the report as plain dataclasses (see run_config)."""
    return _typed(cfg, ReportConfig)


def _typed(cfg: DictConfig, schema: type) -> Any:
    values = {}
    for f in fields(schema):
        node = cfg[f.name]
        if OmegaConf.is_dict(node):
            _refuse_unknown_keys(node, f.name)
        values[f.name] = OmegaConf.to_object(node) if OmegaConf.is_config(node) else node
    unknown = sorted(set(cfg) - {f.name for f in fields(schema)} - {"hydra"})
    if unknown:
        raise InputError(f"{', '.join(unknown)}: unknown setting; the settings are: "
                         f"{', '.join(f.name for f in fields(schema))}")
    return schema(**values)


def _refuse_unknown_keys(node: DictConfig, path: str) -> None:
    schema = OmegaConf.get_type(node)
    if not is_dataclass(schema):
        return  # a mapping of data (regime.models), not a section of settings
    known = [f.name for f in fields(schema)]
    for key in node:
        if key not in known:
            raise InputError(f"{path}.{key}: unknown setting; {path} has: {', '.join(known)}")
        child = node._get_node(key)
        if OmegaConf.is_dict(child):
            _refuse_unknown_keys(child, f"{path}.{key}")


