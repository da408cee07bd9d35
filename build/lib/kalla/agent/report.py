"""``kalla suggest`` on a terminal: the findings, the rule in plain words, the preview."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from kalla.agent.files import FileSuggestion


def _rate(value: Any) -> str:
    return "—" if value is None else f"{value:.1%}"


def print_suggestion(console: Console, found: FileSuggestion, recipe_path: Path) -> None:
    recipe, shown = found.suggestion.recipe, found.preview
    left, right = recipe["sources"]["left"]["alias"], recipe["sources"]["right"]["alias"]
    console.print(f"Recipe written to [bold]{recipe_path}[/] ({left} ↔ {right}).", highlight=False)
    console.print("\n[bold]What the data shows[/]")
    for line in found.suggestion.findings:
        console.print(f"  • {line}", highlight=False, markup=False)
    console.print("\n[bold]The rule[/]")
    console.print(f"  {recipe['match_description']}", highlight=False, markup=False)
    scope = shown["scope"]
    where = "the whole files" if scope["whole"] else f"a key-consistent sample ({scope['sample']})"
    counts, rates = shown["counts"], shown["match_rate"]
    table = Table(title=f"Preview on {where}", header_style="bold")
    table.add_column("")
    table.add_column(left, justify="right")
    table.add_column(right, justify="right")
    table.add_row("rows", f"{counts['left_rows']:,}", f"{counts['right_rows']:,}")
    table.add_row("matched", f"{counts['matched_left']:,}", f"{counts['matched_right']:,}")
    table.add_row("unmatched", f"{counts['unmatched_left']:,}", f"{counts['unmatched_right']:,}")
    table.add_row(
        "match rate by count", _rate(rates["left_by_count"]), _rate(rates["right_by_count"])
    )
    table.add_row(
        "match rate by amount", _rate(rates["left_by_amount"]), _rate(rates["right_by_amount"])
    )
    console.print(table)
    passes = Table(title="Passes", header_style="bold")
    for name in ("pass", "candidates", "matched"):
        passes.add_column(name, justify="left" if name == "pass" else "right")
    for p in shown["passes"]:
        passes.add_row(p["name"], f"{p['candidates']:,}", f"{p['matched']:,}")
    console.print(passes)
    for side, alias in (("left", left), ("right", right)):
        examples = shown["unmatched_examples"][side]
        if examples:
            console.print(f"[bold]Unmatched in {alias}[/] (first {len(examples)})")
            for item in examples:
                key = ", ".join(str(v) for v in item["key"].values())
                console.print(f"  {key}: {item['reason']}", highlight=False, markup=False)
    console.print(f"\nRun it yourself:  {found.run_command(recipe_path)}", highlight=False)
