"""Recipe SQL as text: is it one read-only query, and which tables does it read?

Checked when a recipe is saved or run, before DataFusion sees it; DataFusion's own
``SQLOptions`` (no DDL, DML or statements) stay on as the second lock. Its length and nesting
are checked first, on the text and its tokens (both linear), because sqlglot's parser and
DataFusion's planner recurse once per level: a deeply nested expression would otherwise end
in a RecursionError (``KALLA_MAX_SQL_LENGTH``, ``KALLA_MAX_SQL_DEPTH``).
"""

from __future__ import annotations

import sqlglot
import sqlglot.errors
from sqlglot import exp
from sqlglot.errors import TokenError
from sqlglot.tokens import Token, Tokenizer, TokenType

from kalla.errors import SqlError
from kalla.settings import get_settings

_QUERY_STARTS = {TokenType.SELECT, TokenType.WITH, TokenType.L_PAREN, TokenType.VALUES}
_OPENS = {TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.L_BRACE, TokenType.CASE}
_CLOSES = {TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.R_BRACE, TokenType.END}
# operators that nest what follows them: NOT NOT x, - - x
_PREFIXES = {TokenType.NOT, TokenType.DASH, TokenType.PLUS, TokenType.TILDE}


def check_length(sql: str, where: str) -> None:
    limit = get_settings().max_sql_length
    if len(sql) > limit:
        raise SqlError(
            f"{where} is {len(sql):,} characters long, more than the {limit:,} allowed "
            "(KALLA_MAX_SQL_LENGTH): match long lists of values by joining a source, "
            "not by writing them into the SQL"
        )


def nesting(tokens: list[Token]) -> tuple[int, Token | None]:
    """How deep the SQL nests (parentheses, brackets, CASE … END, runs of NOT or unary
    minus), and the token where it is deepest."""
    depth = deepest = run = 0
    at: Token | None = None
    for token in tokens:
        kind = token.token_type
        run = run + 1 if kind in _PREFIXES else 0
        if kind in _OPENS:
            depth += 1
        elif kind in _CLOSES:
            depth = max(depth - 1, 0)
        if depth + run > deepest:
            deepest, at = depth + run, token
    return deepest, at


def check_depth(tokens: list[Token], where: str) -> None:
    limit = get_settings().max_sql_depth
    depth, at = nesting(tokens)
    if depth > limit:
        position = f" (at line {at.line}, column {at.col})" if at is not None else ""
        raise SqlError(
            f"{where} nests {depth} levels deep{position}, more than the {limit} allowed "
            "(KALLA_MAX_SQL_DEPTH): flatten it (IN (...) for a list, AND/OR without "
            "parentheses around each term)"
        )


def tokenize(sql: str, where: str) -> list[Token]:
    try:
        return Tokenizer().tokenize(sql)
    except TokenError as exc:
        raise SqlError(f"{where}: cannot read the SQL: {exc}") from None


def _parse(sql: str) -> exp.Expr | None:
    """sqlglot's tree, or None when it cannot parse (DataFusion then has the last word)."""
    try:
        return sqlglot.parse_one(sql, read="postgres")
    except (sqlglot.errors.SqlglotError, RecursionError):
        return None


def check_read_only(sql: str, where: str = "match_sql") -> None:
    """Within the length and nesting limits; one statement, and it must be a query (SELECT
    or WITH … SELECT)."""
    check_length(sql, where)
    tokens = tokenize(sql, where)
    check_depth(tokens, where)
    if not tokens:
        raise SqlError(f"{where} is empty: write one SELECT statement")
    semicolons = [i for i, t in enumerate(tokens) if t.token_type == TokenType.SEMICOLON]
    if any(i < len(tokens) - 1 for i in semicolons):
        raise SqlError(
            f"{where} must be a single statement; found more than one "
            f"(a ';' at line {tokens[semicolons[0]].line})"
        )
    kind = tokens[0].text.upper()
    if tokens[0].token_type in _QUERY_STARTS:
        tree = _parse(sql)
        if tree is None or isinstance(tree, exp.Query):
            return
        kind = tree.key.upper()
    raise SqlError(
        f"{where} must be a read-only query (SELECT or WITH); '{kind}' statements are not allowed"
    )


def referenced_tables(sql: str) -> set[str] | None:
    """Tables a query reads (CTE names excluded); None when sqlglot cannot parse it."""
    tree = _parse(sql)
    if tree is None:
        return None
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    return {t.name for t in tree.find_all(exp.Table) if t.name and t.name not in ctes}
