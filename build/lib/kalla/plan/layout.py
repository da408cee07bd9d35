"""Where each side's primary key sits in a pass's output, and unique output names.

Read from the SQL text with sqlglot and the inputs' columns, as DataFusion qualifies a
query's output: a column selected as ``i.invoice_id`` (or ``invoice_id`` found in ``i``, or
``i.invoice_id AS invoice_id``) comes from relation ``i``; an aliased expression, and every
column of a ``UNION``, comes from no relation. Each relation name (a table alias, a derived
table, a CTE) stands for a source when exactly one source lies beneath it, so keys are found
however the SQL selected them:

1. a column of the source by its own name (``i.invoice_id``),
2. a column named ``<source>_<key>`` (``invoices_invoice_id``, or through a CTE),
3. the one plain column of that name that no other source provides — unless both sides'
   keys share the name, when only 1. or 2. can tell them apart.

Duplicate output names (both sides' ``amount``) are qualified ``<source>.<column>``
(``<relation>.`` or ``expr.`` when no source stands behind it), never an error. An expression
without an alias keeps the name the engine gives it; the plan does not guess that name.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.errors import OptimizeError
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, build_scope, traverse_scope

from kalla.errors import SqlError
from kalla.plan.dialect import RecipeSQL
from kalla.plan.sql import aliased, column
from kalla.suggest import did_you_mean

MATCH_PASS = "match_pass"
_UNNAMED = "__kalla_unnamed_"  # marks expressions without an alias in the analysed copy
_DERIVED = "__kalla_q"  # names a derived table the SQL left unnamed (it has no qualifier)


@dataclass(frozen=True)
class OutputColumn:
    """One column of a pass's output as the SQL selects it."""

    qualifier: str | None  # the relation it is selected from (``i``), None for expressions
    name: str | None  # its name; None when the engine names it (an expression, no alias)
    source: str | None  # the source alias the qualifier stands for, when one does
    label: str  # how messages show it


@dataclass(frozen=True)
class MatchLayout:
    """The columns of one pass's output and where each side's key columns are."""

    columns: tuple[OutputColumn, ...]
    names: tuple[str | None, ...]  # final, unique output names (None: the engine's name)
    keys: Mapping[str, tuple[str, ...]]  # source alias -> output names of its key columns

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(n or c.label for c, n in zip(self.columns, self.names, strict=True))

    def position(self, alias: str) -> tuple[int, ...]:
        """Positions of ``alias``'s key columns in the output."""
        return tuple(self.names.index(name) for name in self.keys[alias])


@dataclass(frozen=True)
class _Selected:
    """A select item's contribution to the output, before names are made unique."""

    item: exp.Expr
    columns: tuple[tuple[OutputColumn, exp.Expr | None], ...]  # (column, reference to it)
    star: bool


def check_tables(tree: exp.Expr, aliases: Sequence[str], where: str) -> None:
    """Recipe SQL reads the source aliases (and its own CTEs) only."""
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    unknown = sorted(
        {
            t.name
            for t in tree.find_all(exp.Table)
            if t.name and t.name not in ctes and t.name not in aliases
        }
    )
    if unknown:
        name = unknown[0]
        raise SqlError(
            f"{where}: unknown table '{name}'{did_you_mean(name, aliases)}; "
            f"the sources are: {', '.join(aliases)}"
        )


def plan_pass(
    tree: exp.Query,
    *,
    sources: Mapping[str, Sequence[str]],
    keys: Mapping[str, Sequence[str]],
    pass_name: str,
    where: str,
) -> tuple[exp.Query, MatchLayout]:
    """The pass's query as it runs (duplicate names qualified, ``match_pass`` appended) and
    its layout.

    ``tree`` is the recipe's query (``tolerance_match`` already rewritten); it is changed in
    place. ``sources``: source alias -> its columns as the pass sees them (left first);
    ``keys``: source alias -> its primary-key columns.
    """
    check_tables(tree, list(sources), where)
    _name_derived_tables(tree)
    analysed, labels = _analysed(tree, sources, where)
    root = build_scope(analysed)
    if root is None:
        raise SqlError(f"{where}: the match SQL must be a SELECT query")
    qualifiers = _qualifier_map(root, set(sources))
    union = isinstance(tree, exp.SetOperation)
    top = _leftmost_select(tree, where)
    top_scope = _leftmost_scope(root)
    selected = [
        _select_item(item, top, top_scope, sources, qualifiers, labels, where)
        for item in top.expressions
    ]
    columns = tuple(c for s in selected for c, _ in s.columns)
    _check_duplicates(columns, where)
    if union:  # a UNION's output columns belong to no relation
        columns = tuple(
            OutputColumn(qualifier=None, name=c.name, source=None, label=c.label) for c in columns
        )
    if any(c.name == MATCH_PASS for c in columns):
        raise SqlError(
            f"{where}: the output already has a column named '{MATCH_PASS}'; Kalla adds that "
            "column to record which pass matched each row, so alias yours differently"
        )
    names = _union_names(columns) if union else _unique_names(columns)
    layout = _locate_keys(columns, names, keys, where)
    if not union:
        _rename(top, selected, names, where)
    for select in _selects(tree):
        select.set("expressions", [*select.expressions, _match_pass(pass_name)])
    return tree, layout


