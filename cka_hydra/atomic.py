"""Writing files so that a killed process never leaves one half-written; the one CSV writer."""

import csv
import io
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING

from cka_hydra.errors import CannotWrite

if TYPE_CHECKING:
    import pandas as pd


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` (same suffix) to write to; renamed onto `path` on success.
    A write the file system refuses (disk full, read-only) raises CannotWrite naming `path`."""
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        raise CannotWrite(f"{path}: cannot write it ({err.strerror or err})") from None
    finally:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)


def write_atomic(path: Path, text: str | bytes) -> None:
    with atomic_path(path) as tmp:
        if isinstance(text, bytes):
            tmp.write_bytes(text)
        else:
            tmp.write_text(text)


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence]) -> bytes:
    """Write a CSV file atomically and return its bytes. Floats keep every digit (repr);
    NaN and None are written as empty fields."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([_cell(value) for value in row] for row in rows)
    data = out.getvalue().encode()
    write_atomic(path, data)
    return data


def write_table(path: Path, table: "pd.DataFrame") -> bytes:
    """write_csv for a pandas DataFrame, without its index."""
    return write_csv(path, list(table.columns), table.itertuples(index=False, name=None))


def _cell(value: object) -> object:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
