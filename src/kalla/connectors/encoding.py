"""A text file's encoding, from its content unless the recipe's format names it.

Detected: a byte order mark (UTF-8, UTF-16 LE/BE, UTF-32 LE/BE); UTF-16 without one (every
other byte NUL); else UTF-8 when the first MiB decodes as UTF-8 (or holds UTF-8 text beside
bytes that are not: a damaged file, whose bad rows are named); else Windows-1252 (what
Excel saves as "CSV" on Western Windows), or Latin-1 when a byte that Windows-1252 leaves
undefined appears. A file whose first MiB is plain ASCII is UTF-8 until a later byte says
otherwise: ``TextSource`` then turns to Windows-1252 (``fallback``); one whose first MiB
holds UTF-8 text stays UTF-8, and a later invalid byte is an error naming its row.

``TextSource`` hands pyarrow the file as UTF-8: it skips the byte order mark, transcodes
any other encoding (Python's codecs, in blocks), counts quote characters on the way (an odd
count means a quoted field that never closes, checked after parsing) and reports progress.
"""

from __future__ import annotations

import codecs
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kalla.connectors.base import Progress

HEAD = 1 << 20  # bytes read to detect the encoding and the dialect
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_CP1252_UNDEFINED = frozenset(b"\x81\x8d\x8f\x90\x9d")


@dataclass(frozen=True)
class Encoding:
    """How a file's bytes become text."""

    name: str  # Python codec name
    bom: int = 0  # bytes of byte order mark to skip
    given: bool = False  # named by the recipe's format, not detected
    ascii_head: bool = False  # detected as UTF-8 on a head without any non-ASCII byte

    @property
    def is_utf8(self) -> bool:
        return self.name == "utf-8"

    @property
    def shown(self) -> str:
        return {"cp1252": "Windows-1252", "latin-1": "Latin-1", "iso8859-1": "Latin-1"}.get(
            self.name, self.name.upper()
        )

    def fallback(self) -> Encoding | None:
        """What to read the file as when a byte past the head is not UTF-8: Windows-1252,
        for a file detected as UTF-8 only because its head was plain ASCII."""
        if self.is_utf8 and self.ascii_head and not self.given:
            return Encoding("cp1252")
        return None


def detect(head: bytes, given: str | None = None) -> Encoding:
    """The encoding of a file that starts with ``head`` (see the module doc)."""
    for bom, name in _BOMS:
        fits = given is None or codecs.lookup(given).name in (name, name[:-3])
        if head.startswith(bom) and fits:
            return Encoding(name, bom=len(bom), given=given is not None)
    if given is not None:
        name = codecs.lookup(given).name
        if name in ("utf-16", "utf-32"):  # no BOM: the byte order from the NULs, else LE
            name = _nul_pattern(head, name) or f"{name}-le"
        return Encoding(name, given=True)
    wide = _nul_pattern(head, "utf-16")
    if wide is not None:
        return Encoding(wide)
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        text = head.decode("utf-8", errors="replace")
        if any(ord(c) > 0x7F and c != "\ufffd" for c in text):
            # UTF-8 text with some bytes that are not: a damaged file, whose bad rows
            # are named, rather than UTF-8 read as Windows-1252 in silence
            return Encoding("utf-8")
        if _CP1252_UNDEFINED & set(head):
            return Encoding("latin-1")
        return Encoding("cp1252")
    return Encoding("utf-8", ascii_head=head.isascii())


def _nul_pattern(head: bytes, family: str) -> str | None:
    """``utf-16-le``/``-be`` when every other byte is NUL, as in UTF-16 text that is mostly
    ASCII; None otherwise."""
    sample = head[: 64 << 10]
    if len(sample) < 4:
        return None
    even, odd = sample[0::2], sample[1::2]
    even_nul = even.count(0) / len(even)
    odd_nul = odd.count(0) / len(odd)
    if odd_nul > 0.4 and even_nul < 0.05:
        return f"{family}-le"
    if even_nul > 0.4 and odd_nul < 0.05:
        return f"{family}-be"
    return None


def read_head(path: Path, size: int = HEAD) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(size)


def decode_head(head: bytes, encoding: Encoding) -> str:
    """The head as text, without its byte order mark or a character cut at its end."""
    decoder = codecs.getincrementaldecoder(encoding.name)(errors="replace")
    return decoder.decode(head[encoding.bom :], final=False)


class TextSource(io.RawIOBase):
    """The file as UTF-8 bytes for pyarrow (module doc); counts ``quote`` characters."""

    def __init__(
        self,
        path: Path,
        encoding: Encoding,
        *,
        quote: str | None = '"',
        progress: Progress | None = None,
        share: float = 1.0,
    ) -> None:
        self._raw = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._raw.seek(encoding.bom)
        self._size = max(path.stat().st_size, 1)
        self._decoder = None if encoding.is_utf8 else codecs.getincrementaldecoder(encoding.name)()
        self._pending = b""
        self._quote = quote.encode("utf-8") if quote else None
        self.quotes = 0
        self._progress = progress
        self._share = share
        self._done = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)
        data = self._next(len(view))
        view[: len(data)] = data
        return len(data)

    def read(self, n: int = -1) -> bytes:
        return self._next(n if n >= 0 else 1 << 30)

    def _next(self, n: int) -> bytes:
        if self._decoder is None:
            data = self._raw.read(n)
            self._advance(len(data))
        else:
            while len(self._pending) < n:
                raw = self._raw.read(max(n // 2, 1 << 16))
                self._advance(len(raw))
                text = self._decoder.decode(raw, final=not raw)
                self._pending += text.encode("utf-8")
                if not raw:
                    break
            data, self._pending = self._pending[:n], self._pending[n:]
        if self._quote is not None:
            self.quotes += data.count(self._quote)
        return data

    def _advance(self, count: int) -> None:
        self._done += count
        if self._progress is not None:
            self._progress(self._share * self._done / self._size)

    def close(self) -> None:
        self._raw.close()
        super().close()
