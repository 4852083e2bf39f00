"""`python -m cka_hydra [overrides]`, or the `cka-hydra` command.

`python -m cka_hydra [-m sweep] [overrides]` runs comparisons; `python -m cka_hydra report
[sweep_dir=...] [out_dir=...]` reports on a finished sweep.
"""

import importlib.util
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from hydra_plugins.cka_hydra_configs.user_config_dir import USER_CONFIG_DIR

from cka_hydra.app import main, report
from cka_hydra.errors import InputError
from cka_hydra.overrides import CONFIG_NAMES, hydra_argv
from cka_hydra.regime_files import load_regime_file
from cka_hydra.results_dir import misplaced
from cka_hydra.schema import ReportConfig


# Hydra's flags that take the next word as their value (`--cfg job`, `-p hydra.launcher`).
_FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--info", "-i", "--config-path", "-cp", "--config-name",
                     "-cn", "--config-dir", "-cd", "--experimental-rerun"}


def stray_word(args: Sequence[str], config_names: Sequence[str] = CONFIG_NAMES) -> str | None:
    """The message for a bare word that is neither a command nor a flag's value (`-m swep`,
    which Hydra would report as "missing EQUAL at '<EOF>'"), or None."""
    for before, arg in zip(["", *args], args):
        if "=" not in arg and not arg.startswith("-") and arg not in (*config_names, "report") \
                and before not in _FLAGS_WITH_VALUE:
            extra = "".join(f", -m {name}" for name in config_names if name not in CONFIG_NAMES)
            if before.endswith("="):
                hint = f"; a space after '=' splits a setting in two: write {before}{arg}"
            else:
                hint = f" (a config of your own, {arg}.yaml? name its folder: --config-dir DIR)"
            return (f"Error: {arg}: not a command; the commands are -m sweep{extra} and report, and settings are "
                    f"key=value{hint}")
    return None


_CONFIG_DIR_FLAGS = ("--config-dir", "-cd")


def take_config_dir(args: list[str]) -> Path | None:
    """Remove `--config-dir DIR` (or `-cd DIR`, `--config-dir=DIR`) from args and return DIR,
    resolved; the plugin hydra_plugins.cka_hydra_configs then searches it before the packaged
    configs. Refuses a DIR that is no folder."""
    for i, arg in enumerate(args):
        flag, equals, value = arg.partition("=")
        if flag in _CONFIG_DIR_FLAGS:
            if not equals:
                if i + 1 == len(args):
                    sys.exit(f"Error: {arg}: expected a folder after it (the user's configs: regime/, measure/, ...)")
                value = args.pop(i + 1)
            del args[i]
            folder = Path(value.strip()).expanduser().resolve()
            if not folder.is_dir():
                sys.exit(f"Error: --config-dir {value}: no such folder (expected a folder of configs, such as "
                         "regime/pt1.yaml)")
            return folder
    return None


def not_a_report_setting(args: Sequence[str]) -> str | None:
    """The message for a setting the report does not take (`report regime=pt3`, for which Hydra
    would suggest `+regime=pt3`, which fails in turn), or None."""
    known = [f.name for f in fields(ReportConfig)]
    for arg in args:
        key = arg.partition("=")[0].lstrip("+~")
        if "=" in arg and not arg.startswith("-") and key.split(".")[0] not in (*known, "hydra"):
            return (f"Error: {key}: not a setting of the report; it takes {', '.join(known)} (data.root: the store "
                    "whose results to report); what a sweep computed is chosen with exclude=[...], or in the sweep")
    return None


def not_a_sweeper_setting(args: Sequence[str]) -> str | None:
    """The one-line message for a `hydra.sweeper.*` setting the cka sweeper does not have, or a
    value it cannot take (Hydra's are blocks of 6-7 lines, or a TypeError), or None."""
    from typing import get_args

    from hydra_plugins.cka_hydra_sweeper.config import CKASweeperConf

    if any(arg.startswith("hydra/sweeper=") and arg != "hydra/sweeper=cka" for arg in args):
        return None  # another sweeper, its own settings
    known = {f.name: f.type for f in fields(CKASweeperConf) if not f.name.startswith("_")}
    for arg in args:
        key, _, value = arg.lstrip("+~").partition("=")
        if not key.startswith("hydra.sweeper.") or arg.startswith("-"):
            continue
        name = key.removeprefix("hydra.sweeper.").split(".")[0]
        if name not in known:
            return f"Error: {key}: not a setting of the cka sweeper; it has: {', '.join(known)}"
        kinds = [kind for kind in (get_args(known[name]) or (known[name],)) if kind is not type(None)]
        if kinds[0] in (int, float) and value.lower() not in ("null", "none"):
            try:
                kinds[0](value)
            except ValueError:
                return (f"Error: {arg}: expected {'a whole number' if kinds[0] is int else 'a number'}"
                        f"{' or null' if type(None) in get_args(known[name]) else ''}")
    return None


# the report's list setting given without brackets
_BARE_LIST = re.compile(r"exclude=(?!\[).+")


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
    config_dir = take_config_dir(args)
    config_names = CONFIG_NAMES
    if config_dir is None:
        os.environ.pop(USER_CONFIG_DIR, None)
    else:
        os.environ[USER_CONFIG_DIR] = str(config_dir)
        try:  # before Hydra reads them: its errors for these files are tracebacks without a line
            for path in sorted(config_dir.glob("regime/*.yaml")):
                load_regime_file(path)
        except InputError as err:
            sys.exit(f"Error: {err}")
        config_names = (*CONFIG_NAMES, *sorted(p.stem for p in config_dir.glob("*.yaml") if p.stem not in CONFIG_NAMES))
    message = stray_word(args, config_names) or missing_extra(args) or not_a_sweeper_setting(args)
    if message:
        sys.exit(message)
    showing = any(flag in args for flag in ("--cfg", "-c", "--info", "-i", "--help", "-h", "--hydra-help"))
    if showing:  # show, not run: Hydra refuses --cfg and --info with -m
        args = [arg for arg in args if arg not in ("-m", "--multirun")]
    if not showing and "report" not in args:
        message = misplaced(Path.cwd(), args)
        if message:
            sys.exit(f"Error: {message}")
    task = main
    if "report" in args:  # a task of its own, with conf/report.yaml
        args.remove("report")
        task = report
        # exclude=pt2-7 or exclude=pt2-7,pt3-7: Hydra would read a string, or a sweep, not a list
        args = [f"exclude=[{arg.split('=', 1)[1]}]" if _BARE_LIST.fullmatch(arg) else arg for arg in args]
        message = not_a_report_setting(args)
        if message:
            sys.exit(message)
    sys.argv[1:] = hydra_argv(args, config_names)
    try:
        task()
    except KeyboardInterrupt:  # Ctrl-C before a sweep's own handling starts (or in a single run)
        sys.exit("Error: interrupted (results already written are kept; nothing half-written counts)")


if __name__ == "__main__":
    run()
