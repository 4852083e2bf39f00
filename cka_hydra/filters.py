"""The city filter: which rows of a representation take part in a comparison.

Grammar, as in the research group's configs:

    filter := conjunction ("||" conjunction)*
    conjunction := term ("&&" term)*
    term := field ":" regex

`||` binds more loosely than `&&`. A term holds when `re.match(regex, value)` succeeds,
i.e. the regex matches at the start of the field's string value. Whitespace around
terms, fields and regexes is ignored (`region: ^Asia` is `region:^Asia`; write a space that
belongs to a regex's start or end as `[ ]`); a regex cannot itself contain `&&` or `||`.

Fields are the keys of a city's `city_info` entry, plus two derived ones:
`city_id` (the entry's `city_id`, else its `row_id`) and `region` (the entry's
`region`, else its `country`). An empty or null filter keeps every city.
"""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cka_hydra.errors import FilterError

City = Mapping[str, Any]

# the study's filter, the default: no city of the held-out region, ids of 4 digits or more
STUDY_FILTER = "region:^(?!Atlantis).* && city_id:^[1-9][0-9]{3,}$"


def city_id(city: City) -> str:
    """A city's id as a string: `city_id` if the entry has one, else `row_id`."""
    value = city.get("city_id", city.get("row_id"))
    return "" if value is None else str(value)


def id_kinds(cities: Sequence[City]) -> frozenset[str]:
    """Which ids a city list identifies its cities by: `city_id`, `row_id`, or both. Two lists
    identified by different kinds cannot be matched: a row number is no city's id."""
    return frozenset("city_id" if "city_id" in city else "row_id" for city in cities)


def city_field(city: City, field: str) -> str:
    """The string value a filter term tests; missing values read as ''."""
    if field == "city_id":
        return city_id(city)
    if field == "region":
        value = city.get("region") or city.get("country")
    else:
        value = city.get(field)
    return "" if value is None else str(value)


@dataclass(frozen=True)
class Term:
    field: str
    pattern: re.Pattern[str]

    @property
    def text(self) -> str:
        return f"{self.field}:{self.pattern.pattern}"

    def holds(self, city: City) -> bool:
        return self.pattern.match(city_field(city, self.field)) is not None

    def matches(self, values: np.ndarray) -> np.ndarray:
        """Whether the term holds for each of a field's values: the regex runs once per distinct value."""
        if not len(values):
            return np.zeros(0, dtype=bool)
        distinct, inverse = np.unique(values, return_inverse=True)
        return np.array([self.pattern.match(value) is not None for value in distinct])[inverse]


@dataclass(frozen=True)
class CityFilter:
    """A parsed filter: a disjunction of conjunctions of terms."""

    text: str
    alternatives: tuple[tuple[Term, ...], ...]
    setting: str = field(default="city_filter", compare=False)  # the setting it came from, for messages

    @property
    def canonical(self) -> str:
        """The filter in one spelling: terms as `field:regex`, joined by ` && ` and ` || `."""
        return " || ".join(" && ".join(term.text for term in conjunction) for conjunction in self.alternatives)

    @property
    def fields(self) -> set[str]:
        return {term.field for conjunction in self.alternatives for term in conjunction}

    def select(self, cities: Sequence[City]) -> list[int]:
        """Indices of the cities the filter keeps, in order (mask)."""
        return np.flatnonzero(self.mask(cities)).tolist()

    def mask(self, cities: Sequence[City]) -> np.ndarray:
        """Which cities the filter keeps, as booleans. Vectorised over the list: each term's regex
        runs once per distinct value of its field (a region's once, not once per city).

        Raises FilterError when a field is known to no city, so that a typo does not
        silently drop every row.
        """
        known = {"city_id", "region"}.union(*(city.keys() for city in cities))
        unknown = sorted(self.fields - known)
        if unknown:
            raise FilterError(
                f"{self.setting}: unknown field {', '.join(map(repr, unknown))}; "
                f"city_info has: {', '.join(sorted(known))}"
            )
        kept = np.zeros(len(cities), dtype=bool) if self.alternatives else np.ones(len(cities), dtype=bool)
        columns: dict[str, np.ndarray] = {}
        for conjunction in self.alternatives:
            holds = np.ones(len(cities), dtype=bool)
            for term in conjunction:
                if term.field not in columns:
                    columns[term.field] = np.array([city_field(city, term.field) for city in cities], dtype=object)
                holds &= term.matches(columns[term.field])
            kept |= holds
        return kept

    def dead_terms(self, *city_lists: Sequence[City]) -> list[str]:
        """The terms that hold for no city of any of the lists: almost always a typo (`region:^Asai`)
        that silently narrows an `||` or empties an `&&`."""
        terms = dict.fromkeys(term for conjunction in self.alternatives for term in conjunction)
        return [term.text for term in terms
                if not any(term.holds(city) for cities in city_lists for city in cities)]


# a single & or | between spaces: meant as && or ||, not as a character of the regex
_LONE_OPERATOR = re.compile(r"\s[&|]\s")


def parse_filter(text: str | None, setting: str = "city_filter") -> CityFilter:
    """Parse a filter expression, the value of `setting`; raises FilterError naming the bad term."""
    if text is None or not text.strip():
        return CityFilter(text or "", (), setting)
    alternatives = []
    for conjunction in text.split("||"):
        terms = []
        for raw in conjunction.split("&&"):
            term = raw.strip()
            field, sep, regex = term.partition(":")
            field, regex = field.strip(), regex.strip()
            lone = _LONE_OPERATOR.search(regex)
            if lone:
                raise FilterError(f"{setting}: {lone.group().strip()!r} in term {term!r} joins nothing: terms are "
                                  f"joined by && and || (in {text!r})")
            if not sep or not field:
                raise FilterError(
                    f"{setting}: term {term!r} is not of the form field:regex "
                    f"(in {text!r})"
                )
            try:
                pattern = re.compile(regex)
            except re.error as err:
                raise FilterError(
                    f"{setting}: invalid regex {regex!r} for field {field!r}: {err}"
                ) from None
            terms.append(Term(field, pattern))
        alternatives.append(tuple(terms))
    return CityFilter(text, tuple(alternatives), setting)