# --- the analysed copy ---------------------------------------------------------------------


def _name_derived_tables(tree: exp.Expr) -> None:
    """Give unnamed derived tables a name, so their columns can be referred to."""
    count = 0
    for subquery in list(tree.find_all(exp.Subquery)):
        if subquery.alias or not isinstance(subquery.parent, exp.From | exp.Join):
            continue
        subquery.set("alias", exp.TableAlias(this=exp.to_identifier(f"{_DERIVED}{count}")))
        count += 1


def _analysed(
    tree: exp.Query, sources: Mapping[str, Sequence[str]], where: str
) -> tuple[exp.Query, dict[str, str]]:
    """A qualified copy of ``tree`` (every column's relation resolved, every star expanded)
    and the labels of the expressions it had to name."""
    copy = _balanced(tree.copy())
    labels: dict[str, str] = {}
    for select in copy.find_all(exp.Select):
        items = []
        for item in select.expressions:
            if not isinstance(item, exp.Alias | exp.Column | exp.Star):
                name = f"{_UNNAMED}{len(labels)}"
                labels[name] = item.sql(dialect=RecipeSQL)
                item = aliased(item, name)
            items.append(item)
        select.set("expressions", items)
    schema: dict[str, object] = {
        alias: dict.fromkeys(names, "UNKNOWN") for alias, names in sources.items()
    }
    try:
        qualified = qualify(
            copy,
            dialect=RecipeSQL,
            schema=schema,
            validate_qualify_columns=False,
            quote_identifiers=False,
        )
    except OptimizeError as exc:
        raise _optimize_error(exc, tree, sources, where) from None
    except RecursionError:
        raise SqlError(f"{where}: the SQL is nested too deeply to plan") from None
    _check_unknown_columns(qualified, tree, sources, where)
    return qualified, labels


def _balanced(tree: exp.Query) -> exp.Query:
    """``tree`` with each long chain of ANDs (or ORs) regrouped as a balanced tree: the
    same columns in the same scopes, but sqlglot's scope analysis, which looks up every
    column's ancestors, no longer takes time in the square of the chain's length."""
    stack: list[exp.Expr] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, exp.Connector) and type(node.parent) is not type(node):
            operands = list(node.flatten(unnest=False))
            if len(operands) > _CHAIN:
                node = node.replace(_regroup(type(node), operands))
            stack.extend(operands)
            continue
        stack.extend(node.iter_expressions())
    return tree


_CHAIN = 32


def _regroup(kind: type[exp.Connector], operands: list[exp.Expr]) -> exp.Expr:
    if len(operands) == 1:
        return operands[0]
    middle = len(operands) // 2
    return kind(
        this=_regroup(kind, operands[:middle]), expression=_regroup(kind, operands[middle:])
    )


def _position(node: exp.Expr) -> str:
    meta = (node.this if isinstance(node, exp.Column) else node).meta
    if meta.get("line") is None:
        return ""
    return f" at line {meta['line']}, column {meta['col']}"


def _optimize_error(
    exc: OptimizeError, tree: exp.Expr, sources: Mapping[str, Sequence[str]], where: str
) -> SqlError:
    message = str(exc)
    if message.startswith("Unknown column: "):
        name = message.removeprefix("Unknown column: ")
        relations = {t.alias_or_name: t.name for t in tree.find_all(exp.Table)}
        for node in tree.find_all(exp.Column):
            if node.name == name and node.table:
                known = sources.get(relations.get(node.table, ""), [])
                candidates = list(known) or [n for names in sources.values() for n in names]
                return SqlError(
                    f"{where}: unknown column '{node.table}.{name}'{_position(node)}"
                    f"{did_you_mean(name, candidates)}"
                    + (f"; the columns of '{node.table}' are: {', '.join(known)}" if known else "")
                )
    return SqlError(f"{where}: {message}")


