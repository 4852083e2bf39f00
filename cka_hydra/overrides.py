"""The command line's words as Hydra must see them: what the CLI, the sweeper and the Python API
all pass to Hydra's override grammar."""
import re
from collections.abc import Sequence


# Hydra's override grammar reads `layer=5` and `pair=1_2` as the integers 5 and 12, and
# refuses an integer as a config group choice: quote these groups' plain values.
_NUMERIC_GROUP = re.compile(r"(?P<key>[+~]?(?:pair|seed_pair|layer))=(?P<values>\w+(?:,\w+)*)")


# Named configs of conf/ that may be given as a bare word: `python -m cka_hydra -m sweep`; a
# user's --config-dir adds the primary configs at its top (`-m my_study` for my_study.yaml).
CONFIG_NAMES = ("sweep",)


def hydra_argv(args: Sequence[str], config_names: Sequence[str] = CONFIG_NAMES) -> list[str]:
    """The command line as Hydra must see it.

    `sweep` -> `--config-name=sweep`; `pair=1_2` -> `pair='1_2'`; `layer=3,6` -> `layer='3','6'`.
    """
    out = []
    for arg in args:
        key, equals, value = arg.partition("=")
        if equals and not arg.startswith("-"):  # 'layer=5 ' (a stray space inside the quotes) is layer=5
            arg = f"{key.strip()}={value.strip()}"
        match = _NUMERIC_GROUP.fullmatch(arg)
        if arg in config_names:
            arg = f"--config-name={arg}"
        elif match:
            arg = match["key"] + "=" + ",".join(f"'{value}'" for value in match["values"].split(","))
        out.append(arg)
    return out
