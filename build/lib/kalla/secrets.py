"""Secrets in source URIs: the one place that masks them, resolves them and scrubs text.

A URI carries a secret in two places: the password of its user info
(``postgres://app:PASSWORD@db/ledger``) and a secret query parameter (``?password=…``,
``?token=…``; ``SECRET_PARAMS``). Written as an ``${ENV_NAME}`` placeholder, a secret is
resolved from the environment only where the source is read (``resolve_env``) and is safe to
store and show as written. Written literally, it is masked (``***``) in everything Kalla
stores or returns (``redact_uri``, ``redact_recipe``), and the user is told to write a
placeholder instead (``literal_secret_warnings``). ``Scrubber`` and ``scrub`` mask secrets in
free text (a driver's error, a traceback) before it is logged or sent anywhere.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, unquote_plus, urlsplit, urlunsplit

from kalla.errors import SourceError

MASK = "***"

# Query parameters whose values are secrets wherever they appear in a URI.
SECRET_PARAMS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "secret",
        "token",
        "access_token",
        "api_key",
        "apikey",
        "aws_secret_access_key",
        "secret_access_key",
        "sslpassword",
        "x-amz-signature",
        "x-amz-security-token",
        "x-amz-credential",
        "sig",
        "signature",
    }
)
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

# ``scheme://user:secret@`` and ``?password=secret`` anywhere in a text.
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)([^@\s/]+)@")
_BARE_USERINFO = re.compile(r"([^\s:/@]*:)([^@\s/:]+)@")
_SECRET_QUERY = re.compile(
    r"([?&](?:" + "|".join(re.escape(p) for p in sorted(SECRET_PARAMS)) + r")=)([^&\s#\"']+)",
    re.IGNORECASE,
)


def is_placeholder(text: str) -> bool:
    """Whether ``text`` is exactly one ``${ENV_NAME}`` reference (percent-encoded or not)."""
    return ENV_REF.fullmatch(unquote(text)) is not None


def _shown_as_written(value: str) -> bool:
    """An empty secret, a placeholder or one already masked reveals nothing."""
    return value in ("", MASK) or is_placeholder(value)


def _split_userinfo(netloc: str) -> tuple[str, str | None, str] | None:
    """``(user, password or None, host:port)`` of a netloc with user info, else None."""
    if "@" not in netloc:
        return None
    userinfo, _, hostport = netloc.rpartition("@")
    user, sep, password = userinfo.partition(":")
    return user, (password if sep else None), hostport


def _query_pairs(query: str) -> Iterator[tuple[str, str, str]]:
    """``(raw piece, decoded name, decoded value)`` for each ``name=value`` of a query."""
    for piece in query.split("&"):
        name, _, value = piece.partition("=")
        yield piece, unquote_plus(name).lower(), unquote_plus(value)


def redact_uri(uri: str) -> str:
    """The URI with every literal secret replaced by ``***``: safe to log, store and show.

    ``postgres://app:s3cret@db/ledger?table=t`` → ``postgres://app:***@db/ledger?table=t``;
    secret query parameters (``?password=…``) are masked too. ``${ENV_NAME}`` placeholders
    and everything else are kept exactly as written. Text that does not parse as a URI is
    masked whole when it has an ``@``; other text without ``//`` is returned unchanged but
    for a ``name:secret@`` in it.
    """
    try:
        parts = urlsplit(uri)
    except ValueError:
        return MASK if "@" in uri else uri
    if not parts.netloc and "@" in uri:  # no //: mask any ``name:secret@`` it holds
        return _BARE_USERINFO.sub(_mask_userinfo, uri)
    netloc = parts.netloc
    userinfo = _split_userinfo(netloc)
    if userinfo is not None:
        user, password, hostport = userinfo
        if password is not None and not _shown_as_written(password):
            netloc = f"{user}:{MASK}@{hostport}"
    query = parts.query
    if query:
        query = "&".join(
            f"{piece.partition('=')[0]}={MASK}"
            if name in SECRET_PARAMS and not _shown_as_written(value)
            else piece
            for piece, name, value in _query_pairs(query)
        )
    if (netloc, query) == (parts.netloc, parts.query):
        return uri  # nothing to mask: keep the text byte for byte
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def literal_secrets(uri: str) -> list[str]:
    """What in ``uri`` is a secret written literally (not a placeholder), in words."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return ["text that does not parse as a URI around an '@'"] if "@" in uri else []
    found = []
    userinfo = _split_userinfo(parts.netloc)
    if userinfo is not None and userinfo[1] is not None and not _shown_as_written(userinfo[1]):
        found.append("password")
    found += [
        f"'{name}' parameter"
        for _, name, value in _query_pairs(parts.query)
        if parts.query and name in SECRET_PARAMS and not _shown_as_written(value)
    ]
    return found


