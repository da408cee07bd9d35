"""Run uploads: multipart parsed as it streams in, each file written straight to disk.

Nothing is buffered whole in memory or spooled elsewhere first; a file over the size cap
stops the upload with 413 as soon as the cap is crossed, and whatever was written is removed.
A body that ends before its closing boundary (a client or proxy that cut the upload short) is
refused with 400 naming the file it cut, never taken as a shorter file. The file itself is
only ever parsed in a child process (``check_upload_schema``).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from kalla.app.errors import BadRequestError, IncompleteUploadError
from kalla.connectors.base import check_expected_columns
from kalla.connectors.format import FileFormat
from kalla.connectors.registry import FILE_EXTENSIONS
from kalla.errors import KallaError, PayloadTooLargeError, SourceError
from kalla.runner.probe import source_columns
from kalla.settings import Settings, format_size

MAX_FIELD_BYTES = 64 * 1024
MAX_PARTS = 16
_ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class SavedFile:
    alias: str
    path: Path
    filename: str
    size: int = 0


@dataclass
class RunForm:
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, SavedFile] = field(default_factory=dict)


class _Receiver:
    """python-multipart callbacks → fields in memory (small) and files on disk (capped)."""

    def __init__(self, dest: Path, max_file_bytes: int) -> None:
        self.dest = dest
        self.max_file_bytes = max_file_bytes
        self.form = RunForm()
        self.parts = 0
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name = ""
        self._file: SavedFile | None = None
        self._handle: IO[bytes] | None = None
        self._value = bytearray()
        self.ended = False  # the closing boundary was read
        self.last: SavedFile | None = None  # the file part read last (or being read)

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self.part_begin,
            "on_header_field": self.header_field,
            "on_header_value": self.header_value,
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.part_data,
            "on_part_end": self.part_end,
            "on_end": self.end,
        }

    def part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise BadRequestError(f"too many parts in the upload (at most {MAX_PARTS})")
        self._headers = {}
        self._file = None
        self._value = bytearray()

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field = b""
        self._header_value = b""

    def headers_finished(self) -> None:
        disposition, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if disposition != b"form-data" or not name:
            raise BadRequestError(
                "every multipart part needs Content-Disposition: form-data; name="
            )
        self._name = name
        if b"filename" not in options:
            return
        filename = options[b"filename"].decode("utf-8", "replace")
        if not _ALIAS.match(name):
            raise BadRequestError(
                f"file field '{name[:80]}' must be named after a file source's alias"
            )
        if name in self.form.files:
            raise BadRequestError(f"more than one file uploaded for source '{name}'")
        ext = Path(filename).suffix.lower()
        if ext not in FILE_EXTENSIONS:
            shown = f"'{ext}'" if ext else "no extension"
            raise BadRequestError(
                f"upload for source '{name}' ({filename[:120]}) has an unsupported file type "
                f"({shown}); supported: {', '.join(FILE_EXTENSIONS)}"
            )
        self.dest.mkdir(parents=True, exist_ok=True)
        path = self.dest / f"{name}{ext}"
        self._file = self.last = SavedFile(alias=name, path=path, filename=filename)
        self._handle = open(path, "wb")  # noqa: SIM115 - closed in part_end / close()
        self.form.files[name] = self._file

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None and self._handle is not None:
            self._file.size += end - start
            if self._file.size > self.max_file_bytes:
                raise PayloadTooLargeError(
                    f"upload for source '{self._file.alias}' is larger than the "
                    f"{format_size(self.max_file_bytes)} limit (KALLA_MAX_UPLOAD_SIZE)"
                )
            self._handle.write(data[start:end])
        else:
            self._value += data[start:end]
            if len(self._value) > MAX_FIELD_BYTES:
                raise BadRequestError(f"form field '{self._name[:80]}' is too long")

    def part_end(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        elif self._file is None:
            self.form.fields[self._name] = self._value.decode("utf-8", "replace")

    def end(self) -> None:
        self.ended = True

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def truncated(self) -> IncompleteUploadError:
        """The error for a body that ended before its closing boundary, naming the file."""
        last = self.last
        if last is None:
            return IncompleteUploadError(
                "the upload was cut off: the multipart body ends before its closing boundary; "
                "send it again"
            )
        named = f"source '{last.alias}' ({last.filename[:120]})"
        if self._handle is not None:  # inside the file
            return IncompleteUploadError(
                f"upload for {named} was cut off after {format_size(last.size)}: the "
                "multipart body ends before its closing boundary; send it again"
            )
        return IncompleteUploadError(
            f"the upload was cut off after the file for {named}: the multipart body ends "
            "before its closing boundary; send it again"
        )


async def receive_form(request: Request, dest: Path, *, max_file_bytes: int) -> RunForm:
    """Parse a ``multipart/form-data`` request, files into ``dest``; removes ``dest`` on error."""
    content_type = request.headers.get("content-type", "")
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise BadRequestError("multipart request without a boundary in its Content-Type")
    budget = max_file_bytes * 2 + MAX_PARTS * MAX_FIELD_BYTES
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > budget:
        raise PayloadTooLargeError(
            f"upload of {format_size(int(length))} is larger than the limit for a run "
            f"(two files of at most {format_size(max_file_bytes)}, KALLA_MAX_UPLOAD_SIZE)"
        )
    receiver = _Receiver(dest, max_file_bytes)
    try:
        parser = MultipartParser(boundary, receiver.callbacks())  # type: ignore[arg-type]
        async for chunk in request.stream():
            if chunk:
                parser.write(chunk)
        parser.finalize()
        if not receiver.ended:
            raise receiver.truncated()
    except KallaError:
        receiver.close()
        shutil.rmtree(dest, ignore_errors=True)
        raise
    except Exception as exc:  # a malformed body
        receiver.close()
        shutil.rmtree(dest, ignore_errors=True)
        raise BadRequestError(f"malformed multipart body: {type(exc).__name__}") from None
    receiver.close()
    return receiver.form


def check_upload_schema(
    saved: SavedFile,
    expected: list[str] | None,
    settings: Settings,
    fmt: FileFormat | None = None,
) -> None:
    """The uploaded file, read with the recipe's ``format`` for its source, has every column
    the recipe's ``schema`` names (extra ones are fine).

    The file is read in a child process capped like a job's: a file built to crash or
    exhaust its reader (an XLSX claiming a cell at XFD1048576) fails this upload, not the app.
    """
    label = f"upload for source '{saved.alias}' ({saved.filename})"
    try:
        columns = source_columns(
            str(saved.path),
            alias=saved.alias,
            settings=settings,
            what="the process reading it",
            fmt=fmt,
        )
    except KallaError as exc:
        raise SourceError(f"{label}: {exc.message}") from None
    except Exception as exc:
        raise SourceError(f"{label} cannot be read: {type(exc).__name__}") from None
    if expected:
        check_expected_columns(columns, expected, alias=saved.alias, uri=saved.filename)