def _check_unknown_columns(
    qualified: exp.Expr, tree: exp.Expr, sources: Mapping[str, Sequence[str]], where: str
) -> None:
    """A column the query names that no relation anywhere in it provides (a select list may
    not use its own aliases; ORDER BY may)."""
    columns = {n for names in sources.values() for n in names}
    outputs = {
        id(scope): set(scope.expression.named_selects)
        for scope in traverse_scope(qualified)
        if isinstance(scope.expression, exp.Query)
    }
    for scope in traverse_scope(qualified):
        others = set().union(*(names for key, names in outputs.items() if key != id(scope)))
        selected = (
            {id(c) for item in scope.expression.expressions for c in item.find_all(exp.Column)}
            if isinstance(scope.expression, exp.Select)
            else set()
        )
        for node in scope.columns:
            known = columns | others
            if id(node) not in selected:
                known |= outputs.get(id(scope), set())
            if node.table or node.name in known:
                continue
            original = next((c for c in tree.find_all(exp.Column) if c.name == node.name), node)
            visible = sorted(n for n in columns | others if not n.startswith(_UNNAMED))
            raise SqlError(
                f"{where}: unknown column '{node.name}'{_position(original)}"
                f"{did_you_mean(node.name, visible)}"
            )


# --- which relation stands for which source ------------------------------------------------


def _sources_below(scope: Scope, aliases: set[str]) -> set[str]:
    found: set[str] = set()
    for branch in scope.set_operation_scopes:
        found |= _sources_below(branch, aliases)
    for _, (_, source) in scope.selected_sources.items():
        if isinstance(source, Scope):
            found |= _sources_below(source, aliases)
        elif isinstance(source, exp.Table) and source.name in aliases:
            found.add(source.name)
    return found


def _qualifier_map(root: Scope, aliases: set[str]) -> dict[str, str]:
    """Relation name -> source alias, for every name that stands for exactly one source
    (wherever in the query's FROM clauses it is used, it must mean the same one)."""
    mapping = {a: a for a in aliases}
    unclear: set[str] = set()

    def record(name: str, below: set[str]) -> None:
        if name in aliases or name.startswith(_DERIVED):
            return
        if len(below) == 1:
            (source,) = below
            if mapping.get(name, source) != source:
                unclear.add(name)
            mapping[name] = source
        else:
            unclear.add(name)

    def walk(scope: Scope) -> None:
        for branch in scope.set_operation_scopes:
            walk(branch)
        for name, (node, source) in scope.selected_sources.items():
            if isinstance(source, Scope):
                below = _sources_below(source, aliases)
                record(name, below)
                if isinstance(node, exp.Table) and node.name != name:  # a CTE under an alias
                    record(node.name, below)
                walk(source)
            elif isinstance(source, exp.Table) and name != source.name:
                record(name, {source.name} & aliases)

    walk(root)
    for name in unclear:
        mapping.pop(name, None)
    return mapping


# --- the top-level select ------------------------------------------------------------------


def _leftmost_select(tree: exp.Expr, where: str) -> exp.Select:
    node = tree
    while True:
        if isinstance(node, exp.SetOperation | exp.Subquery):
            node = node.this
        elif isinstance(node, exp.Select):
            return node
        else:
            raise SqlError(f"{where}: the match SQL must be a SELECT query")


def _leftmost_scope(scope: Scope) -> Scope:
    while scope.set_operation_scopes:
        scope = scope.set_operation_scopes[0]
    return scope


def _selects(tree: exp.Expr) -> list[exp.Select]:
    """The selects whose rows form the output: one, or each branch of a UNION."""
    if isinstance(tree, exp.SetOperation):
        return _selects(tree.this) + _selects(tree.expression)
    if isinstance(tree, exp.Subquery):
        return _selects(tree.this)
    return [tree] if isinstance(tree, exp.Select) else []


def _relations(
    select: exp.Select, scope: Scope, sources: Mapping[str, Sequence[str]]
) -> list[tuple[str, list[str], set[str]]]:
    """The relations ``select`` reads, in order: (name, its columns, the columns that
    ``*`` leaves out because a USING or NATURAL join merged them into another relation's).

    Of the columns a join merges, DataFusion keeps the one of the relation whose name sorts
    first."""
    relations: list[tuple[str, list[str], set[str]]] = []
    for name, (_, source) in scope.selected_sources.items():
        if isinstance(source, Scope):
            query = source.expression
            columns = list(query.named_selects) if isinstance(query, exp.Query) else []
        else:
            columns = list(sources.get(source.name, ())) if isinstance(source, exp.Table) else []
        relations.append((name, columns, set()))
    order = [name for name, _, _ in relations]
    for join in select.args.get("joins") or []:
        right = join.this.alias_or_name
        if right not in order:
            continue
        upto = relations[: order.index(right) + 1]
        merged = {u.name for u in join.args.get("using") or []}
        if str(join.args.get("method") or "").upper() == "NATURAL":
            left = {c for _, columns, _ in upto[:-1] for c in columns}
            merged = left & set(upto[-1][1])
        for name in merged:
            holders = [r for r, columns, gone in upto if name in columns and name not in gone]
            for r, _, gone in upto:
                if r in holders and r != min(holders):
                    gone.add(name)
    return relations


