"""The one vocabulary of conditions: which there are and what each is called, per language.

A condition is an id a rule row names (`freezing`, or a site's own `damp`); the built-in ones
have titles in English and Swedish here, and a row may give any condition its titles
(`title: {en: Damp cellar, sv: Fukt i källaren}`). The case titles, the web pages' lists and
the command line's choices all come from a `Vocabulary` — never from a list of their own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from stream.kinds import DECIDED_BY, SYSTEM, TITLES, is_threshold

__all__ = ["BUILT_IN", "DECIDED_BY", "LANGUAGES", "SYSTEM", "Vocabulary", "is_threshold"]

#: The languages titles are kept in (the web pages' languages).
LANGUAGES = ("en", "sv")

#: Titles of the conditions husvakt knows without a config: those the rule kinds decide
#: (`stream.kinds`), and those the engine raises about itself.
BUILT_IN: Mapping[str, Mapping[str, str]] = {
    **TITLES,
    "gateway_clock": {"en": "Gateway clock wrong", "sv": "Gatewayns klocka går fel"},
    "stream_lag": {
        "en": "Alarms delayed: the rule engine is behind",
        "sv": "Larm försenade: regelmotorn ligger efter",
    },
}


class Vocabulary:
    """The built-in conditions and those a config's rule rows name, with their titles (a
    row's `title` overrides a built-in one, language by language)."""

    def __init__(self, rows: Iterable[object] = ()) -> None:
        self._titles: dict[str, dict[str, str]] = {c: dict(t) for c, t in BUILT_IN.items()}
        self._rates: set[str] = set()
        self._durations: set[str] = set()
        for row in rows:
            condition = getattr(row, "condition", None)
            if not isinstance(condition, str):
                continue
            if getattr(row, "rate", None) is not None:
                self._rates.add(condition)
            if getattr(row, "meter", None) == "stopped":
                self._durations.add(condition)
            titles = self._titles.setdefault(condition, {})
            title = getattr(row, "title", None)
            if isinstance(title, Mapping):
                titles.update({str(k): str(v) for k, v in title.items()})

    def names(self) -> list[str]:
        """Every condition: the built-in ones first, then the config's in the order named."""
        return list(self._titles)

    def __contains__(self, condition: object) -> bool:
        return condition in self._titles

    def is_rate(self, condition: str) -> bool:
        """Whether the condition's value is a rate (its unit per minute)."""
        return condition == "heat_rise" or condition in self._rates

    def is_duration(self, condition: str) -> bool:
        """Whether the condition's value is a time in seconds (a meter standing still)."""
        return condition in self._durations

    def is_threshold(self, condition: str) -> bool:
        """Whether the condition's alarms are a value past a level (not a rate of a site's own,
        nor a built-in kind of its own)."""
        return is_threshold(condition) and condition not in self._rates

    def title(self, condition: str, language: str = "en") -> str:
        """What a person reads for `condition` in `language`: its title there, else in
        English, else any; a condition nobody titled reads as its id in words."""
        titles = self._titles.get(condition, {})
        found = titles.get(language) or titles.get("en") or next(iter(titles.values()), None)
        return found or condition.replace("_", " ").replace("-", " ").capitalize()

    def titles(self, language: str) -> dict[str, str]:
        """Every condition's title in `language` (asked for one it does not know — an old
        case's, say — it answers with that condition's id in words)."""
        return _Titles(self, language, {c: self.title(c, language) for c in self._titles})


class _Titles(dict[str, str]):
    def __init__(self, vocabulary: Vocabulary, language: str, titles: dict[str, str]) -> None:
        super().__init__(titles)
        self._vocabulary, self._language = vocabulary, language

    def __missing__(self, condition: str) -> str:
        return self._vocabulary.title(condition, self._language)
