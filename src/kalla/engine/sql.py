"""Recipe SQL as text: read-only checks, the ``tolerance_match`` rewrite, friendly errors.

The rewrite works on sqlglot's tokens (not regexes), so strings, comments and quoted
identifiers that merely contain the name are left alone, and everything else in the
user's SQL is kept exactly as written.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlglot.tokens import Token, TokenType

from kalla.errors import SqlError
from kalla.recipe.sqltext import tokenize
from kalla.suggest import did_you_mean

TOLERANCE_FN = "tolerance_match"


def quote_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier: case and any character kept as they are."""
    return '"' + name.replace('"', '""') + '"'


def _matching_paren(tokens: Sequence[Token], open_index: int) -> int:
    depth = 0
    for i in range(open_index, len(tokens)):
        kind = tokens[i].token_type
        if kind == TokenType.L_PAREN:
            depth += 1
        elif kind == TokenType.R_PAREN:
            depth -= 1
            if depth == 0:
                return i
    return -1


def rewrite_tolerance(sql: str, where: str = "match_sql") -> str:
    """``tolerance_match(a, b, t)`` → ``(abs((a) - (b)) <= (t))``, everywhere.

    The native expression keeps a join a hash join with a filter (a Python UDF in the join
    condition costs 5-16%, PERF-NOTES), and stays exact on decimals.
    """
    tokens = tokenize(sql, where)
    for i, token in enumerate(tokens):
        is_call = (
            token.token_type == TokenType.VAR
            and token.text.lower() == TOLERANCE_FN
            and i + 1 < len(tokens)
            and tokens[i + 1].token_type == TokenType.L_PAREN
        )
        if not is_call:
            continue
        close = _matching_paren(tokens, i + 1)
        if close < 0:
            raise SqlError(f"{where}: {TOLERANCE_FN}( at line {token.line} is never closed")
        args: list[str] = []
        depth, start = 0, tokens[i + 1].end + 1
        for t in tokens[i + 2 : close]:
            if t.token_type in (TokenType.L_PAREN, TokenType.L_BRACKET):
                depth += 1
            elif t.token_type in (TokenType.R_PAREN, TokenType.R_BRACKET):
                depth -= 1
            elif t.token_type == TokenType.COMMA and depth == 0:
                args.append(sql[start : t.start])
                start = t.end + 1
        args.append(sql[start : tokens[close].start])
        if len(args) != 3 or not all(a.strip() for a in args):
            raise SqlError(
                f"{where}: {TOLERANCE_FN} takes 3 arguments (a, b, tolerance), "
                f"got {len([a for a in args if a.strip()])} at line {token.line}"
            )
        x, y, tolerance = (rewrite_tolerance(arg.strip(), where) for arg in args)
        native = f"(abs(({x}) - ({y})) <= ({tolerance}))"
        rest = rewrite_tolerance(sql[tokens[close].end + 1 :], where)
        return sql[: token.start] + native + rest
    return sql


_PREFIXES = ("DataFusion error: ", "Error during planning: ", "Execution error: ")
_TABLE_NOT_FOUND = re.compile(r"table '(?:[^']*\.)?([^'.]+)' not found")


def explain_sql_error(exc: BaseException, where: str, tables: Sequence[str]) -> SqlError:
    """DataFusion's message, trimmed, with the unknown table or column named plainly."""
    message = str(exc).strip()
    for prefix in _PREFIXES:
        message = message.replace(prefix, "")
    missing = _TABLE_NOT_FOUND.search(message)
    if missing:
        name = missing.group(1)
        return SqlError(
            f"{where}: unknown table '{name}'{did_you_mean(name, tables)}; "
            f"the sources are: {', '.join(tables)}"
        )
    first_line, _, rest = message.partition("\n")
    detail = first_line + (" " + " ".join(rest.split()) if rest else "")
    return SqlError(f"{where}: {detail}")