def _select_item(
    item: exp.Expr,
    select: exp.Select,
    scope: Scope,
    sources: Mapping[str, Sequence[str]],
    qualifiers: Mapping[str, str],
    labels: Mapping[str, str],
    where: str,
) -> _Selected:
    relations = _relations(select, scope, sources)

    def output(qualifier: str | None, name: str | None, label: str) -> OutputColumn:
        if qualifier is not None and qualifier.startswith(_DERIVED):
            # a derived table the SQL did not name passes its columns' qualifiers through
            qualifier = _inner_qualifier(scope.selected_sources[qualifier][1], name)
        source = qualifiers.get(qualifier) if qualifier is not None else None
        return OutputColumn(qualifier=qualifier, name=name, source=source, label=label)

    def expand(names: list[tuple[str, str]]) -> _Selected:
        found: list[tuple[OutputColumn, exp.Expr | None]] = []
        for relation, name in names:
            if name.startswith(_UNNAMED):
                found.append((output(relation, None, labels.get(name, name)), None))
            else:
                found.append((output(relation, name, name), column(name, relation)))
        return _Selected(item=item, columns=tuple(found), star=True)

    if isinstance(item, exp.Star) or (isinstance(item, exp.Column) and item.is_star):
        star = item if isinstance(item, exp.Star) else item.this
        if star.args.get("replace") or star.args.get("rename"):
            raise SqlError(
                f"{where}: SELECT * REPLACE/RENAME is not supported in match SQL; "
                "list the columns instead"
            )
        excluded = {e.name for e in star.args.get("except_") or []}
        if isinstance(item, exp.Star):
            for name in sorted(excluded):
                having = [
                    r for r, columns, gone in relations if name in columns and name not in gone
                ]
                if len(having) > 1:
                    raise SqlError(
                        f"{where}: '{name}' in * EXCEPT is a column of {', '.join(having)}; "
                        f"name the table (e.g. {having[0]}.* EXCEPT ({name}))"
                    )
            names = [
                (relation, c)
                for relation, columns, merged in relations
                for c in columns
                if c not in merged and c not in excluded
            ]
        else:
            table_name = item.table
            match = [r for r in relations if r[0] == table_name]
            if not match:
                raise SqlError(f"{where}: unknown table '{table_name}' in {item.sql()}")
            names = [(table_name, c) for c in match[0][1] if c not in excluded]
        return expand(names)

    label = item.sql(dialect=RecipeSQL)
    inner = item.this if isinstance(item, exp.Alias) else item
    if isinstance(inner, exp.Column) and not inner.args.get("db"):
        plain = not isinstance(item, exp.Alias) or item.alias == inner.name
        if plain:  # DataFusion drops an alias that repeats the column's own name
            relation = inner.table or _resolve(inner.name, relations)
            return _Selected(item, ((output(relation, inner.name, label), None),), star=False)
    if isinstance(item, exp.Alias):
        return _Selected(item, ((output(None, item.alias, label), None),), star=False)
    return _Selected(item, ((output(None, None, label), None),), star=False)


def _inner_qualifier(source: object, name: str | None) -> str | None:
    """The relation a derived table's column ``name`` is selected from inside it."""
    if not isinstance(source, Scope) or not isinstance(source.expression, exp.Select):
        return None
    for item in source.expression.expressions:
        inner = item.this if isinstance(item, exp.Alias) else item
        if item.alias_or_name != name or not isinstance(inner, exp.Column):
            continue
        if inner.name != name or not inner.table:
            return None
        if inner.table.startswith(_DERIVED):
            return _inner_qualifier(source.selected_sources[inner.table][1], name)
        return inner.table
    return None


def _resolve(name: str, relations: Sequence[tuple[str, list[str], set[str]]]) -> str | None:
    """The relation an unqualified column comes from: the one that has it, or the first of
    those a USING or NATURAL join merged it across."""
    having = [r for r, columns, _ in relations if name in columns]
    merged = any(name in gone for _, _, gone in relations)
    return having[0] if len(having) == 1 or (having and merged) else None


# --- names and keys --------------------------------------------------------------------------


