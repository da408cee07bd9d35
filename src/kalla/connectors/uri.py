"""URI helpers shared by every connector: redaction for display and ``${ENV}`` resolution."""

from __future__ import annotations

import os
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from kalla.errors import SourceError

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
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_MASK = "***"


def redact_uri(uri: str) -> str:
    """The URI with every credential replaced by ``***``: safe to log, store and show.

    ``postgres://user:secret@host/db?table=t`` → ``postgres://user:***@host/db?table=t``;
    ``password=...``-style query parameters are masked too. Text that does not parse as a
    URI is returned unchanged only when it has no ``@`` (a credential could hide there).
    """
    try:
        parts = urlsplit(uri)
    except ValueError:
        return _MASK if "@" in uri else uri
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}:{_MASK}@{hostport}" if sep else f"{user}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in SECRET_PARAMS for k, _ in pairs):
            pairs = [(k, _MASK if k.lower() in SECRET_PARAMS else v) for k, v in pairs]
            query = urlencode(pairs, safe="*/:,${}")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def resolve_env(uri: str, *, alias: str) -> str:
    """Replace ``${NAME}`` with the environment variable's value, at staging time only.

    The resolved URI holds secrets: never log it, never put it in an error.
    """

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        found = os.environ.get(name)
        if found is None:
            raise SourceError(
                f"source '{alias}': its URI refers to ${{{name}}}, but the environment "
                f"variable {name} is not set"
            )
        return found

    return _ENV_REF.sub(value, uri)
