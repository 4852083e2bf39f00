"""A synthetic representation store in exactly the real layout and file format.

It lets `cka_hydra` run on a fresh machine with no data, and gives tests and
benchmarks stores of any size:

    python -m cka_hydra.demo OUT_DIR [--cities 4500 --hidden 128 --tokens 2 --checkpoints 41]

Planted structure, so that results look like the real study: every model encodes a
shared "world map" of the cities plus one component per training task, behind its
own random linear map (different per model and seed) and noise that fades over
training. The world map's weight grows with the number of training tasks, so CKA
grows over checkpoints and models trained on disjoint tasks agree more in pt2 and
pt3 than in pt1.
"""

import argparse
import json
import logging
import shutil
import tempfile
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from filelock import FileLock
from omegaconf import OmegaConf

from cka_hydra.pairs import model_name
from cka_hydra.store import METADATA_FILE, REPRESENTATIONS_FILE, Layout

log = logging.getLogger(__name__)

STEPS_PER_EPOCH = 7813
EPOCHS = {"pt1": 42}  # every other regime trained 21 epochs
N_FEATURES = 12  # width of the planted world map and of each task component


@dataclass(frozen=True)
class DemoSpec:
    n_cities: int = 400
    hidden: int = 32
    n_tokens: int = 2
    n_checkpoints: int = 3
    layers: tuple[int, ...] = (3, 4, 5, 6)
    regimes: tuple[str, ...] = ("pt1", "pt2", "pt3")
    seed: int = 0
    # store representations_flat as a copy of its own, as the real files do (twice the size);
    # the demo store keeps one storage for both keys
    flat_copy: bool = False
    # every model's seeds; None: the regime file's (orig, 1, 2)
    seeds: tuple[str, ...] | None = None


def load_regime(name: str) -> dict:
    """A regime file shipped in `conf/regime/`, as plain data."""
    path = resources.files("cka_hydra.conf") / "regime" / f"{name}.yaml"
    return OmegaConf.to_container(OmegaConf.load(str(path)))  # type: ignore[return-value]


def checkpoint_steps(regime: str, n_checkpoints: int) -> list[int]:
    """Evenly spaced steps from 0 to the regime's final step."""
    final = STEPS_PER_EPOCH * EPOCHS.get(regime, 21)
    return [round(final * k / (n_checkpoints - 1)) for k in range(n_checkpoints)]


def _rng(*key: object) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _fourier_features(coords: np.ndarray, key: object) -> np.ndarray:
    rng = _rng("features", key)
    freqs = rng.normal(scale=1 / 300, size=(2, N_FEATURES))
    phases = rng.uniform(0, 2 * np.pi, size=N_FEATURES)
    return np.cos(coords @ freqs + phases)


def _cities(spec: DemoSpec) -> list[dict]:
    rng = _rng("cities", spec.seed)
    ids = rng.choice(max(10000, 2 * spec.n_cities), size=spec.n_cities, replace=False)
    regions = ["Europe", "Asia", "Africa", "North America", "South America", "Oceania"]
    cities = []
    for row_id in ids.tolist():
        atlantis = rng.random() < 0.025
        region = "Atlantis" if atlantis else regions[rng.integers(len(regions))]
        cities.append({
            "row_id": row_id,
            "name": f"City {row_id}",
            "x": round(float(rng.uniform(0, 1000)), 2),
            "y": round(float(rng.uniform(0, 1000)), 2),
            "country": "Atlantis" if atlantis else f"{region} country {rng.integers(8)}",
            "region": region,
        })
    return cities


def _representations(
    spec: DemoSpec, world: np.ndarray, task_maps: dict[str, np.ndarray],
    tasks: Sequence[str], instance: str, layer: int, progress: float,
) -> np.ndarray:
    width = spec.n_tokens * spec.hidden
    rng = _rng("instance", spec.seed, instance, layer)
    shared_weight = (0.45 + 0.35 * (len(tasks) - 1)) * (1 + 0.1 * (layer - 3))
    signal = shared_weight * world @ rng.normal(size=(N_FEATURES, width))
    for task in tasks:
        signal += task_maps[task] @ rng.normal(size=(N_FEATURES, width))
    offset = rng.normal(scale=20, size=width)  # hidden states carry large per-feature offsets
    noise = _rng("noise", spec.seed, instance, layer, progress).normal(size=(len(world), width))
    return progress * signal + (1.2 - progress) * 2 * noise + offset