def has_masked_secret(uri: str) -> bool:
    """Whether a secret of ``uri`` is ``***``: it was redacted and must come from elsewhere."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return False
    userinfo = _split_userinfo(parts.netloc)
    if userinfo is not None and userinfo[1] == MASK:
        return True
    return any(
        name in SECRET_PARAMS and value == MASK for _, name, value in _query_pairs(parts.query)
    )


def literal_secret_warning(uri: str, *, source: str) -> str | None:
    """The note telling the user to write ``source``'s secret as ``${ENV_NAME}``, or None."""
    found = literal_secrets(uri)
    if not found:
        return None
    example = redact_uri(uri).replace(MASK, "${ENV_NAME}")
    what = " and ".join(found)
    return (
        f"source '{source}': its URI holds a literal {what}; Kalla never stores or shows it "
        f"(it is kept as ***). Write it as a placeholder, e.g. {example}, and set ENV_NAME "
        "where the source is read"
    )


def _sources(data: Any) -> Iterator[tuple[str, str]]:
    """``(alias, uri)`` of every source in a recipe or job document (either shape)."""
    sources = data.get("sources") if isinstance(data, Mapping) else None
    sides = sources.values() if isinstance(sources, Mapping) else sources or ()
    for side in sides:
        if isinstance(side, Mapping) and isinstance(side.get("uri"), str):
            yield str(side.get("alias", "?")), side["uri"]


def literal_secret_warnings(data: Mapping[str, Any]) -> list[str]:
    """One note per source of a recipe (or job) whose URI holds a literal secret."""
    notes = (literal_secret_warning(uri, source=alias) for alias, uri in _sources(data))
    return [note for note in notes if note]


def redact_recipe(data: Any) -> Any:
    """A copy of a recipe or job document with every ``uri`` redacted (``redact_uri``)."""
    if isinstance(data, Mapping):
        return {
            key: redact_uri(value)
            if key == "uri" and isinstance(value, str)
            else redact_recipe(value)
            for key, value in data.items()
        }
    if isinstance(data, list | tuple):
        return [redact_recipe(item) for item in data]
    return data


def resolve_env(text: str, *, alias: str) -> str:
    """Replace each ``${NAME}`` with the environment variable's value; only where the source
    is read. The result holds secrets: never log it, never put it in an error. The error for
    a variable that is not set names the placeholder, never a value."""

    def value(match: re.Match[str]) -> str:
        found = os.environ.get(match.group(1))
        if found is None:
            raise SourceError(
                f"source '{alias}': {match.group(0)} is not set (its URI refers to the "
                f"environment variable {match.group(1)}; set it where the source is read)"
            )
        return found

    return ENV_REF.sub(value, text)


def _mask_userinfo(match: re.Match[str]) -> str:
    secret = match.group(2)
    return match.group(0) if _shown_as_written(secret) else f"{match.group(1)}{MASK}@"


def _mask_query(match: re.Match[str]) -> str:
    secret = unquote_plus(match.group(2))
    return match.group(0) if _shown_as_written(secret) else f"{match.group(1)}{MASK}"


def scrub(text: str) -> str:
    """``text`` with ``user:secret@`` and ``?password=secret`` masked in any URI it carries
    (defence in depth for messages whose secrets are not known); NUL characters, which a
    PostgreSQL text column cannot store, are dropped."""
    text = _USERINFO.sub(_mask_userinfo, text.replace("\x00", ""))
    return _SECRET_QUERY.sub(_mask_query, text)


class Scrubber:
    """Masks every secret a job's URIs carry (the values of their ``${ENV}`` placeholders
    included) in a text, then applies ``scrub``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # longest first, so a secret containing another is masked whole
        self.secrets = sorted({s for s in secrets if len(s) >= 3}, key=len, reverse=True)

    @classmethod
    def for_uris(cls, uris: Iterable[str], environ: Mapping[str, str] | None = None) -> Scrubber:
        env = os.environ if environ is None else environ
        found: list[str] = []
        for uri in uris:
            found += [env[name] for name in ENV_REF.findall(uri) if env.get(name)]
            try:
                parts = urlsplit(uri)
            except ValueError:
                continue
            userinfo = _split_userinfo(parts.netloc)
            if userinfo is not None and userinfo[1] and not _shown_as_written(userinfo[1]):
                found += [userinfo[1], unquote(userinfo[1])]
            found += [
                value
                for key, value in parse_qsl(parts.query, keep_blank_values=True)
                if key.lower() in SECRET_PARAMS and not _shown_as_written(value)
            ]
        return cls(found)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return scrub(text)


__all__ = [
    "ENV_REF",
    "MASK",
    "SECRET_PARAMS",
    "Scrubber",
    "has_masked_secret",
    "is_placeholder",
    "literal_secret_warning",
    "literal_secret_warnings",
    "literal_secrets",
    "redact_recipe",
    "redact_uri",
    "resolve_env",
    "scrub",
]
