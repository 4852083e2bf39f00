"""Reading the representation store our users already have (see docs/store.md).

    <root>/<instance dir>/analysis_higher/<task>_firstcity_last_and_trans_l<L>/representations/
        checkpoint-<step>/representations.pt   torch.save'd dict of tensors
        checkpoint-<step>/metadata.json        with `city_info`, one entry per row

Knows files, not Hydra and not CKA. Imports torch only to read a tensor: the sweeper's process
lists checkpoints with this module and never needs it.
"""

from __future__ import annotations

import difflib
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import orjson

from cka_hydra.errors import InputError
from cka_hydra.pairs import ORIGINAL_SEED, instance_name

if TYPE_CHECKING:
    import torch

REPRESENTATIONS_FILE = "representations.pt"
METADATA_FILE = "metadata.json"
_CHECKPOINT_DIR = re.compile(r"checkpoint-(\d+)")


@dataclass(frozen=True)
class Layout:
    """Where an instance's representations live below the store root.

    Each template is a Python format string with the placeholders PLACEHOLDERS names ({model}:
    the model's name, `pt2-1`; {index}: its index, 1, for a regime that reads another's folders);
    `folders` names the instances whose folder is elsewhere (`pt1-5_seed2` -> `revision/exp4/pt1-5_seed3`).
    """

    PLACEHOLDERS: ClassVar[dict[str, set[str]]] = {
        "original_dir": {"model", "index"}, "seed_dir": {"model", "index", "seed"},
        "representations_dir": {"task", "layer"}}

    original_dir: str
    seed_dir: str
    representations_dir: str
    folders: Mapping[str, str] = field(default_factory=dict)

    def instance_dir(self, model: str, seed: str) -> str:
        """An instance's folder below the store root."""
        stand_in = self.folders.get(instance_name(model, seed))
        if stand_in is not None:
            return stand_in.strip("/")
        index = model.rpartition("-")[2]  # pairs.model_name: <regime>-<index>
        if seed == ORIGINAL_SEED:
            return self.original_dir.format(model=model, index=index)
        return self.seed_dir.format(model=model, index=index, seed=seed)

    def representations_path(self, root: Path, model: str, seed: str, task: str, layer: int) -> Path:
        return root / self.instance_dir(model, seed) / self.representations_dir.format(task=task, layer=layer)


class MissingFolder(InputError):
    """An instance's representation folder that is not there: its instance's fault when some jobs
    of a sweep fail for it, the regime's templates' when all do."""


def list_checkpoints(representations_dir: Path) -> dict[int, Path]:
    """Complete checkpoints by step (checkpoint_folders)."""
    found, _ = checkpoint_folders(representations_dir)
    if not found:
        raise InputError(
            f"no checkpoints in {representations_dir}: expected checkpoint-<step>/ folders "
            f"holding both {REPRESENTATIONS_FILE} and {METADATA_FILE}, neither empty"
        )
    return found


def checkpoint_folders(representations_dir: Path) -> tuple[dict[int, Path], list[int]]:
    """The complete checkpoints by step, and the steps of folders still being written: a folder
    missing either file, or holding an empty one."""
    if not representations_dir.is_dir():
        raise MissingFolder(f"no representation folder at {representations_dir}"
                            f"{_nearest_existing(representations_dir)}")
    found, writing = {}, []
    try:
        for child in representations_dir.iterdir():
            match = _CHECKPOINT_DIR.fullmatch(child.name)
            if not match:
                continue
            if _written(child / REPRESENTATIONS_FILE) and _written(child / METADATA_FILE):
                found[int(match.group(1))] = child
            else:
                writing.append(int(match.group(1)))
    except OSError as err:  # not readable by this user
        raise InputError(f"{representations_dir}: cannot list it ({err.strerror or err})") from None
    return dict(sorted(found.items())), sorted(writing)


def _written(path: Path) -> bool:
    """A file that exists and is not an empty regular file: an empty one is still being written."""
    try:
        info = path.stat()
    except OSError:
        return False
    return info.st_size > 0 or not stat.S_ISREG(info.st_mode)


@dataclass
class Reads:
    """What this process has read from the store: files, and their bytes (the tensor a job uses
    and the city list), as a job's summary reports them."""

    files: int = 0
    bytes: int = 0

    def add(self, nbytes: int) -> None:
        self.files += 1
        self.bytes += nbytes


READS = Reads()


def file_stamp(path: Path) -> tuple[int, int, int]:
    """A file's inode, size and modification time (ns): it changes when the file is replaced or
    rewritten. (-1, -1, -1) for a file that cannot be read: its reader says what is wrong."""
    try:
        info = path.stat()
    except OSError:
        return (-1, -1, -1)
    return (info.st_ino, info.st_size, info.st_mtime_ns)


def file_stamps(root: Path, folders: Sequence[Path]) -> dict[str, list[int]]:
    """The identity of each checkpoint file of the folders: path below root -> [size, modification
    time in ns]. A file replaced in place, truncated or rewritten changes it; moving the whole
    store (`mv`) does not."""
    stamps = {}
    for folder in folders:
        for name in (REPRESENTATIONS_FILE, METADATA_FILE):
            path = folder / name
            try:
                info = path.stat()
            except OSError as err:
                raise InputError(f"{path}: cannot read it ({err.strerror or err})") from None
            stamps[path.relative_to(root).as_posix()] = [info.st_size, info.st_mtime_ns]
    return stamps


