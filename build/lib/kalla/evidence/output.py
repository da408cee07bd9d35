"""Write a run into a temp dir next to the target and rename it into place.

A reader therefore sees either the previous complete run or the new complete run, never
half of one; a failed run leaves the target as it was.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from types import TracebackType

from kalla.errors import OutputError

# The files a run writes, by name (each "<name>.parquet"); the manifest is written last.
OUTPUT_NAMES = ("matched", "unmatched_left", "unmatched_right", "ambiguous")
MANIFEST = "manifest.json"


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
