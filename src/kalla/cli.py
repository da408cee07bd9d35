"""``kalla`` command line: run | suggest | verify | demo | bench | worker | serve.

The module imports typer and the standard library only, so that ``kalla --help`` and
``kalla --version`` answer at once; each command imports the parts it runs. Every message
that carries user text (a path, a column, an error) is printed verbatim, never as Rich
markup (``kalla[xlsx]``, a column named ``[amount]``). Errors end in one paragraph on
stderr and the error's exit code; an extra that is not installed, in one line naming it and
its ``pip install 'kalla[…]'`` command.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from kalla import __version__
from kalla.errors import KallaError, OutputError, RecipeError

if TYPE_CHECKING:
    from rich.console import Console

    from kalla.engine import EngineOptions, RunSummary
    from kalla.settings import Settings

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Kalla reconciles two data sources with SQL and explains what did not match.",
)
T = TypeVar("T")

DebugOption = Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")]


@cache
def _console(stderr: bool) -> Console:
    from rich.console import Console

    return Console(stderr=stderr)


def _out() -> Console:
    return _console(False)


def _err() -> Console:
    return _console(True)


def _say(console: Console, label: str, style: str, text: str) -> None:
    """``label`` styled, then ``text`` exactly as it is (no markup, no highlighting)."""
    from rich.text import Text

    console.print(Text.assemble((label, style), " ", text), highlight=False, soft_wrap=True)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"kalla {__version__}\n")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Kalla reconciles two data sources with SQL and explains what did not match."""


def _fail(exc: BaseException, debug: bool) -> typer.Exit:
    """One paragraph naming the cause on stderr, a non-zero exit; tracebacks only with --debug."""
    from kalla.extras import missing_extra

    if debug:
        _err().print(traceback.format_exc(), markup=False, highlight=False)
    error = exc if isinstance(exc, KallaError) else missing_extra(exc)
    if error is not None:
        _say(_err(), "error:", "bold red", error.message)
        return typer.Exit(error.exit_code)
    _say(
        _err(),
        "internal error:",
        "bold red",
        f"{type(exc).__name__}: {exc} (run again with --debug for the traceback, and please "
        "report it)",
    )
    return typer.Exit(1)


def _guarded(debug: bool, action: Callable[[], T]) -> T:
    try:
        return action()
    except Exception as exc:
        raise _fail(exc, debug) from None


def _settings() -> Settings:
    from kalla.settings import get_settings

    return get_settings()


def _logging(settings: Settings, level: str = "warning") -> None:
    """The process's one log format (``KALLA_LOG_FORMAT``), on stderr."""
    from kalla import logs

    logs.configure(level, settings.log_format)


@contextmanager
def _progress_display(enabled: bool) -> Iterator[Callable[[str, str | None, float], None]]:
    """Rich progress bars per stage; shown only on a terminal (stages that take a moment)."""
    if not enabled:
        yield lambda stage, alias, fraction: None
        return
    from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    tasks: dict[str, TaskID] = {}
    with Progress(
        TextColumn("{task.description:<28}", markup=False),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TimeElapsedColumn(),
        console=_err(),
        transient=True,
    ) as bars:

        def update(stage: str, alias: str | None, fraction: float) -> None:
            label = f"{stage} {alias}" if alias else stage
            if label not in tasks:
                tasks[label] = bars.add_task(label, total=1.0)
            bars.update(tasks[label], completed=fraction)

        yield update