def write_store(root: Path, spec: DemoSpec = DemoSpec()) -> None:
    """Write every instance of the spec's regimes, all layers and checkpoints, below root."""
    cities = _cities(spec)
    coords = np.array([[c["x"], c["y"]] for c in cities])
    world = _fourier_features(coords, "world")
    task_maps: dict[str, np.ndarray] = {}
    for regime_name in spec.regimes:
        regime = load_regime(regime_name)
        layout = Layout(regime["original_dir"], regime["seed_dir"], regime["representations_dir"])
        steps = checkpoint_steps(regime_name, spec.n_checkpoints)
        for index, tasks in regime["models"].items():
            for task in tasks:
                task_maps.setdefault(task, _fourier_features(coords, task))
            model = model_name(regime_name, index)
            for seed in spec.seeds or regime["seeds"]:
                instance = f"{model}/{seed}"
                order = _rng("rows", spec.seed, instance).permutation(len(cities))
                city_info = [cities[i] for i in order]
                for layer in spec.layers:
                    folder = layout.representations_path(root, model, seed, tasks[0], layer)
                    for step in steps:
                        data = _representations(
                            spec, world, task_maps, tasks, instance, layer, step / steps[-1]
                        )[order]
                        _write_checkpoint(folder / f"checkpoint-{step}", spec, step, layer, data, city_info)


def _write_checkpoint(
    folder: Path, spec: DemoSpec, step: int, layer: int, data: np.ndarray, city_info: list[dict]
) -> None:
    import torch  # here, not at the top: the sweeper's process imports this module and needs no torch

    folder.mkdir(parents=True, exist_ok=True)
    n = len(city_info)
    full = torch.from_numpy(data.astype(np.float32)).reshape(n, spec.n_tokens, 1, spec.hidden)
    torch.save(
        {
            "representations": full,
            "representations_flat": full.reshape(n, -1).clone() if spec.flat_copy else full.reshape(n, -1),
            "input_ids": torch.zeros(n, 4, dtype=torch.int64),
            "step": step,
            "layers": [layer],
        },
        folder / REPRESENTATIONS_FILE,
    )
    metadata = {
        "step": step,
        "checkpoint_path": f"checkpoint-{step}",
        "layers": [layer],
        "n_cities": n,
        "n_tokens": spec.n_tokens,
        "n_layers": 1,
        "hidden_dim": spec.hidden,
        "n_train_cities": n,
        "n_test_cities": 0,
        "representation_shape": [n, spec.n_tokens, 1, spec.hidden],
        "representation_flat_dim": spec.n_tokens * spec.hidden,
        "city_info": city_info,
        "probe_train_pattern": "",
        "probe_test_pattern": "",
        "prompt_format": "demo",
        "x_train_mean": 500.0,
        "y_train_mean": 500.0,
    }
    (folder / METADATA_FILE).write_text(json.dumps(metadata, separators=(",", ":")))


def ensure_demo_store(path: Path) -> Path:
    """The default demo store at `path`, written on first use.

    A lock keeps parallel workers from writing it twice; it is written to a temporary
    folder and renamed into place, so a half-written store is never used.
    """
    if path.is_dir():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.is_dir():
            return path
        start = time.perf_counter()
        tmp = Path(tempfile.mkdtemp(prefix=path.name + ".tmp-", dir=path.parent))
        try:
            write_store(tmp)
            tmp.rename(path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info(
            "wrote the built-in demo store to %s in %.1f s; set data.root=/path/to/experiments "
            "to compare real representations", path, time.perf_counter() - start,
        )
    return path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m cka_hydra.demo",
        description="Write a synthetic representation store in the real layout and format.",
    )
    defaults = DemoSpec()
    parser.add_argument("out", type=Path, help="store root to write (data.root)")
    parser.add_argument("--cities", type=int, default=defaults.n_cities)
    parser.add_argument("--hidden", type=int, default=defaults.hidden)
    parser.add_argument("--tokens", type=int, default=defaults.n_tokens)
    parser.add_argument("--checkpoints", type=int, default=defaults.n_checkpoints)
    parser.add_argument("--layers", type=int, nargs="+", default=list(defaults.layers))
    parser.add_argument("--regimes", nargs="+", default=list(defaults.regimes))
    parser.add_argument("--seed", type=int, default=defaults.seed)
    args = parser.parse_args(argv)
    if args.checkpoints < 2 or args.cities < 10:
        parser.error("need --checkpoints >= 2 and --cities >= 10")
    spec = DemoSpec(args.cities, args.hidden, args.tokens, args.checkpoints,
                    tuple(args.layers), tuple(args.regimes), args.seed)
    start = time.perf_counter()
    write_store(args.out, spec)
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
