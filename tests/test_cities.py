"""City lists cost once per distinct content: a file whose bytes from its city_info on are a parsed
file's is that file's list without parsing, and only when that is sure."""

import json

import pytest

from cka_hydra import cities
from cka_hydra.errors import InputError
from cka_hydra.filters import parse_filter

LIST = [{"row_id": i, "name": f"City {i}", "region": "Europe" if i % 2 else "Asia"} for i in range(1000, 1040)]


@pytest.fixture(autouse=True)
def parses(monkeypatch):
    """The files this test's process parses (cka_hydra.cities forgets what it knew)."""
    cities.clear()
    parsed = []
    real = cities.parse_cities
    monkeypatch.setattr(cities, "parse_cities", lambda data, path: parsed.append(path.parent.name) or real(data, path))
    yield parsed
    cities.clear()


def write(folder, text):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metadata.json").write_text(text)
    return folder


def test_the_checkpoints_of_a_run_are_parsed_once(tmp_path, parses):
    folders = [write(tmp_path / f"checkpoint-{step}", json.dumps({"step": step, "checkpoint_path": f"c-{step}",
                                                                  "city_info": LIST, "x_train_mean": 1.5}))
               for step in (0, 7813, 15626)]
    kept = [cities.kept_cities(folder, parse_filter("region:^Eu")) for folder in folders]
    assert parses == ["checkpoint-0"]
    assert all(k.ids.tolist() == [str(c["row_id"]) for c in LIST if c["region"] == "Europe"] for k in kept)
    assert cities.city_list(folders[2]).cities == LIST


def test_a_list_that_differs_or_a_file_that_is_no_json_is_read_for_what_it_is(tmp_path, parses):
    first = write(tmp_path / "a", json.dumps({"step": 0, "city_info": LIST}))
    tail = (first / "metadata.json").read_text().split('"city_info"', 1)[1]
    cities.city_list(first)
    reordered = write(tmp_path / "b", json.dumps({"step": 1, "city_info": LIST[::-1]}))
    assert cities.city_list(reordered).cities == LIST[::-1]
    # the same bytes from "city_info" on, after bytes that open no object: no JSON, refused
    broken = write(tmp_path / "c", '{"step": 2, "note": ["city_info"' + tail)
    with pytest.raises(InputError, match=r"c/metadata.json: expected JSON with a 'city_info' list"):
        cities.city_list(broken)
    # "city_info" as a value before the key: the key's list is read, not mistaken for the value's
    decoy = write(tmp_path / "d", json.dumps({"note": "city_info", "city_info": LIST[:3]}))
    assert cities.city_list(decoy).cities == LIST[:3]
    # indented, as json.dump(indent=2) writes it
    indented = write(tmp_path / "e", json.dumps({"step": 3, "city_info": LIST}, indent=2))
    again = write(tmp_path / "f", json.dumps({"step": 4, "checkpoint_path": "x", "city_info": LIST}, indent=2))
    assert cities.city_list(indented).cities == cities.city_list(again).cities == LIST
    assert parses == ["a", "b", "c", "d", "e"]