def _print_summary(summary: RunSummary) -> None:
    from rich.markup import escape
    from rich.table import Table

    out = _out()
    counts = Table(title="Reconciliation summary", show_header=True, header_style="bold")
    counts.add_column("")
    counts.add_column(escape(summary.left_alias), justify="right")
    counts.add_column(escape(summary.right_alias), justify="right")
    counts.add_row("input rows", f"{summary.left_rows:,}", f"{summary.right_rows:,}")
    left_total, right_total = summary.control_totals
    counts.add_row("matched keys", f"{left_total.matched_keys:,}", f"{right_total.matched_keys:,}")
    counts.add_row(
        "unmatched", f"{summary.unmatched_left_count:,}", f"{summary.unmatched_right_count:,}"
    )
    counts.add_row(
        "ambiguous keys", f"{summary.ambiguous_left_count:,}", f"{summary.ambiguous_right_count:,}"
    )
    out.print(counts)
    passes = Table(title="Passes", header_style="bold")
    for name in ("pass", "candidates", "matched", "seconds"):
        passes.add_column(name, justify="left" if name == "pass" else "right")
    for p in summary.passes:
        passes.add_row(
            escape(p.name), f"{p.candidate_count:,}", f"{p.matched_count:,}", f"{p.seconds:.2f}"
        )
    out.print(passes)
    out.print(
        f"[bold green]{summary.matched_count:,} matched rows[/]; control totals hold for both "
        f"sides; {summary.timings.get('total', 0.0):.2f} s"
    )
    top = summary.top_reasons()
    if top:
        out.print("Top break reasons:", style="bold")
        for alias, reason in top:
            out.print(
                f"  {reason.count:>8,}  {alias}: {reason.reason}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
    for name, path in summary.output_paths.items():
        out.print(f"  {name:<16} {path}", highlight=False, markup=False, soft_wrap=True)


def _parse_sources(values: list[str]) -> dict[str, str]:
    paths: dict[str, str] = {}
    for value in values:
        alias, sep, path = value.partition("=")
        if not sep or not alias or not path:
            raise RecipeError(f"--source expects ALIAS=PATH, got '{value}'")
        paths[alias.strip()] = path.strip()
    return paths


def _options(memory_limit: str | None) -> EngineOptions:
    """The settings' engine options, with ``--memory-limit`` in place of theirs when given."""
    import dataclasses

    from kalla.engine import EngineOptions
    from kalla.settings import parse_size

    options = EngineOptions.from_settings(_settings())
    if memory_limit:
        try:
            limit = parse_size(memory_limit)
        except ValueError as exc:
            raise RecipeError(f"--memory-limit: {exc}") from None
        options = dataclasses.replace(options, memory_limit=limit)
    return options


@app.command("run")
def run_command(
    recipe_path: Annotated[Path, typer.Argument(metavar="RECIPE.json", help="The recipe file.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output directory.")],
    source: Annotated[
        list[str] | None,
        typer.Option("--source", "-s", help="ALIAS=PATH for a file source (repeatable)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing output directory.")
    ] = False,
    memory_limit: Annotated[
        str | None, typer.Option("--memory-limit", help="e.g. 16G (default: half of RAM).")
    ] = None,
    sorted_outputs: Annotated[
        bool,
        typer.Option(
            "--sorted-outputs",
            help="Write outputs ordered by key, so that the files' sha256 repeat run after run.",
        ),
    ] = False,
    formats: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            "-f",
            help="parquet|csv|xlsx, repeatable or a comma list (e.g. csv,xlsx): CSV files and "
            "an XLSX workbook beside the Parquet outputs, which are always written.",
        ),
    ] = None,
    debug: DebugOption = False,
) -> None:
    """Reconcile the recipe's two sources and write matched / unmatched outputs."""

    def go() -> RunSummary:
        from dataclasses import replace

        from kalla import pipeline
        from kalla.evidence.export import ExportFormat, parse_formats
        from kalla.extras import require
        from kalla.recipe import load_recipe
        from kalla.secrets import literal_secret_warnings

        _logging(_settings())
        exports = parse_formats(formats or [])
        if ExportFormat.XLSX in exports:
            require("xlsx", "--format xlsx")
        recipe = load_recipe(recipe_path)
        for note in literal_secret_warnings(recipe.to_dict()):  # the manifest keeps ***
            _say(_err(), "warning:", "bold yellow", note)
        left, right = pipeline.sources_from_recipe(recipe, _parse_sources(source or []))
        request = pipeline.RunRequest(
            spec=recipe,
            left=left,
            right=right,
            output_dir=output,
            recipe=recipe.to_dict(),
            overwrite=overwrite,
            options=replace(_options(memory_limit), sorted_outputs=sorted_outputs),
            exports=exports,
        )
        with _progress_display(not as_json and _err().is_terminal) as progress:
            return pipeline.run(request, progress=progress)

    summary = _guarded(debug, go)
    if as_json:
        sys.stdout.write(json.dumps(summary.to_dict()) + "\n")
    else:
        _print_summary(summary)


@app.command("suggest")
def suggest_command(
    left: Annotated[Path, typer.Argument(metavar="LEFT_FILE", help="The left source file.")],
    right: Annotated[Path, typer.Argument(metavar="RIGHT_FILE", help="The right source file.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the recipe.")
    ] = Path("recipe.json"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing recipe file.")
    ] = False,
    debug: DebugOption = False,
) -> None:
    """Build a recipe for two files from their data alone (no API key), and preview it."""

    def go() -> Any:
        from kalla.agent.files import suggest_files, write_recipe
        from kalla.evidence.output import input_clashes

        clashes = input_clashes(output, [("the left file", left), ("the right file", right)])
        if clashes:
            raise OutputError(f"{clashes[0]}; write the recipe to a file of its own")
        found = suggest_files(left, right)
        write_recipe(found.suggestion.recipe, output, overwrite=overwrite)
        return found

    found = _guarded(debug, go)
    if as_json:
        sys.stdout.write(json.dumps(found.to_dict(output)) + "\n")
    else:
        from kalla.agent.report import print_suggestion

        print_suggestion(_out(), found, output)


