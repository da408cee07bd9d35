"""Helpful lookups: "did you mean …?" for names a user typed."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def _fold(name: str) -> str:
    return "".join(ch for ch in name.casefold() if ch.isalnum())


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate most like ``name``: same letters ignoring case/spacing first, then fuzzy."""
    options = list(dict.fromkeys(candidates))
    folded = _fold(name)
    for option in options:
        if _fold(option) == folded:
            return option
    by_fold = {_fold(o): o for o in options}
    match = difflib.get_close_matches(folded, list(by_fold), n=1, cutoff=0.6)
    return by_fold[match[0]] if match else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` or an empty string when nothing is close."""
    best = closest(name, candidates)
    return f" (did you mean '{best}'?)" if best is not None else ""
