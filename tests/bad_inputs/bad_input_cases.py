"""The corpus' loader: every ``[[case]]`` of ``cases/*.toml`` becomes one ``Case``.

A case holds its inputs (text, or a builder from ``bad_input_builders``), its recipe (the
default one below, changed by ``match_sql``/``left``/``right``, or replaced by
``recipe_text``), its entry point (``cli``, ``app`` or ``worker``) and what must happen
(``[case.expect]``). See README.md for every key.
"""

from __future__ import annotations

import copy
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from bad_input_builders import sql_text

HERE = Path(__file__).parent
CASES = HERE / "cases"
ENTRIES = ("cli", "app", "worker")
MARKS = ("postgres", "slow")

# The recipe most cases share: invoices ``l`` (key ``id``) against payments ``r`` (key
# ``rid``, reference ``ref``), amounts within a cent.
DEFAULT_RECIPE: dict[str, Any] = {
    "recipe_id": "bad-inputs",
    "name": "bad inputs",
    "match_sql": (
        "SELECT l.id, r.rid FROM l JOIN r ON l.id = r.ref "
        "AND tolerance_match(l.amount, r.amount, 0.01)"
    ),
    "sources": {
        "left": {"alias": "l", "type": "file", "primary_key": ["id"]},
        "right": {"alias": "r", "type": "file", "primary_key": ["rid"]},
    },
}
DEFAULT_FILES = {
    "left.csv": "id,amount\nA1,10.00\nA2,20.00\nA3,30.00\n",
    "right.csv": "rid,ref,amount\nP1,A1,10.00\nP2,A2,20.00\nP9,ZZ,99.00\n",
}
EXPECT_KEYS = {
    "exit",
    "status",
    "run_status",
    "message",
    "not_message",
    "counts",
    "matched",
    "seconds",
    "absent",
    "xfail",
}


@dataclass(frozen=True)
class Expect:
    exit: int | None = None  # cli: the exit code
    status: int | None = None  # app/worker: the HTTP status of the submission
    run_status: str | None = None  # app/worker: the run's final status (completed/failed)
    message: tuple[str, ...] = ()  # substrings (any case) the error must contain
    not_message: tuple[str, ...] = ()  # substrings it must not contain
    counts: dict[str, int] | None = None  # matched / unmatched_left / unmatched_right
    matched: tuple[tuple[str, str], ...] | None = None  # (left key, right key) pairs
    seconds: float = 60.0  # answer within this long, or fail
    absent: tuple[str, ...] = ()  # paths that must not exist afterwards (escapes)
    xfail: str = ""

    @property
    def succeeds(self) -> bool:
        return self.counts is not None or self.matched is not None


@dataclass(frozen=True)
class Case:
    area: str
    id: str
    about: str
    entry: str
    files: dict[str, Any]
    recipe: dict[str, Any] | None  # None: ``recipe_text`` is the recipe file, verbatim
    recipe_text: str | None
    sources: dict[str, str]  # alias -> file name (cli --source, app upload, worker uri)
    expect: Expect
    issue: bool = False  # one of issue 14's own cases
    marks: tuple[str, ...] = ()
    output: str = "out"  # cli: -o, relative to the case folder ("inputs" = the input folder)
    overwrite: bool = False
    env: dict[str, str] = field(default_factory=dict)
    request: dict[str, Any] = field(default_factory=dict)  # app/worker: a raw request
    pg: tuple[str, ...] = ()  # statements run in a fresh PostgreSQL database ("{pg}" in URIs)

    @property
    def name(self) -> str:
        return f"{self.area}/{self.id}"


def _recipe(raw: dict[str, Any]) -> dict[str, Any] | None:
    if "recipe_text" in raw:
        return None
    recipe = copy.deepcopy(DEFAULT_RECIPE)
    if "recipe" in raw:
        recipe = raw["recipe"]
    if "match_sql" in raw:
        sql = raw["match_sql"]
        recipe["match_sql"] = sql_text(**sql) if isinstance(sql, dict) else sql
    for side in ("left", "right"):
        recipe["sources"][side].update(raw.get(side, {}))
    recipe.update(raw.get("recipe_extra", {}))
    return {k: v for k, v in recipe.items() if v != "__delete__"}


def _sources(raw: dict[str, Any], files: dict[str, Any]) -> dict[str, str]:
    if "sources" in raw:
        return dict(raw["sources"])
    names = list(files)
    left = next((n for n in names if n.startswith("left")), "left.csv")
    right = next((n for n in names if n.startswith("right")), "right.csv")
    return {"l": left, "r": right}


def _case(area: str, raw: dict[str, Any]) -> Case:
    unknown = set(raw.get("expect", {})) - EXPECT_KEYS
    if unknown:
        raise ValueError(f"{area}/{raw.get('id')}: unknown expect key(s) {sorted(unknown)}")
    entry = raw.get("entry", "cli")
    if entry not in ENTRIES:
        raise ValueError(f"{area}/{raw['id']}: entry must be one of {ENTRIES}, not {entry}")
    files = {**DEFAULT_FILES, **raw.get("files", {})} if raw.get("default_files", True) else {}
    files.update(raw.get("files", {}))
    files = {name: spec for name, spec in files.items() if spec != ""}  # "" removes a default
    e = raw.get("expect", {})
    expect = Expect(
        exit=e.get("exit"),
        status=e.get("status"),
        run_status=e.get("run_status"),
        message=tuple(e.get("message", ())),
        not_message=tuple(e.get("not_message", ())),
        counts=e.get("counts"),
        matched=tuple(tuple(p) for p in e["matched"]) if "matched" in e else None,
        seconds=float(e.get("seconds", 60.0)),
        absent=tuple(e.get("absent", ())),
        xfail=e.get("xfail", ""),
    )
    marks = tuple(raw.get("marks", ("postgres",) if raw.get("pg") else ()))
    assert set(marks) <= set(MARKS), f"{area}/{raw['id']}: marks must be among {MARKS}"
    return Case(
        area=area,
        id=raw["id"],
        about=raw.get("about", ""),
        entry=entry,
        files=files,
        recipe=_recipe(raw),
        recipe_text=raw.get("recipe_text"),
        sources=_sources(raw, files),
        expect=expect,
        issue=bool(raw.get("issue", False)),
        marks=marks,
        output=raw.get("output", "out"),
        overwrite=bool(raw.get("overwrite", False)),
        env=dict(raw.get("env", {})),
        request=dict(raw.get("request", {})),
        pg=tuple(raw.get("pg", ())),
    )


def load_cases() -> list[Case]:
    cases: list[Case] = []
    for path in sorted(CASES.glob("*.toml")):
        with path.open("rb") as f:
            manifest = tomllib.load(f)
        cases += [_case(path.stem, raw) for raw in manifest.get("case", [])]
    names = [c.name for c in cases]
    duplicates = {n for n in names if names.count(n) > 1}
    assert not duplicates, f"duplicate case ids: {sorted(duplicates)}"
    return cases


def params(cases: list[Case]) -> list[Any]:
    """One pytest param per case, with its markers and its strict xfail."""
    out = []
    for case in cases:
        marks: list[Any] = [getattr(pytest.mark, m) for m in case.marks]
        if case.expect.xfail:
            marks.append(pytest.mark.xfail(reason=case.expect.xfail, strict=True))
        out.append(pytest.param(case, id=case.name, marks=marks))
    return out


def recipe_bytes(case: Case) -> bytes:
    if case.recipe_text is not None:
        return case.recipe_text.encode()
    return json.dumps(case.recipe).encode()
