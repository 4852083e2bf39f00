"""`python -m cka_hydra [overrides]`, or the `cka-hydra` command.

`python -m cka_hydra [-m sweep] [overrides]` runs comparisons; `python -m cka_hydra report
[sweep_dir=...] [out_dir=...]` reports on a finished sweep.
"""

import importlib.util
import re
import sys
from collections.abc import Sequence

from cka_hydra.app import main, report

# Hydra's override grammar reads `layer=5` and `pair=1_2` as the integers 5 and 12, and
# refuses an integer as a config group choice: quote these groups' plain values.
_NUMERIC_GROUP = re.compile(r"(?P<key>[+~]?(?:pair|seed_pair|layer))=(?P<values>\w+(?:,\w+)*)")


# Named configs of conf/ that may be given as a bare word: `python -m cka_hydra -m sweep`.
CONFIG_NAMES = ("sweep",)


def hydra_argv(args: Sequence[str]) -> list[str]:
    """The command line as Hydra must see it.

    `sweep` -> `--config-name=sweep`; `pair=1_2` -> `pair='1_2'`; `layer=3,6` -> `layer='3','6'`.
    """
    out = []
    for arg in args:
        match = _NUMERIC_GROUP.fullmatch(arg)
        if arg in CONFIG_NAMES:
            arg = f"--config-name={arg}"
        elif match:
            arg = match["key"] + "=" + ",".join(f"'{value}'" for value in match["values"].split(","))
        out.append(arg)
    return out


# Hydra's flags that take the next word as their value (`--cfg job`, `-p hydra.launcher`).
_FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--info", "-i", "--config-path", "-cp", "--config-name",
                     "-cn", "--config-dir", "-cd", "--experimental-rerun"}


def stray_word(args: Sequence[str]) -> str | None:
    """The message for a bare word that is neither a command nor a flag's value (`-m swep`,
    which Hydra would report as "missing EQUAL at '<EOF>'"), or None."""
    for before, arg in zip(["", *args], args):
        if "=" not in arg and not arg.startswith("-") and arg not in (*CONFIG_NAMES, "report") \
                and before not in _FLAGS_WITH_VALUE:
            return (f"Error: {arg}: not a command; the commands are -m sweep and report, and settings are "
                    "key=value (python -m cka_hydra --help)")
    return None


# Launchers that need the optional extra: pip install "cka-hydra[slurm]"
_SUBMITIT_LAUNCHER = re.compile(r"hydra/launcher=(slurm|slurm_local|submitit_slurm|submitit_local)")


def missing_extra(args: Sequence[str]) -> str | None:
    """The one-line message for a launcher whose plugin is not installed, or None."""
    for arg in args:
        if _SUBMITIT_LAUNCHER.fullmatch(arg) and importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None:
            return f'Error: {arg} needs hydra-submitit-launcher: pip install "cka-hydra[slurm]" (or ".[slurm]" in a checkout)'
    return None


def run() -> None:
    args = sys.argv[1:]
    message = stray_word(args) or missing_extra(args)
    if message:
        sys.exit(message)
    task = main
    if "report" in args:  # a task of its own, with conf/report.yaml
        args.remove("report")
        task = report
    sys.argv[1:] = hydra_argv(args)
    try:
        task()
    except KeyboardInterrupt:  # Ctrl-C before a sweep's own handling starts (or in a single run)
        sys.exit("Error: interrupted (results already written are kept; nothing half-written counts)")


if __name__ == "__main__":
    run()