@app.command("verify")
def verify_command(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A run's output directory.")],
    source: Annotated[
        list[str] | None,
        typer.Option(
            "--source",
            "-s",
            help="ALIAS=PATH: an input as the run read it (a file, or a database snapshot); "
            "file inputs default to the path the run read.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    debug: DebugOption = False,
) -> None:
    """Check a run against its manifest and re-run it: verified (exit 0), differs (8) or
    cannot verify (9), one line per check (docs/audit.md)."""

    def go() -> Any:
        from kalla.replay import verify_run

        _logging(_settings())
        return verify_run(run_dir, _parse_sources(source or []))

    report = _guarded(debug, go)
    if as_json:
        sys.stdout.write(json.dumps(report.to_dict()) + "\n")
    else:
        for line in report.lines():
            _out().print(line, highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(report.verdict.exit_code)


@app.command("demo")
def demo_command(
    directory: Annotated[
        Path, typer.Option("--dir", help="Where the sample data and outputs go.")
    ] = Path("kalla-demo"),
    rows: Annotated[int, typer.Option("--rows", help="Invoices to generate.")] = 3000,
    seed: Annotated[int, typer.Option("--seed")] = 7,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    debug: DebugOption = False,
) -> None:
    """Generate a realistic sample (invoices vs payments), run a two-pass recipe on it."""

    def go() -> RunSummary:
        from kalla import demo

        _logging(_settings())
        return demo.run_demo(directory, rows=rows, seed=seed)

    summary = _guarded(debug, go)
    if as_json:
        sys.stdout.write(json.dumps(summary.to_dict()) + "\n")
        return
    _out().print(f"Sample data and recipe in {directory} (seed {seed}).", markup=False)
    _print_summary(summary)
    _out().print(
        "\nRun it yourself:  kalla run "
        f"{directory / 'recipe.json'} --source invoices={directory / 'data' / 'invoices.csv'} "
        f"--source payments={directory / 'data' / 'payments.csv'} --output my-run",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


@app.command(
    "bench",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def bench_command(ctx: typer.Context) -> None:
    """Benchmark Kalla against DuckDB, Polars, pandas, datacompy and the I/O floor
    (kalla bench --help for the options; bench/README.md for reading the table)."""

    def go() -> int:
        from kalla.bench.harness import main as bench_main
        from kalla.extras import require

        if not {"-h", "--help"} & set(ctx.args):
            require("bench", "kalla bench")  # its peers: DuckDB, Polars, pandas, datacompy
        return bench_main(ctx.args)

    raise typer.Exit(_guarded(False, go))


@app.command("worker")
def worker_command(
    host: Annotated[
        str | None,
        typer.Option("--host", help="Bind address (env KALLA_WORKER_HOST; default 127.0.0.1)."),
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="Port (env KALLA_WORKER_PORT; default 50050).")
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency", min=1, help="Jobs at once (env KALLA_WORKER_CONCURRENCY; default 1)."
        ),
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level")] = "info",
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request.")] = False,
    debug: DebugOption = False,
) -> None:
    """Run the job runner: POST /api/jobs, /health, /ready, /metrics (see docs/worker.md)."""

    def go() -> int:
        from kalla.extras import require

        require("server", "kalla worker")
        from kalla.worker.http import serve

        settings = _settings()
        if concurrency is not None:
            settings = settings.model_copy(update={"worker_concurrency": concurrency})
        return serve(settings, host=host, port=port, log_level=log_level, access_log=access_log)

    code = _guarded(debug, go)
    if code:
        raise typer.Exit(code)


@app.command("serve")
def serve_command(
    host: Annotated[
        str | None,
        typer.Option("--host", help="Bind address (env KALLA_HOST; default 127.0.0.1)."),
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="Port (env KALLA_PORT; default 3000).")
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level")] = "info",
    debug: DebugOption = False,
) -> None:
    """Run the app: REST API, metadata store, runs (embedded, or WORKER_URL; docs/app.md)."""

    def go() -> None:
        from kalla.extras import require

        require("server", "kalla serve")
        from kalla.app.server import serve

        serve(_settings(), host=host, port=port, log_level=log_level)

    _guarded(debug, go)


def main(argv: list[str] | None = None) -> Any:
    return app(args=argv)


if __name__ == "__main__":  # pragma: no cover
    main()
