"""Write a run into a temp dir next to the target and rename it into place.

A reader therefore sees either the previous complete run or the new complete run, never
half of one; a failed run leaves the target as it was.

Before any work, ``check_output_target`` refuses a target that would be written into or
over an input (the same path, a directory holding an input, a path inside one; symlinks
resolved), one that holds the staging or working directory, and an ``--overwrite`` of
anything but an earlier run's output directory.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from kalla.errors import OutputError

# The files a run writes, by name (each "<name>.parquet"); the manifest is written last.
OUTPUT_NAMES = ("matched", "unmatched_left", "unmatched_right", "ambiguous")
MANIFEST = "manifest.json"


def _forms(path: Path) -> set[Path]:
    """``path`` made absolute as written and with every symlink resolved: an input reached
    through a link is protected under both names."""
    absolute = Path(os.path.abspath(path))
    try:
        return {absolute, absolute.resolve()}
    except (OSError, RuntimeError, ValueError):  # a loop, a NUL: the name as written it is
        return {absolute}


def input_clashes(target: Path, inputs: Iterable[tuple[str, Path]]) -> list[str]:
    """Why writing ``target`` would touch one of ``inputs`` (``(what, path)`` pairs, e.g.
    ``("source 'payments'", Path("pay.csv"))``): the same file, a directory that holds it,
    or a path inside it. Empty when it would not."""
    problems = []
    targets = _forms(target)
    for what, path in inputs:
        for found in _forms(path):
            if found in targets:
                problems.append(f"the output {target} is the input of {what} ({path})")
            elif any(found.is_relative_to(t) for t in targets):
                problems.append(
                    f"the output directory {target} holds the input of {what} ({path}): "
                    "the run would be written over it"
                )
            elif any(t.is_relative_to(found) for t in targets):
                problems.append(f"the output {target} lies inside the input of {what} ({path})")
            else:
                continue
            break
    return problems


def output_target_problems(
    target: Path,
    inputs: Iterable[tuple[str, Path]],
    *,
    overwrite: bool,
    keep: Iterable[tuple[str, Path]] = (),
) -> list[str]:
    """Every reason ``target`` may not receive a run's outputs: it clashes with an input,
    it is (or holds) one of the directories in ``keep`` (the staging directory, the working
    directory), or ``overwrite`` would replace something that is not an earlier run."""
    problems = input_clashes(target, inputs)
    targets = _forms(target)
    for what, path in keep:
        if any(f == t or f.is_relative_to(t) for f in _forms(path) for t in targets):
            problems.append(f"the output directory {target} is or holds {what} ({path})")
    if overwrite and not problems and target.exists():
        if not target.is_dir():
            problems.append(
                f"{target} is a file, not a run's output directory; --overwrite only "
                "replaces an earlier run's outputs"
            )
        elif any(target.iterdir()) and not (target / MANIFEST).is_file():
            problems.append(
                f"{target} is not an earlier run's output directory (it has no {MANIFEST}); "
                "--overwrite only replaces an earlier run's outputs"
            )
    return problems


def check_output_target(
    target: Path,
    inputs: Iterable[tuple[str, Path]],
    *,
    overwrite: bool,
    keep: Iterable[tuple[str, Path]] = (),
) -> None:
    """``output_target_problems`` as an OutputError naming every problem (before any work)."""
    problems = output_target_problems(target, inputs, overwrite=overwrite, keep=keep)
    if len(problems) == 1:
        raise OutputError(f"{problems[0]}; choose an output directory of its own")
    if problems:
        raise OutputError(
            f"refusing to write the run's outputs to {target}; choose an output directory "
            "of its own",
            problems=problems,
        )


class AtomicOutputDir:
    """``with AtomicOutputDir(target) as tmp: write into tmp`` → renamed to target on success."""

    def __init__(self, target: Path, *, overwrite: bool = False) -> None:
        self.target = Path(target)
        self.overwrite = overwrite
        self.tmp = self.target.parent / f".{self.target.name}.tmp-{uuid.uuid4().hex[:12]}"

    def __enter__(self) -> Path:
        exists = self.target.exists()
        if (
            exists
            and not self.overwrite
            and (not self.target.is_dir() or any(self.target.iterdir()))
        ):
            raise OutputError(
                f"output directory {self.target} already exists and is not empty; "
                "choose another, or pass --overwrite to replace it"
            )
        try:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            self.tmp.mkdir()
        except OSError as exc:
            raise OutputError(
                f"cannot create output directory {self.target}: {exc.strerror}"
            ) from None
        return self.tmp

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        old = None
        if not self.overwrite and self.target.exists() and any(self.target.iterdir()):
            # another run finished into the same target meanwhile: never replace it silently
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise OutputError(
                f"output directory {self.target} was written by another run meanwhile; "
                "this run's outputs were discarded"
            )
        if self.target.exists():
            old = self.target.parent / f".{self.target.name}.old-{uuid.uuid4().hex[:12]}"
            os.rename(self.target, old)
        try:
            os.rename(self.tmp, self.target)
        except OSError as error:
            if old is not None:
                os.rename(old, self.target)
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise OutputError(f"cannot move outputs into {self.target}: {error.strerror}") from None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
