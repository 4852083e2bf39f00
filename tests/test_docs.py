"""The manual keeps its promise: every command and Python block of README.md and docs/ runs, as
written, on the demo store (or a store of the real layout standing for the user's
/path/to/experiments), or is marked with why it cannot; its links hold; `mkdocs build --strict`
passes. The tally of what ran and what is marked ends each test run (conftest's
pytest_terminal_summary)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CODE, DOC_PAGES, DOCS, built_once, doc_blocks, run_cli

from cka_hydra.demo import write_store

USER_STORE = "/path/to/experiments"  # the manual's name for the user's store


@pytest.fixture(scope="session")
def finished_study(tmp_path_factory) -> Path:
    """A folder as a user's is after the Quick start: the demo store and its finished study and
    report in outputs/; and a store of the real layout at experiments/, standing for the user's,
    with the same study and report on it in outputs/cka. Each page starts from a copy (copy_study)."""
    def build(folder: Path) -> None:
        write_store(folder / "experiments")
        for args in ((), (f"data.root={folder / 'experiments'}",)):
            for command in (("-m", "sweep"), ("report",)):
                result = run_cli(*command, *args, cwd=folder)
                assert result.returncode == 0, result.stdout

    return built_once(tmp_path_factory, "finished-study", build)


def copy_study(study: Path, to: Path) -> None:
    """The finished study's outputs/ at to: the stores' files hard-linked (the same files, as the
    results recorded them), the results copied (a page's commands add to them)."""
    shutil.copytree(study / "outputs/demo_store", to / "outputs/demo_store", copy_function=os.link)
    for results in ("cka_demo", "cka"):
        shutil.copytree(study / "outputs" / results, to / "outputs" / results)

def page_id(page: Path) -> str:
    return str(page.relative_to(DOCS))


@pytest.mark.parametrize("page", [p for p in DOC_PAGES if any(b.kind == "run" for b in doc_blocks(p))], ids=page_id)
def test_every_block_of_the_page_runs(page, finished_study, tmp_path):
    """The page's blocks in order, in a folder of their own that starts as a user's does after the
    Quick start: its files written, then each command (bash -e: every line must succeed) and
    Python block run, /path/to/experiments standing for the real-layout store."""
    copy_study(finished_study, tmp_path)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for block in doc_blocks(page):
        body = block.body.replace(USER_STORE, str(finished_study / "experiments"))
        if block.kind == "file":
            (tmp_path / block.path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / block.path).write_text(body.partition("\n")[2] if block.path.endswith(".csv") else body)
        elif block.kind == "run":
            command = [sys.executable, "-"] if block.language == "python" else ["bash", "-e", "-o", "pipefail", "-s"]
            result = subprocess.run(command, input=body, cwd=tmp_path, env=env, capture_output=True, text=True,
                                    timeout=600)
            assert result.returncode == 0, (f"{page_id(page)}, line {block.line}: exit {result.returncode}\n{body}\n"
                                            f"{(result.stdout + result.stderr)[-4000:]}")


def test_every_block_is_run_or_marked():
    """Each page's code blocks are run (above), run by the test a mark names (which reads that page),
    the same as a block another page runs (each page starts from the same finished study), or
    marked not runnable with a reason; listings hold no command a reader would copy."""
    for page in DOC_PAGES:
        for block in doc_blocks(page):
            where = f"{page_id(page)}, line {block.line}"
            if block.kind == "elsewhere" and block.reason.startswith("runs as in "):
                other = DOCS / block.reason.removeprefix("runs as in ")
                assert other in DOC_PAGES and any(b.kind == "run" and b.body == block.body for b in doc_blocks(other)), (
                    f"{where}: {block.reason!r}, but {other.name} runs no such block")
            elif block.kind == "elsewhere":
                test = DOCS / block.reason.removeprefix("runs in ").split(":")[0]
                assert test.is_file() and page_id(page) in test.read_text(), (
                    f"{where}: {block.reason!r} names no test that reads {page_id(page)}")
            elif block.kind == "not runnable":
                assert len(block.reason) > 10, f"{where}: say why it cannot run"
            elif block.kind == "listing":
                assert block.language not in CODE
                commands = [line for line in block.body.splitlines() if re.match(r"(\$ )?(python|pip|bash) ", line)]
                assert not commands, f"{where}: a listing holds a command ({commands[0]}): make it a bash block"


def slug(heading: str) -> str:
    """A heading's anchor, as mkdocs' toc and GitHub make it."""
    return re.sub(r"[\s]+", "-", re.sub(r"[^\w\s-]", "", heading.strip().lower()))


@pytest.mark.parametrize("page", DOC_PAGES, ids=page_id)
def test_every_link_finds_its_page_and_heading(page):
    """README's links into docs/ (mkdocs checks the manual's own, below, but not README's) and each
    page's: the file exists and, for #anchor, has that heading."""
    text = re.sub(r"^```.*?^```$", "", page.read_text(), flags=re.S | re.M)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page_id(page)}: link to {target}: no such file"
        if anchor:
            headings = {slug(h) for h in re.findall(r"^#+ (.+)$", file.read_text(), re.M)}
            assert anchor in headings, f"{page_id(page)}: link to {target}: {file.name} has no such heading"


def test_the_manual_builds_strict(tmp_path):
    """`mkdocs build --strict`: broken links and anchors, pages missing from the nav, and API
    docstrings mkdocstrings cannot read all fail it; the site goes to a temporary folder."""
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=DOCS, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    api = (tmp_path / "site/api/index.html").read_text()
    for name in ("cka_hydra.api.compare", "cka_hydra.api.load_results", "cka_hydra.registry.register"):
        assert f'id="{name}"' in api, f"the API page has no entry for {name}"
