import json
from pathlib import Path

import pytest
import torch
from conftest import representations_dir, save_checkpoint

from cka_hydra.errors import InputError
from cka_hydra.store import Layout, common_rows, list_checkpoints, load_cities, load_matrix

PT2 = Layout("{model}", "revision/exp2/{model}_seed{seed}",
             "analysis_higher/{task}_firstcity_last_and_trans_l{layer}/representations")


def cities(ids):
    return [{"row_id": i, "name": f"c{i}", "x": 0, "y": 0, "country": "A", "region": "B"} for i in ids]


def test_layout_matches_the_store_format():
    root = Path("/data")
    assert PT2.representations_path(root, "pt2-1", "orig", "distance", 5) == representations_dir(
        root, "pt2-1", "distance", 5)
    assert PT2.representations_path(root, "pt2-2", "1", "angle", 3) == representations_dir(
        root, "revision/exp2/pt2-2_seed1", "angle", 3)


def test_lists_only_complete_checkpoints(tmp_path):
    for step in (0, 7813, 15626):
        save_checkpoint(tmp_path / f"checkpoint-{step}", {"representations_flat": torch.zeros(2, 2)}, cities([1, 2]))
    (tmp_path / "checkpoint-15626" / "metadata.json").unlink()  # still being written
    (tmp_path / "checkpoint-99").mkdir()  # empty
    (tmp_path / "pca").mkdir()  # not a checkpoint
    (tmp_path / "checkpoint-x").mkdir()
    found = list_checkpoints(tmp_path)
    assert list(found) == [0, 7813]
    assert found[7813] == tmp_path / "checkpoint-7813"


def test_missing_folder_names_it_and_what_exists(tmp_path):
    (tmp_path / "pt2-1" / "analysis_higher" / "distance_firstcity_last_and_trans_l3").mkdir(parents=True)
    missing = PT2.representations_path(tmp_path, "pt2-1", "orig", "distance", 5)
    with pytest.raises(InputError, match=r"no representation folder at .*_l5/representations .*holds: distance_firstcity_last_and_trans_l3"):
        list_checkpoints(missing)


def test_folder_without_checkpoints(tmp_path):
    (tmp_path / "checkpoint-0").mkdir()
    with pytest.raises(InputError, match="no checkpoints in"):
        list_checkpoints(tmp_path)


def test_prefers_the_flat_tensor(tmp_path):
    flat = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    save_checkpoint(tmp_path, {"representations": torch.zeros(3, 2, 1, 2), "representations_flat": flat,
                               "input_ids": torch.zeros(3, 5, dtype=torch.long), "step": 5, "layers": [5]}, cities([1, 2, 3]))
    assert torch.equal(load_matrix(tmp_path, 3), flat)
    assert [c["row_id"] for c in load_cities(tmp_path)] == [1, 2, 3]


@pytest.mark.parametrize("shape", [(3, 2, 1, 4), (3, 2, 4)])
def test_reshapes_the_representations_tensor_when_flat_is_absent(tmp_path, shape):
    full = torch.randn(*shape)
    save_checkpoint(tmp_path, {"representations": full, "step": 0}, cities([1, 2, 3]))
    matrix = load_matrix(tmp_path, 3)
    assert matrix.shape == (3, 8)
    assert torch.equal(matrix, full.reshape(3, -1))


@pytest.mark.parametrize(
    "content, message",
    [
        ([1, 2, 3], "expected a dict .* got list"),
        ({"input_ids": torch.zeros(3, 2)}, r"found keys \['input_ids'\]"),
        ({"representations": torch.zeros(3, dtype=torch.long)}, "floating-point tensor"),
        ({"representations_flat": torch.zeros(4, 2)}, "4 rows but .* lists 3 cities"),
    ],
)
def test_unexpected_content_is_named(tmp_path, content, message):
    save_checkpoint(tmp_path, content, cities([1, 2, 3]))
    with pytest.raises(InputError, match=message):
        load_matrix(tmp_path, 3)


def test_not_a_torch_file(tmp_path):
    save_checkpoint(tmp_path, {}, cities([1]))
    (tmp_path / "representations.pt").write_text("not a tensor file")
    with pytest.raises(InputError, match=r"representations.pt: not a readable torch.save file"):
        load_matrix(tmp_path, 1)


class Payload:
    """Any class: a full unpickle would import and build it; weights_only must refuse."""


def test_refuses_to_unpickle_arbitrary_objects(tmp_path):
    save_checkpoint(tmp_path, {"representations_flat": torch.zeros(1, 1), "extra": Payload()}, cities([1]))
    with pytest.raises(InputError, match="not a readable torch.save file"):
        load_matrix(tmp_path, 1)


def test_bad_metadata(tmp_path):
    save_checkpoint(tmp_path, {"representations_flat": torch.zeros(1, 1)}, cities([1]))
    (tmp_path / "metadata.json").write_text(json.dumps({"step": 0}))
    with pytest.raises(InputError, match="metadata.json: expected JSON with a 'city_info' list"):
        load_cities(tmp_path)


def test_common_rows_pairs_cities_by_id_whatever_the_order():
    rows_a, rows_b = common_rows(["5", "1", "9", "3"], ["3", "7", "5", "1"], "a", "b")
    assert rows_a == [0, 1, 3]
    assert rows_b == [2, 3, 0]


def test_duplicate_ids_are_an_error():
    with pytest.raises(InputError, match="city id '3' appears in rows 0 and 2"):
        common_rows(["1"], ["3", "1", "3"], "a", "b")
