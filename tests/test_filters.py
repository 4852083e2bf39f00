import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cka_hydra.errors import InputError
from cka_hydra.filters import city_field, city_id, parse_filter

DEFAULT = r"region:^(?!Atlantis).* && city_id:^[1-9][0-9]{3,}$"

CITIES = [
    {"row_id": 1500, "name": "Paris", "country": "France", "region": "Europe"},
    {"row_id": 999, "name": "Lyon", "country": "France", "region": "Europe"},
    {"row_id": 4000, "name": "Atlantis City", "country": "Atlantis", "region": "Atlantis"},
    {"row_id": 7, "city_id": 2100, "name": "Tokyo", "country": "Japan", "region": "Asia"},
    {"row_id": 3000, "name": "Nowhere", "country": "Peru", "region": None},
    {"row_id": 12000, "name": "Atlantic Town", "country": "Canada", "region": "North America"},
]


def kept_names(text):
    return [CITIES[i]["name"] for i in parse_filter(text).select(CITIES)]


def test_default_filter_drops_atlantis_and_ids_below_1000():
    assert kept_names(DEFAULT) == ["Paris", "Tokyo", "Nowhere", "Atlantic Town"]


def test_city_id_prefers_city_id_over_row_id_and_reads_as_string():
    assert city_id(CITIES[3]) == "2100"
    assert city_id(CITIES[0]) == "1500"
    assert city_id({"name": "no id"}) == ""


def test_region_falls_back_to_country():
    assert city_field(CITIES[4], "region") == "Peru"
    assert kept_names("region:^Peru") == ["Nowhere"]


def test_regex_matches_at_start_only():
    assert kept_names("name:Paris") == ["Paris"]
    assert kept_names("name:aris") == []  # re.match, not re.search
    assert kept_names("name:.*aris") == ["Paris"]


def test_and_binds_tighter_than_or():
    # (country France && id>=1000) || region Asia
    text = "country:France && city_id:^[1-9][0-9]{3,}$ || region:Asia"
    assert kept_names(text) == ["Paris", "Tokyo"]
    assert kept_names("region:Asia || country:France && name:Lyon") == ["Lyon", "Tokyo"]


def test_any_city_info_key_is_a_field():
    assert kept_names("country:^(Japan|Canada)$") == ["Tokyo", "Atlantic Town"]


@pytest.mark.parametrize("text", [None, "", "   "])
def test_empty_filter_keeps_everything(text):
    assert len(parse_filter(text).select(CITIES)) == len(CITIES)


def test_unknown_field_is_named():
    with pytest.raises(InputError, match=r"unknown field 'regoin'.*region"):
        parse_filter("regoin:^Europe").select(CITIES)


def test_invalid_regex_is_named():
    with pytest.raises(InputError, match=r"invalid regex '\(' for field 'name'"):
        parse_filter("region:^Europe && name:(")


@pytest.mark.parametrize("text", ["Europe", "region:x && ", ":abc"])
def test_malformed_term(text):
    with pytest.raises(InputError, match="not of the form field:regex"):
        parse_filter(text)


def test_whitespace_around_a_regex_is_ignored():
    """`region: ^Asia` (a space after the colon) kept nothing before: the regex ' ^Asia' cannot match."""
    assert kept_names("region:^Europe || region: ^Asia ") == kept_names("region:^Europe||region:^Asia")
    assert kept_names("region: ^Asia") == ["Tokyo"]
    assert kept_names("name:Atlantis[ ]City") == ["Atlantis City"]  # a space inside a regex stays


def test_a_term_that_keeps_no_city_is_named():
    other = [{"row_id": 1, "region": "Africa"}]
    city_filter = parse_filter("region:^Europe || region: ^Asai && name:T || region:^Africa")
    assert city_filter.dead_terms(CITIES, other) == ["region:^Asai"]
    assert city_filter.dead_terms(CITIES) == ["region:^Asai", "region:^Africa"]
    assert parse_filter(None).dead_terms(CITIES) == []


REGIONS = st.sampled_from(["Europe", "Asia", "Atlantis", "", None, "South America"])
CITY = st.fixed_dictionaries({"row_id": st.integers(0, 20000), "region": REGIONS, "country": REGIONS},
                             optional={"city_id": st.integers(0, 20000) | st.text(max_size=5)})
FILTERS = st.sampled_from([DEFAULT, "region:^E || city_id:^1", "region:^(?!Asia) && country:^$ || city_id:[0-9]$",
                           "city_id:^2 && region:.*a$", None, "region:^Atlantis"])


@settings(max_examples=200, deadline=None)
@given(st.lists(CITY, min_size=1, max_size=30), FILTERS)
def test_the_vectorised_filter_keeps_what_each_term_city_by_city_keeps(cities, text):
    """The filter runs each regex once per distinct value of its field; the cities it keeps are
    those the grammar's definition keeps, city by city (docs/store.md, "City filter")."""
    city_filter = parse_filter(text)
    expected = [i for i, city in enumerate(cities)
                if not city_filter.alternatives
                or any(all(term.pattern.match(city_field(city, term.field)) for term in conjunction)
                       for conjunction in city_filter.alternatives)]
    assert city_filter.select(cities) == expected
