"""Recipe SQL as text: is it one read-only query, and which tables does it read?

Checked when a recipe is saved or run, before DataFusion sees it; DataFusion's own
``SQLOptions`` (no DDL, DML or statements) stay on as the second lock.
"""

from __future__ import annotations

import sqlglot
import sqlglot.errors
from sqlglot import exp
from sqlglot.errors import TokenError
from sqlglot.tokens import Token, Tokenizer, TokenType

from kalla.errors import SqlError

_QUERY_STARTS = {TokenType.SELECT, TokenType.WITH, TokenType.L_PAREN, TokenType.VALUES}


def tokenize(sql: str, where: str) -> list[Token]:
    try:
        return Tokenizer().tokenize(sql)
    except TokenError as exc:
        raise SqlError(f"{where}: cannot read the SQL: {exc}") from None


def _parse(sql: str) -> exp.Expr | None:
    """sqlglot's tree, or None when it cannot parse (DataFusion then has the last word)."""
    try:
        return sqlglot.parse_one(sql, read="postgres")
    except sqlglot.errors.SqlglotError:
        return None


def check_read_only(sql: str, where: str = "match_sql") -> None:
    """One statement, and it must be a query (SELECT or WITH … SELECT)."""
    tokens = tokenize(sql, where)
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
