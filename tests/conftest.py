import collections
import copy
import csv
import functools
import hashlib
import itertools
import io
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import NamedTuple

# The tests exercise the package as installed (`pip install ".[test]"`): `python -m pytest` (and
# each xdist worker) puts the folder it starts in on the import path ahead of site-packages, where
# the checkout would shadow an installed, not editable, package. An editable install's entry, after
# site-packages, stays.
_SITE = next((i for i, entry in enumerate(sys.path) if entry.endswith("site-packages")), len(sys.path))
sys.path[:_SITE] = [entry for entry in sys.path[:_SITE]
                    if Path(entry or ".").resolve() != Path(__file__).resolve().parents[1]]

import numpy as np
import pytest
import torch

from hydra.core.plugins import Plugins
from hydra.core.singleton import Singleton
from hydra_plugins.cka_hydra_configs.user_config_dir import USER_CONFIG_DIR

from cka_hydra import __main__ as cli
from cka_hydra.demo import DemoSpec, write_store

if os.environ.get("PYTEST_XDIST_WORKER"):
    # the suite runs a worker per core: torch's own threads in each would only fight over them
    torch.set_num_threads(1)

# Import every plugin now, so that the state run_app restores holds what their modules register
# (config nodes, resolvers): a module is imported once, when the first run scans for plugins.
Plugins.instance()

SMALL = DemoSpec(n_cities=60, hidden=6, n_tokens=2, n_checkpoints=3, layers=(3, 5), regimes=("pt1", "pt2", "pt3"))


def built_once(tmp_path_factory, name: str, build) -> Path:
    """A folder that build(folder) fills, built once per test session and shared by every xdist
    worker (a session fixture alone is built once per worker); tests must not modify it."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's folder, above each worker's own
    folder, built = root / f"shared-{name}", root / f"shared-{name}.built"  # the mark beside it, not in it
    with FileLock(f"{folder}.lock"):
        if not built.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            built.touch()
    return folder


@pytest.fixture(scope="session")
def small_store(tmp_path_factory) -> Path:
    """A demo store small enough for many CLI runs; tests must not modify it."""
    return built_once(tmp_path_factory, "store", lambda root: write_store(root, SMALL))


@pytest.fixture
def store_copy(small_store, tmp_path) -> Path:
    """A private copy of the small store that a test may break."""
    root = tmp_path / "store"
    shutil.copytree(small_store, root)
    return root


# Three ways in, one per door: run_app (the command line, in this process: most tests), run_cli
# and Background (the command line in a process of its own: the installed package, signals,
# processes killed), compare_into (the Python API).

def run_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python -m cka_hydra ARGS` as a user would, in cwd, to its end; `.stdout` holds stdout
    and stderr."""
    process = Background(cwd, *args)
    output = process.finish(timeout)
    return subprocess.CompletedProcess(args, process.proc.returncode, output)


