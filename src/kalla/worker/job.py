"""``Scrubber``: masks the credentials a job's URIs carry in any text (messages, logs).

What stays here of the worker's job module: the runner (``kalla.runner``) runs jobs now.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, unquote, urlsplit

from kalla.connectors.uri import SECRET_PARAMS

# --- secrets never leave the worker -------------------------------------------------------

_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Scrubber:
    """Masks every credential a job's URIs carry (and ``user:pass@`` anywhere) in a text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # longest first, so a secret containing another is masked whole
        self.secrets = sorted({s for s in secrets if len(s) >= 3}, key=len, reverse=True)

    @classmethod
    def for_uris(cls, uris: Iterable[str], environ: Mapping[str, str] | None = None) -> Scrubber:
        env = os.environ if environ is None else environ
        found: list[str] = []
        for uri in uris:
            found += [env[name] for name in _ENV_REF.findall(uri) if env.get(name)]
            try:
                parts = urlsplit(uri)
            except ValueError:
                continue
            userinfo, at, _ = parts.netloc.rpartition("@")
            if at and ":" in userinfo:
                password = userinfo.partition(":")[2]
                found += [password, unquote(password)]
            found += [
                value
                for key, value in parse_qsl(parts.query, keep_blank_values=True)
                if key.lower() in SECRET_PARAMS
            ]
        return cls(found)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return _USERINFO.sub(r"\1***@", text)