def changed_files(root: Path, stamps: Mapping[str, Sequence[int]]) -> list[str]:
    """The files of stamps (file_stamps) that are missing below root now, or not the same."""
    changed = []
    for name, (size, mtime_ns) in stamps.items():
        try:
            info = (root / name).stat()
        except OSError:
            changed.append(name)
            continue
        if (info.st_size, info.st_mtime_ns) != (size, mtime_ns):
            changed.append(name)
    return changed


def _nearest_existing(path: Path) -> str:
    """Point the user at the deepest folder that does exist, and what it holds."""
    for parent in path.parents:
        if parent.is_dir():
            children = sorted(child.name for child in parent.iterdir())
            missing = path.relative_to(parent).parts[0]
            close = difflib.get_close_matches(missing, children, n=12, cutoff=0)  # the likeliest first
            shown = ", ".join(close) + (f", ... ({len(children)} in all)" if len(children) > 12 else "")
            return f" ({parent} exists and holds: {shown or 'nothing'})"
    return ""


def load_cities(path: Path) -> list[dict[str, Any]]:
    """A checkpoint folder's city list, one entry per row of its representation matrix."""
    return parse_cities(read_metadata(path), path / METADATA_FILE)


def read_metadata(path: Path) -> bytes:
    """A checkpoint folder's metadata.json, as bytes."""
    metadata_file = path / METADATA_FILE
    try:
        return metadata_file.read_bytes()
    except OSError as err:
        raise InputError(f"{metadata_file}: expected JSON with a 'city_info' list ({err!r})") from None


def parse_cities(data: bytes, metadata_file: Path) -> list[dict[str, Any]]:
    """The city list (`city_info`) of a metadata.json's bytes."""
    try:
        cities = orjson.loads(data)["city_info"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as err:
        raise InputError(f"{metadata_file}: expected JSON with a 'city_info' list ({err!r})") from None
    if not isinstance(cities, list) or not set(map(type, cities)) <= {dict}:  # orjson makes dicts, nothing derived
        raise InputError(f"{metadata_file}: 'city_info' must be a list of objects")
    return cities


def load_matrix(path: Path, n_cities: int) -> torch.Tensor:
    """A checkpoint folder's flat representation matrix, (n_cities, features), checked against
    the number of cities its metadata lists."""
    import torch

    tensor_file = path / REPRESENTATIONS_FILE
    try:
        # weights_only: a data file must not be able to run code; mmap: read only the tensor we use
        data = torch.load(tensor_file, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # torch raises many types for a file that is not its format
        raise InputError(f"{tensor_file}: not a readable torch.save file ({_unreadable(tensor_file, err)})") from None
    matrix = _flat_matrix(data, tensor_file)
    if matrix.shape[0] != n_cities:
        raise InputError(f"{tensor_file}: {matrix.shape[0]} rows but {path / METADATA_FILE} lists {n_cities} cities")
    return matrix


def _unreadable(tensor_file: Path, err: Exception) -> str:
    """Why torch could not load a file. For a file that is no zip archive at all (truncated, or
    another format), torch's own message advises re-saving it for mmap, which misleads."""
    try:
        with open(tensor_file, "rb") as f:
            if f.read(4) != b"PK\x03\x04":
                return "not a zip archive as torch.save writes: truncated, or another format"
    except OSError:
        pass
    return f"{type(err).__name__}: {(str(err).splitlines() or [''])[0]}"


def _flat_matrix(data: Any, tensor_file: Path) -> torch.Tensor:
    import torch

    expected = "a dict with a 'representations_flat' or 'representations' tensor"
    if not isinstance(data, Mapping):
        raise InputError(f"{tensor_file}: expected {expected}, got {type(data).__name__}")
    if isinstance(data.get("representations_flat"), torch.Tensor):
        matrix = data["representations_flat"]
    elif isinstance(data.get("representations"), torch.Tensor):
        matrix = data["representations"]
    else:
        raise InputError(f"{tensor_file}: expected {expected}, found keys {sorted(map(str, data))}")
    if matrix.dim() < 2 or not matrix.is_floating_point():
        raise InputError(
            f"{tensor_file}: expected a floating-point tensor of shape (n_cities, ...), "
            f"got {matrix.dtype} of shape {tuple(matrix.shape)}"
        )
    return matrix.reshape(matrix.shape[0], -1)


def check_id_kinds(kinds_a: frozenset[str], kinds_b: frozenset[str], where_a: str, where_b: str) -> None:
    """Refuse to match two city lists whose ids are of different kinds (filters.id_kinds): one
    side's `city_id`s against the other's row numbers would pair unrelated cities."""
    if kinds_a != kinds_b:
        def words(kinds: frozenset[str]) -> str:
            return " and ".join(sorted(kinds)) or "no id"

        raise InputError(f"{where_a} identifies its cities by {words(kinds_a)}, {where_b} by {words(kinds_b)}: "
                         "ids of different kinds cannot be matched (give both files city_id, or neither)")


def common_rows(
    ids_a: Sequence[str], ids_b: Sequence[str], where_a: str, where_b: str
) -> tuple[list[int], list[int]]:
    """Row indices of the ids both sides have, paired by id, in the first side's order."""
    index_b = _unique_index(ids_b, where_b)
    _unique_index(ids_a, where_a)
    rows_a = [i for i, key in enumerate(ids_a) if key in index_b]
    return rows_a, [index_b[ids_a[i]] for i in rows_a]


def _unique_index(ids: Sequence[str], where: str) -> dict[str, int]:
    index: dict[str, int] = {}
    for row, key in enumerate(ids):
        if key in index:
            raise InputError(f"{where}: city id {key!r} appears in rows {index[key]} and {row}; ids must be unique")
        index[key] = row
    return index
