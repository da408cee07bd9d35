"""``kalla verify``: check a run against its manifest and replay it.

Checks, one line each, in this order:

1. ``manifest``  the manifest's own sha256 (``manifest_sha256``) matches its content;
2. ``recipe``    the recipe's sha256 matches the recorded recipe;
3. ``versions``  the Kalla and engine versions that made the run, against today's;
4. ``output X``  each output file is present and its rows match the recorded digest;
5. ``input X``   each input given (or, for a file source, found where the run read it)
                 holds the rows the run read: the same file, or the same digest;
6. ``re-run X``  the recipe re-run on those inputs gives outputs with the recorded digests.

The verdict is ``verified`` when every check holds, ``differs`` when the evidence does not
match itself or the re-run (a tampered manifest or recipe, a modified or missing output, a
re-run with other results), and ``cannot verify`` when what a replay needs is missing (an
input that changed, a database source that was not snapshotted, a table without a digest).
A different Kalla or engine version is reported and the digests are still compared.

What needs an engine (digests, staging an input, re-running the recipe) comes through a
``Replayer``, so this module holds only the rules; ``kalla.replay`` wires the pipeline.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from kalla.errors import EvidenceError, KallaError
from kalla.evidence.digest import ALGORITHM
from kalla.evidence.manifest import canonical_json, manifest_sha256
from kalla.evidence.output import MANIFEST
from kalla.hashing import sha256_file


class Verdict(StrEnum):
    VERIFIED = "verified"
    DIFFERS = "differs"
    CANNOT_VERIFY = "cannot verify"

    @property
    def exit_code(self) -> int:
        """``kalla verify``'s exit status: 0 verified, 8 differs, 9 cannot verify."""
        return {"verified": 0, "differs": 8, "cannot verify": 9}[self.value]


class Status(StrEnum):
    OK = "ok"
    DIFFERS = "differs"
    CANNOT_VERIFY = "cannot verify"
    NOTE = "note"  # worth knowing, decides nothing (another version, a rewritten file)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class Check(_Frozen):
    name: str  # "manifest", "recipe", "versions", "output matched", "input invoices", …
    status: Status
    detail: str


class VerifyReport(_Frozen):
    run_dir: str
    verdict: Verdict
    reasons: tuple[str, ...]  # why it differs / cannot be verified; empty when verified
    checks: tuple[Check, ...]
    recorded_versions: dict[str, str]
    current_versions: dict[str, str]

    def lines(self) -> list[str]:
        """The report as text: one line per check, then the verdict and its reasons."""
        width = max((len(c.name) for c in self.checks), default=0)
        out = [f"{c.name:<{width}}  {c.status.value:<13}  {c.detail}" for c in self.checks]
        out.append(f"verdict: {self.verdict.value}")
        out += [f"  - {reason}" for reason in self.reasons]
        return out


class Replayer(Protocol):
    """What verification needs from an engine and the pipeline."""

    def versions(self) -> Mapping[str, str]:
        """Today's versions, in the manifest's ``engine`` shape."""

    def digest(self, path: Path) -> str:
        """Hex content digest of a Parquet file (raises EvidenceError when it has none)."""

    def input_digest(self, alias: str, uri: str) -> str:
        """Stage ``uri`` as the run staged its input ``alias``; its hex content digest."""

    def rerun(self, manifest: Mapping[str, Any], inputs: Mapping[str, str]) -> Mapping[str, Any]:
        """Run the manifest's recipe on ``inputs`` (alias -> path or URI); the new manifest."""