def _check_duplicates(columns: Sequence[OutputColumn], where: str) -> None:
    """Two output columns may share a name only when each is a column of its own relation
    (``i.amount``, ``p.amount``); DataFusion refuses the rest, and so does the plan."""
    by_name: dict[str, list[OutputColumn]] = {}
    for c in columns:
        if c.name is not None:
            by_name.setdefault(c.name, []).append(c)
    for name, same in by_name.items():
        if len(same) > 1 and any(c.qualifier is None for c in same):
            raise SqlError(
                f"{where}: the output has {len(same)} columns named '{name}' "
                f"({'; '.join(c.label for c in same)}); give them different names (AS …)"
            )


def _unique_names(columns: Sequence[OutputColumn]) -> tuple[str | None, ...]:
    counts = Counter(c.name for c in columns if c.name is not None)
    names: list[str | None] = []
    for c in columns:
        name = c.name
        if name is not None and counts[name] > 1:
            name = f"{c.source or c.qualifier or 'expr'}.{c.name}"
            while name in names:
                name += "_2"
        names.append(name)
    return tuple(names)


def _union_names(columns: Sequence[OutputColumn]) -> tuple[str | None, ...]:
    """A UNION's names, made unique as DataFusion does (``amount``, ``amount_1``, …)."""
    seen: Counter[str] = Counter()
    names: list[str | None] = []
    for c in columns:
        if c.name is None:
            names.append(None)
            continue
        names.append(f"{c.name}_{seen[c.name]}" if seen[c.name] else c.name)
        seen[c.name] += 1
    return tuple(names)


def _locate_keys(
    columns: tuple[OutputColumn, ...],
    names: tuple[str | None, ...],
    keys: Mapping[str, Sequence[str]],
    where: str,
) -> MatchLayout:
    found: dict[str, tuple[str, ...]] = {}
    problems: list[str] = []
    for alias, key_columns in keys.items():
        others = {o for o in keys if o != alias}
        shared = {k for o in others for k in keys[o]}
        located = []
        for key in key_columns:
            index = _locate(columns, alias, key, others, shared_name=key in shared)
            name = names[index] if index is not None else None
            if name is None:
                problems.append(f"key column '{key}' of source '{alias}'")
            else:
                located.append(name)
        found[alias] = tuple(located)
    layout = MatchLayout(columns=columns, names=names, keys=found)
    if problems:
        raise SqlError(
            f"{where}: the match output must contain each source's primary key; missing "
            + "; ".join(problems)
            + f". Output columns: {', '.join(layout.labels)}. Select them plainly (e.g. "
            "i.invoice_id), or as <alias>_<column> when both sides share a name."
        )
    return layout


def _locate(
    columns: Sequence[OutputColumn], alias: str, key: str, others: set[str], *, shared_name: bool
) -> int | None:
    for i, c in enumerate(columns):  # selected from the source: i.invoice_id
        if c.name == key and c.source == alias:
            return i
    for i, c in enumerate(columns):  # named by the user: invoices_invoice_id
        if c.name == f"{alias}_{key}":
            return i
    plain = [i for i, c in enumerate(columns) if c.name == key and c.source not in others]
    if len(plain) == 1 and not (shared_name and columns[plain[0]].source != alias):
        return plain[0]
    return None


# --- the query as it runs ------------------------------------------------------------------


def _rename(
    select: exp.Select, selected: Sequence[_Selected], names: Sequence[str | None], where: str
) -> None:
    """Give duplicate columns their unique names in the select list itself."""
    items: list[exp.Expr] = []
    position = 0
    for part in selected:
        finals = names[position : position + len(part.columns)]
        position += len(part.columns)
        renamed = any(final != c.name for (c, _), final in zip(part.columns, finals, strict=True))
        if not renamed:
            items.append(part.item)
            continue
        if part.star:
            for (c, reference), final in zip(part.columns, finals, strict=True):
                if reference is None or c.name is None or final is None:
                    raise SqlError(
                        f"{where}: {part.item.sql()} selects an expression without a name "
                        f"({c.label}) beside columns that need renaming; give it a name (AS …)"
                    )
                items.append(reference if final == c.name else aliased(reference, final))
            continue
        (_, _), final = part.columns[0], finals[0]
        assert final is not None
        inner = part.item.this if isinstance(part.item, exp.Alias) else part.item
        items.append(aliased(inner, final))
    select.set("expressions", items)


def _match_pass(pass_name: str) -> exp.Alias:
    return aliased(
        exp.Cast(this=exp.Literal.string(pass_name), to=exp.DataType.build("VARCHAR")),
        MATCH_PASS,
    )