def run_app(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m cka_hydra ARGS` in cwd as run_cli runs it, but in this process: the same entry
    point, Hydra, callbacks, sweeper and launchers, without a new interpreter importing torch
    (2 s). `.stdout` holds what the user sees; `.returncode` the exit status."""
    state = copy.deepcopy(Singleton.get_state())
    argv, cwd_before, output = sys.argv, os.getcwd(), io.StringIO()
    config_dir = os.environ.get(USER_CONFIG_DIR)  # cli.run sets it for --config-dir
    sys.argv = ["cka_hydra", *args]
    os.chdir(cwd)
    try:
        with redirect_stdout(output), redirect_stderr(output):
            try:
                cli.run()
                code = 0
            except SystemExit as exit:  # as the interpreter reports it
                code = 1 if isinstance(exit.code, str) else exit.code or 0
                if isinstance(exit.code, str):
                    print(exit.code, file=sys.stderr)
    finally:
        sys.argv = argv
        os.chdir(cwd_before)
        if config_dir is None:
            os.environ.pop(USER_CONFIG_DIR, None)
        else:
            os.environ[USER_CONFIG_DIR] = config_dir
        Singleton.set_state(state)
        root = logging.getLogger()
        for handler in root.handlers[:]:  # Hydra's, to this run's log files and output
            root.removeHandler(handler)
            handler.close()
    return subprocess.CompletedProcess(args, code, output.getvalue())


def compare_into(results_dir: Path, *overrides: str) -> Path:
    """One comparison through the Python API (cka_hydra.compare), into its run folder under
    results_dir, which is returned."""
    from cka_hydra import compare

    return Path(compare([*overrides, f"hydra.sweep.dir={results_dir}"]).attrs["run_dir"])


def jobs_csv(cwd: Path) -> list[dict]:
    """The rows of the jobs.csv of the results dir a sweep run in cwd writes."""
    with open(cwd / "outputs/cka/jobs.csv") as f:
        return list(csv.DictReader(f))


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def representations_dir(root: Path, instance_dir: str, task: str, layer: int) -> Path:
    """The store layout, spelled out independently of cka_hydra.store."""
    return root / instance_dir / "analysis_higher" / f"{task}_firstcity_last_and_trans_l{layer}" / "representations"


def save_checkpoint(folder: Path, tensors: dict, cities: list[dict]) -> None:
    """Write one checkpoint folder in the store's format."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(tensors, folder / "representations.pt")
    (folder / "metadata.json").write_text(json.dumps({"city_info": cities}))


# --- independent references, sharing no code with cka_hydra ---

RUN = ["regime=pt2", "pair=1_2", "seed_pair=orig_1", "layer=5"]
DISJOINT = {  # regimes.md, "Which comparisons are valid"
    "pt1": list(itertools.combinations(range(1, 8), 2)),
    "pt2": [(1, 2), (1, 3), (1, 6), (1, 7), (2, 3), (2, 4), (2, 7), (3, 4), (3, 5), (4, 5), (4, 6), (5, 6),
            (5, 7), (6, 7)],
    "pt3": [(1, 2), (1, 7), (2, 3), (3, 4), (4, 5), (5, 6), (6, 7)],
}

# numpy transcription of Kornblith et al.'s gram_rbf, center_gram, cka
def reference_gram_rbf(x, threshold):
    dot = x @ x.T
    sq_norms = np.diag(dot)
    sq_distances = -2 * dot + sq_norms[:, None] + sq_norms[None, :]
    return np.exp(-sq_distances / (2 * threshold**2 * np.median(sq_distances)))


def reference_center_gram(gram, unbiased=False):
    gram = gram.copy()
    n = gram.shape[0]
    if unbiased:
        np.fill_diagonal(gram, 0)
        means = np.sum(gram, 0) / (n - 2)
        means -= np.sum(means) / (2 * (n - 1))
        gram -= means[:, None]
        gram -= means[None, :]
        np.fill_diagonal(gram, 0)
    else:
        means = np.mean(gram, 0)
        means -= np.mean(means) / 2
        gram -= means[:, None]
        gram -= means[None, :]
    return gram


def reference_cka_from_grams(k, l, debiased=False):
    k, l = reference_center_gram(k, debiased), reference_center_gram(l, debiased)
    return float(k.ravel() @ l.ravel() / (np.linalg.norm(k) * np.linalg.norm(l)))


def reference_cka(x, y, debiased=False):
    """Linear CKA by the Gram route with a dense centring matrix, numpy float64."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return reference_cka_from_grams(x @ x.T, y @ y.T, debiased)


def reference_rbf_cka(x, y, threshold, debiased=False):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    x, y = x - x.mean(0), y - y.mean(0)
    return reference_cka_from_grams(reference_gram_rbf(x, threshold), reference_gram_rbf(y, threshold), debiased)


def study_rows(folder):
    """A checkpoint's matrix in float64, and the rows of the cities the default filter keeps, by
    city id: the filter written out by hand, sharing no code with cka_hydra."""
    matrix = torch.load(folder / "representations.pt", weights_only=True)["representations_flat"].double().numpy()
    cities = json.loads((folder / "metadata.json").read_text())["city_info"]
    keep = {}
    for row, c in enumerate(cities):
        cid = str(c.get("city_id", c["row_id"]))
        region = c.get("region") or c.get("country")
        if not region.startswith("Atlantis") and re.fullmatch(r"[1-9][0-9]{3,}", cid):
            keep[cid] = row
    return matrix, keep


def reference_from_files(folder_a, folder_b, estimator=reference_cka, load=study_rows):
    """A measure straight from two checkpoint folders, sharing no code with cka_hydra: the default
    filter written out by hand, cities matched by id, by default CKA by the Gram route in numpy
    float64. `load(folder)` gives a folder's matrix and its kept rows by city id."""
    xa, keep_a = load(folder_a)
    xb, keep_b = load(folder_b)
    ids = sorted(set(keep_a) & set(keep_b))
    return estimator(xa[[keep_a[i] for i in ids]], xb[[keep_b[i] for i in ids]]), len(ids)


def short_hash(value):
    """The run folder's hash of a setting's value, written out independently."""
    return hashlib.sha256(json.dumps(value).encode()).hexdigest()[:8]



# --- processes ---

def readers_of(path: Path) -> list[int]:
    pids = []
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) == str(path) for fd in fd_dir.iterdir()):
                pids.append(int(fd_dir.parent.name))
        except OSError:
            continue
    return [pid for pid in pids if pid != os.getpid()]


class Background:
    """`python -m cka_hydra ARGS` running in cwd in the background, as a user runs it (env: added
    variables; own_group: in a process group of its own, as a terminal starts it); its console in
    a file of its own, outside cwd."""

    def __init__(self, cwd: Path, *args: str, own_group: bool = False, **env: str) -> None:
        handle, log = tempfile.mkstemp(prefix="cka-hydra-console-", suffix=".log")
        os.close(handle)
        self.cwd, self.log = cwd, Path(log)
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "cka_hydra", *args], cwd=cwd, stdout=out,
                                         stderr=subprocess.STDOUT, env=os.environ | env,
                                         start_new_session=own_group)

    def finish(self, timeout: float = 120) -> str:
        """Its console once it has ended by itself."""
        self.proc.wait(timeout=timeout)
        return self.output

    @property
    def output(self) -> str:
        return self.log.read_text()

    def wait_until(self, found, what: str, timeout: float = 120):
        """What found() returns once it is true, while the process runs; else the test fails
        with `what` and the console."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = found()
            if value:
                return value
            assert self.proc.poll() is None, self.output
            time.sleep(0.05)
        pytest.fail(f"{what}:\n{self.output}")

    def end(self) -> None:
        """SIGTERM (a sweep then cancels what it launched), SIGKILL if that does not end it."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class BlockedRead:
    """A checkpoint's metadata.json made a FIFO: the job that reads it blocks there, so that a test
    can act while a sweep is surely mid-way (interrupt it, kill the reader as a scheduler would)."""

    def __init__(self, checkpoint: Path) -> None:
        self.path = checkpoint / "metadata.json"
        self.original = self.path.read_bytes()
        self.path.unlink()
        os.mkfifo(self.path)
        self.writer: int | None = None

    def reader_opened(self) -> bool:
        """Whether a reader has opened it (opening the write end succeeds only then); the write end
        is then held open until release(), or the reader would see end-of-file."""
        try:
            self.writer = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            return True
        except OSError:
            return False

    def kill_readers(self, wait: float = 30) -> list[int]:
        """SIGKILL the processes that hold it open (their descriptor shows in /proc a moment after
        their open() returns)."""
        deadline = time.monotonic() + wait
        while not (readers := readers_of(self.path)) and time.monotonic() < deadline:
            time.sleep(0.01)
        for pid in readers:
            os.kill(pid, signal.SIGKILL)
        return readers

    def release(self) -> None:
        if self.writer is not None:
            os.close(self.writer)
            self.writer = None

    def restore(self) -> None:
        """The metadata file as it was."""
        self.release()
        self.path.unlink()
        self.path.write_bytes(self.original)


@pytest.fixture
def background():
    """background(kind, cwd, *args, **env) starts a Background (or a subclass); whatever still
    runs when the test ends is ended, so a failing test leaves nothing behind."""
    started = []
    yield lambda kind, *args, **env: started.append(kind(*args, **env)) or started[-1]
    for process in started:
        process.end()


@functools.cache
def slurm_missing() -> str | None:
    """Why no SLURM cluster takes jobs here (None when one does): `.ci/slurm start` brings up one."""
    if shutil.which("sbatch") is None:
        return "no sbatch (no SLURM here: .ci/slurm start brings up a one-node cluster)"
    try:  # a stopped controller keeps sinfo waiting
        states = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=5)
    except subprocess.TimeoutExpired:
        return "no SLURM controller answers (sinfo timed out)"
    if states.returncode != 0 or not {"idle", "mixed", "allocated"} & set(states.stdout.split()):
        return f"no SLURM node takes jobs (sinfo: {(states.stdout + states.stderr).strip() or 'nothing'})"
    return None


def required(reason: str | None, variable: str) -> None:
    """Skip the test because `reason` (what this machine lacks; None: nothing, it runs), or fail
    it where the environment variable is 1: CI (.ci/run) provided the tool, so a skip would hide
    that it is broken."""
    if reason and os.environ.get(variable) == "1":
        pytest.fail(f"{variable}=1, but {reason}")
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def slurm() -> None:
    """A SLURM cluster to submit to. Without one the test is skipped, or fails where
    CKA_HYDRA_REQUIRE_SLURM=1 says one was started for it (.ci/run)."""
    required(slurm_missing(), "CKA_HYDRA_REQUIRE_SLURM")


def tex_missing() -> str | None:
    """Why stats.tex cannot be compiled here (None when it can): pdflatex and booktabs."""
    install = "apt-get install texlive-latex-base texlive-latex-recommended; .ci/run installs them"
    if shutil.which("pdflatex") is None:
        return f"no pdflatex ({install})"
    if subprocess.run(["kpsewhich", "booktabs.sty"], capture_output=True, text=True).stdout.strip() == "":
        return f"no booktabs.sty ({install})"
    return None


@pytest.fixture(scope="session")
def tex() -> None:
    """pdflatex, with booktabs, to compile stats.tex. Without it the test is skipped, or fails where
    CKA_HYDRA_REQUIRE_TEX=1 says it was installed for it (.ci/run)."""
    required(tex_missing(), "CKA_HYDRA_REQUIRE_TEX")


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto`: a worker per core, and one more where the scheduler's tests run: they mostly
    wait on it, and would otherwise keep a core's worker idle for minutes."""
    return len(os.sched_getaffinity(0)) + (slurm_missing() is None)


def pytest_collection_modifyitems(items: list) -> None:
    """The scheduler's tests first: they mostly wait on it (a time limit takes a minute), and so
    wait while the other tests run on the other workers; then the manual's pages, the longest of
    the rest, so that they do not end the run alone."""
    items.sort(key=lambda item: (item.get_closest_marker("slurm") is None, "test_docs.py" not in item.nodeid))


def pytest_terminal_summary(terminalreporter) -> None:
    """The tally the manual's test promises: how many blocks of README and docs/ the tests run,
    and which are marked not runnable, and why (read from the pages, as test_docs reads them)."""
    if not any("test_docs.py" in report.nodeid for reports in terminalreporter.stats.values()
               for report in reports if hasattr(report, "nodeid")):
        return
    blocks = [block for page in DOC_PAGES for block in doc_blocks(page)]
    ran = [b for b in blocks if b.kind == "run"]
    elsewhere = [b for b in blocks if b.kind == "elsewhere"]
    marked = [b for b in blocks if b.kind == "not runnable"]
    write = terminalreporter.write_line
    terminalreporter.section("the manual's blocks")
    write(f"{len(ran)} commands and Python blocks run by tests/test_docs.py, in {len(DOC_PAGES)} pages, with "
          f"{sum(b.kind == 'file' for b in blocks)} files they read; {len(elsewhere)} run elsewhere:")
    for reason, count in collections.Counter(b.reason for b in elsewhere).most_common():
        write(f"  {count} x {reason}")
    write(f"{len(marked)} marked not runnable:")
    for reason, count in collections.Counter(b.reason for b in marked).most_common():
        write(f"  {count} x {reason}")


# --- the manual: README.md and docs/*.md ---

DOCS = Path(__file__).parents[1]
DOC_PAGES = [DOCS / "README.md", *sorted((DOCS / "docs").glob("*.md"))]
CODE = {"bash", "sh", "console", "python"}  # blocks that must run, or say why they cannot


class DocBlock(NamedTuple):
    """A fenced block of a page: kind is "run" (a command or Python block for test_docs to run),
    "elsewhere" (one another test runs: reason names it), "not runnable" (reason says why), "file"
    (a file a command reads: its first line is `# <path>`, path set) or "listing" (output, a tree,
    a config shown: nothing to run)."""
    page: Path
    line: int
    language: str
    body: str
    kind: str
    reason: str = ""
    path: str = ""


_FENCE = re.compile(r"(?:<!-- (?P<mark>[^>]*?) -->\n)?^```(?P<language>\w*)\n(?P<body>.*?)^```$", re.S | re.M)
_FILE = re.compile(r"# (?P<path>[\w./-]+\.(?:yaml|py|csv))\b")


def doc_blocks(page: Path) -> list[DocBlock]:
    """The fenced blocks of a page, in order. A block of CODE is run unless the comment on the line
    right above it says `not runnable: why`, `runs in tests/<file>: what` (that test runs it) or
    `runs as in docs/<page>` (the same block, run there from the same start); a block whose first
    line is `# <file>.yaml`, `.py` or `.csv` is a file the commands after it read (its first line left
    out of a CSV)."""
    return _blocks(page, page.read_text()) + [block for name in re.findall(r"^::: ([\w.]+)$", page.read_text(), re.M)
                                              for block in _blocks(page, _docstring(name))]


def _docstring(name: str) -> str:
    """The docstring of the object a mkdocstrings `::: name` entry generates a section from."""
    import importlib
    import inspect

    module, _, attribute = name.rpartition(".")
    return inspect.getdoc(getattr(importlib.import_module(module), attribute)) or ""


def _blocks(page: Path, text: str) -> list[DocBlock]:
    blocks = []
    for match in _FENCE.finditer(text):
        language, body, mark = match["language"], match["body"], match["mark"] or ""
        line = text.count("\n", 0, match.start("language")) + 1
        file = _FILE.match(body)
        if mark.startswith("not runnable: "):
            kind, reason = "not runnable", mark.removeprefix("not runnable: ")
        elif mark.startswith(("runs in ", "runs as in ")):
            kind, reason = "elsewhere", mark
        elif mark:
            raise ValueError(f"{page.name}, line {line}: unknown mark <!-- {mark} -->")
        elif file:
            kind, reason = "file", ""
        else:
            kind, reason = ("run" if language in CODE else "listing"), ""
        blocks.append(DocBlock(page, line, language, body, kind, reason, file["path"] if file else ""))
    return blocks


# --- the report ---

def final_rows(*groups: tuple, measures: dict[str, str] | None = None) -> list[dict]:
    """Rows of a results table's final values, as stats.final_values reads them, from
    (setting, regime, layer, layer_b, kind, seed pairing, n comparisons, similarity) tuples,
    kind "different" (models 1 and 2, 3, ...), "same" (model i against itself) or "shared" (a
    shared task, allow_overlap); the i-th comparison of a tuple has similarity + 0.01 i. The
    measure: `measures`' for the setting, else cka; every model of regime ptN trained on N tasks;
    instances named as the run folders name them (pt3-2_seed1)."""
    rows = []
    for setting, regime, layer, layer_b, kind, pairing, n, similarity in groups:
        seed_a, seed_b = pairing.split("_")
        for i in range(n):
            a, b = (i + 1, i + 1) if kind == "same" else (1, i + 2)
            rows.append(dict(setting=setting, measure=(measures or {}).get(setting, "cka"), regime=regime,
                             layer=layer, layer_b=layer_b, model_a=f"{regime}-{a}", seed_a=seed_a,
                             model_b=f"{regime}-{b}", seed_b=seed_b,
                             instance_a=f"{regime}-{a}" + ("" if seed_a == "orig" else f"_seed{seed_a}"),
                             instance_b=f"{regime}-{b}" + ("" if seed_b == "orig" else f"_seed{seed_b}"),
                             n_tasks_a=int(regime.removeprefix("pt")), n_tasks_b=int(regime.removeprefix("pt")),
                             n_shared_tasks=0 if kind == "different" else 1 if kind == "shared" else 2,
                             final=True, similarity=similarity + 0.01 * i, measure_kind="similarity", chance=0.04,
                             null_mean=float("nan"), p_value=float("nan"),
                             run_dir=f"{setting}/{regime}/{a}_{b}/{pairing}/{layer}_{layer_b}"))
    return rows


FIGURES = ("matrix_figure", "trends_figure", "kinds_figure", "layer_map_figure", "timelines_figure")


@pytest.fixture
def figure_data(monkeypatch) -> dict:
    """What the report hands each figure it draws, by the figure's file name: the matrix of a
    matrix figure, the rows (or table) the others average (recorded, then drawn as usual)."""
    from cka_hydra import figures

    handed = {}
    for name in FIGURES:
        def record(data, *args, _draw=getattr(figures, name), **kwargs):
            handed[next(a for a in args if isinstance(a, Path)).name] = data.copy()
            return _draw(data, *args, **kwargs)

        monkeypatch.setattr(figures, name, record)
    return handed


# --- trained networks: small MLPs on scikit-learn's digits ---

DIGITS_TRAIN = 1400  # of the 1797 digits: the rest are held out, the cities a layer is compared on


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's digits (1797 8x8 images, shipped inside it), each pixel standardised."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x - x.mean(0)) / (x.std(0) + 1)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y)


def train_digits_mlp(seed: int, x: torch.Tensor, y: torch.Tensor, widths: tuple[int, ...] = (64, 64, 32),
                     epochs: int = 15) -> torch.nn.Sequential:
    """A tanh MLP (widths: input, then hidden layers; 10 logits) trained by Adam on the first
    DIGITS_TRAIN digits from seed alone (torch's global generator is left as it was)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        layers = []
        for d_in, d_out in zip(widths, widths[1:]):
            layers += [torch.nn.Linear(d_in, d_out), torch.nn.Tanh()]
        net = torch.nn.Sequential(*layers, torch.nn.Linear(widths[-1], 10))
        optimizer = torch.optim.Adam(net.parameters(), 1e-3)
        order = torch.Generator().manual_seed(seed)
        for _ in range(epochs):
            for rows in torch.randperm(DIGITS_TRAIN, generator=order).split(64):
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(net(x[rows]), y[rows]).backward()
                optimizer.step()
    return net


def module_outputs(net: torch.nn.Sequential, x: torch.Tensor, kind: type) -> list[torch.Tensor]:
    """The output of each of net's modules of this kind (torch.nn.Tanh: the hidden layers;
    torch.nn.Linear: each layer before its tanh, the logits last) for the rows x."""
    outputs = []
    with torch.no_grad():
        for module in net:
            x = module(x)
            if isinstance(module, kind):
                outputs.append(x)
    return outputs


@pytest.fixture(scope="session")
def digits_layers(tmp_path_factory) -> dict[str, np.ndarray]:
    """Two tanh MLPs (64-64-32-10) trained on digits from seeds 0 and 1: `net{seed}_layer{i}`,
    hidden layer i's output on the 397 held-out digits (397, 64 or 32) in float64, and
    `net{seed}_accuracy`, its held-out accuracy. Trained once per session for every worker, on
    one thread (a second thread makes such small products slower, and the weights depend on it)."""
    def build(folder: Path) -> None:
        x, y = digits()
        arrays = {}
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            nets = [train_digits_mlp(seed, x, y) for seed in (0, 1)]
        finally:
            torch.set_num_threads(threads)
        for seed, net in enumerate(nets):
            with torch.no_grad():
                correct = net(x[DIGITS_TRAIN:]).argmax(1) == y[DIGITS_TRAIN:]
            arrays[f"net{seed}_accuracy"] = float(correct.double().mean())
            for i, layer in enumerate(module_outputs(net, x[DIGITS_TRAIN:], torch.nn.Tanh)):
                arrays[f"net{seed}_layer{i}"] = layer.double().numpy()
        np.savez(folder / "layers.npz", **arrays)

    with np.load(built_once(tmp_path_factory, "digits-layers", build) / "layers.npz") as stored:
        return {name: stored[name] for name in stored.files}