def read_manifest(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST
    if not Path(run_dir).is_dir():
        raise EvidenceError(f"{run_dir} is not a directory: give the output directory of a run")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvidenceError(f"{run_dir} holds no {MANIFEST}: it is not a Kalla run") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvidenceError(f"{path} cannot be read as JSON: {exc}") from None
    missing = [k for k in ("recipe", "recipe_sha256", "inputs", "outputs") if k not in data]
    if not isinstance(data, dict) or missing:
        raise EvidenceError(f"{path} is not a Kalla run manifest (no {', '.join(missing)})")
    return data


def _rows(n: int) -> str:
    return f"{n:,} row" if n == 1 else f"{n:,} rows"


def _short(digest: str | None) -> str:
    return f"{digest[:12]}…" if digest else "none"


class _Verification:
    def __init__(self, run_dir: Path, manifest: dict[str, Any], replayer: Replayer) -> None:
        self.run_dir = run_dir
        self.manifest = manifest
        self.replayer = replayer
        self.checks: list[Check] = []
        self.differs: list[str] = []
        self.cannot: list[str] = []

    def add(self, name: str, status: Status, detail: str, reason: str | None = None) -> None:
        self.checks.append(Check(name=name, status=status, detail=detail))
        if status is Status.DIFFERS:
            self.differs.append(reason or f"{name}: {detail}")
        elif status is Status.CANNOT_VERIFY:
            self.cannot.append(reason or f"{name}: {detail}")

    # ---- 1-3: the manifest's own integrity -------------------------------------------

    def integrity(self) -> bool:
        """Manifest and recipe hashes; False when the recipe cannot be trusted."""
        recorded = self.manifest.get("manifest_sha256")
        if recorded is None:
            self.add("manifest", Status.NOTE, "records no manifest_sha256 (an older Kalla)")
        elif recorded == manifest_sha256(self.manifest):
            self.add("manifest", Status.OK, "its content matches its manifest_sha256")
        else:
            self.add(
                "manifest",
                Status.DIFFERS,
                "tampered: its content no longer matches its manifest_sha256",
                "the manifest was changed after the run (manifest_sha256 does not match)",
            )
        recipe_sha = hashlib.sha256(canonical_json(self.manifest["recipe"]).encode()).hexdigest()
        if recipe_sha == self.manifest["recipe_sha256"]:
            self.add("recipe", Status.OK, f"matches its recorded sha256 {_short(recipe_sha)}")
            return True
        self.add(
            "recipe",
            Status.DIFFERS,
            "tampered: the recorded recipe does not match its recipe_sha256",
            "the manifest's recipe was changed after the run (recipe_sha256 does not match)",
        )
        return False

    def versions(self) -> tuple[dict[str, str], dict[str, str]]:
        recorded = {str(k): str(v) for k, v in (self.manifest.get("engine") or {}).items()}
        current = {str(k): str(v) for k, v in self.replayer.versions().items()}
        shown = ", ".join(f"{k} {v}" for k, v in recorded.items()) or "none recorded"
        changed = [
            f"{k} {recorded.get(k, '?')} → {current.get(k, '?')}"
            for k in sorted(set(recorded) | set(current))
            if recorded.get(k) != current.get(k)
        ]
        if changed:
            self.add(
                "versions",
                Status.NOTE,
                f"made with {shown}; verifying with another version ({'; '.join(changed)}): "
                "digests are compared all the same",
            )
        else:
            self.add("versions", Status.OK, f"made with {shown}, the same as now")
        return recorded, current

    def algorithm(self) -> bool:
        algorithm = self.manifest.get("digest_algorithm")
        if algorithm == ALGORITHM:
            return True
        detail = (
            "the run records no content digests (made with KALLA_CONTENT_DIGESTS=false, "
            "or by a Kalla before digests)"
            if algorithm is None
            else f"the run's digests are {algorithm}; this Kalla computes {ALGORITHM}"
        )
        self.add("digests", Status.CANNOT_VERIFY, detail)
        return False

    # ---- 4: outputs ---------------------------------------------------------------------

    def outputs(self) -> None:
        for name, entry in self.manifest["outputs"].items():
            check = f"output {name}"
            path = self.run_dir / str(entry.get("file", f"{name}.parquet"))
            recorded = entry.get("digest")
            rows = _rows(entry.get("rows", 0))
            if not path.is_file():
                self.add(check, Status.DIFFERS, f"missing: {path.name} is not in the run directory")
                continue
            if sha256_file(path) == entry.get("sha256"):
                self.add(check, Status.OK, f"{rows}; the same file as written (sha256)")
                continue
            if recorded is None:
                why = entry.get("digest_error", "no digest recorded")
                self.add(check, Status.DIFFERS, f"the file changed and has no digest ({why})")
                continue
            try:
                found = self.replayer.digest(path)
            except EvidenceError as exc:
                self.add(check, Status.DIFFERS, f"modified: {exc.message}")
                continue
            if found == recorded:
                self.add(check, Status.OK, f"{rows}; the same rows in a rewritten file (digest)")
            else:
                self.add(
                    check,
                    Status.DIFFERS,
                    f"modified: its rows do not match the recorded digest "
                    f"(recorded {_short(recorded)}, found {_short(found)})",
                    f"output '{name}' was modified after the run",
                )

    # ---- 5: inputs ----------------------------------------------------------------------

    def inputs(self, given: Mapping[str, str]) -> dict[str, str] | None:
        """alias -> what to re-run on, or None when an input is missing or changed."""
        resolved: dict[str, str] = {}
        for entry in self.manifest["inputs"]:
            alias = str(entry.get("alias"))
            check = f"input {alias}"
            fingerprint = entry.get("fingerprint") or {}
            uri = given.get(alias)
            if uri is None and fingerprint.get("kind") == "file":
                uri = str(entry.get("uri") or "")
                if uri and "://" not in uri and not Path(uri).is_file():
                    self.add(
                        check,
                        Status.CANNOT_VERIFY,
                        f"the file the run read ({uri}) is gone: give --source {alias}=PATH",
                        f"input '{alias}' is not available",
                    )
                    continue
            if not uri:
                self.add(
                    check,
                    Status.CANNOT_VERIFY,
                    f"a database source that was not snapshotted ({entry.get('uri', '')}): "
                    f"give its data as the run read it with --source {alias}=FILE",
                    f"input '{alias}' is a database source that was not snapshotted",
                )
                continue
            if self.same_input(check, alias, uri, entry, fingerprint):
                resolved[alias] = uri
        return resolved if len(resolved) == len(self.manifest["inputs"]) else None

    def same_input(
        self, check: str, alias: str, uri: str, entry: Mapping[str, Any], fingerprint: Any
    ) -> bool:
        local = Path(uri)
        if (
            "://" not in uri
            and fingerprint.get("kind") == "file"
            and local.is_file()
            and sha256_file(local) == fingerprint.get("sha256")
        ):
            self.add(check, Status.OK, f"{uri}: the same file the run read (sha256)")
            return True
        recorded = entry.get("digest")
        if recorded is None:
            why = entry.get("digest_error", "the run recorded no digest for it")
            self.add(check, Status.CANNOT_VERIFY, f"{uri}: cannot compare ({why})")
            return False
        try:
            found = self.replayer.input_digest(alias, uri)
        except KallaError as exc:
            self.add(
                check,
                Status.CANNOT_VERIFY,
                f"{uri}: cannot be read: {exc.message}",
                f"input '{alias}' cannot be read",
            )
            return False
        if found == recorded:
            self.add(check, Status.OK, f"{uri}: the same rows the run read (digest)")
            return True
        self.add(
            check,
            Status.CANNOT_VERIFY,
            f"{uri}: changed since the run: its rows do not match the recorded digest "
            f"(recorded {_short(recorded)}, found {_short(found)})",
            f"input '{alias}' changed since the run",
        )
        return False

    # ---- 6: the re-run ------------------------------------------------------------------

    def rerun(self, inputs: Mapping[str, str]) -> None:
        try:
            replayed = self.replayer.rerun(self.manifest, inputs)
        except KallaError as exc:
            self.add("re-run", Status.CANNOT_VERIFY, f"failed: {exc.message}")
            return
        recorded = self.manifest["outputs"]
        produced = replayed.get("outputs", {})
        for name in [*recorded, *(n for n in produced if n not in recorded)]:
            check = f"re-run {name}"
            old, new = recorded.get(name), produced.get(name)
            if old is None or new is None:
                only = "the re-run" if old is None else "the run"
                self.add(check, Status.DIFFERS, f"only {only} wrote it")
                continue
            rows = _rows(new.get("rows", 0))
            if old.get("digest") is None or new.get("digest") is None:
                why = old.get("digest_error") or new.get("digest_error") or "no digest"
                self.add(check, Status.CANNOT_VERIFY, f"cannot compare: {why}")
            elif old["digest"] == new["digest"]:
                same_file = (
                    " and the same file (sha256)" if old.get("sha256") == new.get("sha256") else ""
                )
                self.add(check, Status.OK, f"{rows}; the recorded digest{same_file}")
            else:
                self.add(
                    check,
                    Status.DIFFERS,
                    f"other rows: {old.get('rows', 0):,} recorded, {new.get('rows', 0):,} now; "
                    f"digest recorded {_short(old['digest'])}, now {_short(new['digest'])}",
                    f"re-running the recipe gives another '{name}'",
                )


def verify(run_dir: Path, given: Mapping[str, str], replayer: Replayer) -> VerifyReport:
    """Check a run directory against its manifest and replay it (module docstring)."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    aliases = [str(entry.get("alias")) for entry in manifest["inputs"]]
    unknown = [a for a in given if a not in aliases]
    if unknown:
        raise EvidenceError(
            f"--source names an input the run does not have: {', '.join(unknown)}; "
            f"its inputs are: {', '.join(aliases)}"
        )
    v = _Verification(run_dir, manifest, replayer)
    recipe_ok = v.integrity()
    recorded, current = v.versions()
    if v.algorithm():
        v.outputs()
        inputs = v.inputs(given)
        if recipe_ok and inputs is not None:
            v.rerun(inputs)
        elif recipe_ok:
            v.add("re-run", Status.NOTE, "not attempted: an input is missing or changed")
        else:
            v.add("re-run", Status.NOTE, "not attempted: the recorded recipe was tampered with")
    if v.differs:
        verdict, reasons = Verdict.DIFFERS, v.differs + v.cannot
    elif v.cannot:
        verdict, reasons = Verdict.CANNOT_VERIFY, v.cannot
    else:
        verdict, reasons = Verdict.VERIFIED, []
    if verdict is not Verdict.VERIFIED and recorded != current:
        reasons.append("the run was made with another Kalla or engine version (see 'versions')")
    return VerifyReport(
        run_dir=str(run_dir),
        verdict=verdict,
        reasons=tuple(dict.fromkeys(reasons)),
        checks=tuple(v.checks),
        recorded_versions=recorded,
        current_versions=current,
    )
