"""The ``kalla`` command as a newcomer meets it: ``--version`` and ``python -m kalla``, a help
that does not load the engine, one line naming the extra for any missing driver, user text
printed as written (never eaten as Rich markup).

Each test runs the command as a process. A missing extra is made real for that process and
every process it starts (the worker's job processes included) by a ``sitecustomize`` that
marks the extra's modules as not importable.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from processes import wait_until_healthy

from kalla import __version__
from kalla.errors import MissingDependencyError, OutputError

CASE = Path(__file__).parents[1] / "fixtures" / "recipes" / "seed_readme_example"


def kalla(
    *args: str,
    cwd: Path,
    blocked: tuple[str, ...] = (),
    module: str = "kalla",
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``python -m <module> args`` in ``cwd``; ``blocked`` modules cannot be imported there."""
    environ = {**os.environ, **(env or {})}
    if blocked:
        environ["PYTHONPATH"] = str(_blocker(cwd, blocked))
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        check=False,
        env=environ,
    )


def _blocker(cwd: Path, modules: tuple[str, ...]) -> Path:
    folder = cwd / f".blocked-{'-'.join(modules)}"
    folder.mkdir(exist_ok=True)
    lines = ["import sys"] + [f"sys.modules[{m!r}] = None" for m in modules]
    (folder / "sitecustomize.py").write_text("\n".join(lines) + "\n")
    return folder


def recipe(tmp_path: Path, **changes: object) -> Path:
    """The README's recipe, with top-level or per-side changes, written next to the data."""
    body = json.loads((CASE / "recipe.json").read_text())
    for key, value in changes.items():
        if key in ("left", "right"):
            body["sources"][key] = value
        else:
            body[key] = value
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(body))
    return path


@pytest.fixture
def data(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("invoices.csv", "payments.csv"):
        shutil.copy(CASE / name, folder / name)
    return folder


def run_args(recipe_path: Path, data: Path, output: Path | str) -> list[str]:
    return [
        "run",
        str(recipe_path),
        "--source",
        f"invoices={data / 'invoices.csv'}",
        "--source",
        f"payments={data / 'payments.csv'}",
        "--output",
        str(output),
    ]


# ---- version, python -m, a light help -------------------------------------------------------


@pytest.mark.parametrize("module", ["kalla", "kalla.cli"])
def test_version_and_python_dash_m(module: str, tmp_path: Path) -> None:
    result = kalla("--version", cwd=tmp_path, module=module)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"kalla {__version__}\n"


def test_python_dash_m_kalla_runs_every_command(tmp_path: Path) -> None:
    result = kalla("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for command in ("run", "suggest", "verify", "demo", "bench", "worker", "serve"):
        assert command in result.stdout


def test_help_loads_neither_the_engine_nor_the_settings(tmp_path: Path) -> None:
    """What made ``kalla --help`` take seconds: DataFusion, Arrow, the settings and the engine
    imported before the help was printed (its time is measured in the README, not here)."""
    probe = (
        "import sys\n"
        "from kalla.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('datafusion', 'pyarrow', 'pydantic_settings', 'sqlglot', 'kalla.engine', "
        "'kalla.settings', 'kalla.pipeline', 'rich.progress')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    for args in (["--help"], ["run", "--help"], ["--version"]):
        result = subprocess.run(
            [sys.executable, "-c", probe, *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().splitlines()[-1] == "[]", (args, result.stdout)


# ---- a missing extra: one line, the extra, the exact pip command ----------------------------

MISSING = {
    # case: (blocked modules, extra, what the line starts with)
    "xlsx source": (("python_calamine",), "xlsx", "XLSX sources"),
    "s3 source": (("boto3",), "s3", "S3 sources"),
    "botocore only": (("botocore",), "s3", "S3 sources"),
    "postgres source": (("psycopg",), "postgres", "PostgreSQL sources"),
    "mysql source": (("pymysql",), "mysql", "MySQL sources"),
}


def _source_for(case: str, tmp_path: Path) -> tuple[Path, list[str]]:
    """A recipe whose left side needs the case's extra, and the --source flags it takes."""
    if case == "xlsx source":
        book = tmp_path / "invoices.xlsx"
        book.write_bytes(b"PK\x03\x04")  # never opened: the extra is checked first
        return recipe(tmp_path), [f"invoices={book}", f"payments={CASE / 'payments.csv'}"]
    uri = {
        "s3 source": "s3://ledger/exports/invoices.csv",
        "botocore only": "s3://ledger/exports/invoices.csv",
        "postgres source": "postgres://app:${PGPASSWORD}@db.invalid:5432/erp?table=invoices",
        "mysql source": "mysql://app@db.invalid:3306/erp?table=invoices",
    }[case]
    kind = uri.partition(":")[0]
    left = {"alias": "invoices", "type": kind, "uri": uri, "primary_key": ["invoice_id"]}
    return recipe(tmp_path, left=left), [f"payments={CASE / 'payments.csv'}"]


@pytest.mark.parametrize("case", sorted(MISSING))
def test_a_missing_source_extra_is_one_line_with_the_pip_command(case: str, tmp_path: Path) -> None:
    blocked, extra, start = MISSING[case]
    recipe_path, sources = _source_for(case, tmp_path)
    args = ["run", str(recipe_path), "-o", str(tmp_path / "out")]
    for source in sources:
        args += ["--source", source]
    result = kalla(*args, cwd=tmp_path, blocked=blocked)
    assert result.returncode == MissingDependencyError.exit_code, result.stderr
    line = f"error: {start} need the '{extra}' extra: pip install 'kalla[{extra}]'\n"
    assert result.stderr == line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "blocked", "extra"),
    [
        (("serve", "--port", "0"), ("anyio",), "server"),
        (("serve", "--port", "0"), ("fastapi",), "server"),
        (("worker", "--port", "0"), ("uvicorn",), "server"),
        (("bench", "--sizes", "1k"), ("duckdb",), "bench"),
    ],
)
def test_commands_without_their_extra(
    args: tuple[str, ...], blocked: tuple[str, ...], extra: str, tmp_path: Path
) -> None:
    result = kalla(*args, cwd=tmp_path, blocked=blocked)
    assert result.returncode == MissingDependencyError.exit_code, result.stderr
    assert result.stderr == (
        f"error: kalla {args[0]} needs the '{extra}' extra: pip install 'kalla[{extra}]'\n"
    )
    assert not (tmp_path / "bench").exists()  # nothing generated before the refusal


def test_a_missing_module_found_late_still_names_its_extra(tmp_path: Path) -> None:
    """An extra's module found missing where no check stood before it (a bare import inside
    a command) ends in the extra's line, not in 'internal error … please report it'."""
    probe = (
        "import sys\n"
        "sys.modules['xlsxwriter'] = None\n"
        "import typer\n"
        "from kalla.cli import _guarded\n"
        "def go():\n"
        "    import xlsxwriter\n"
        "try:\n"
        "    _guarded(False, go)\n"
        "except typer.Exit as exit:\n"
        "    sys.exit(exit.exit_code)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert result.returncode == MissingDependencyError.exit_code
    assert result.stderr == (
        "error: the module 'xlsxwriter' is not installed; it comes with the 'xlsx' extra: "
        "pip install 'kalla[xlsx]'\n"
    )
    assert "internal error" not in result.stderr


# ---- user text as written ---------------------------------------------------------------------


def test_a_column_in_brackets_is_printed_as_written(tmp_path: Path, data: Path) -> None:
    right = {
        "alias": "payments",
        "type": "file",
        "schema": ["payment_id", "reference_number", "[amount]", "[bold]date[/]"],
        "primary_key": ["payment_id"],
    }
    result = kalla(*run_args(recipe(tmp_path, right=right), data, tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert "[amount]" in result.stderr and "[bold]date[/]" in result.stderr


def test_pass_names_in_brackets_are_printed_as_written(tmp_path: Path, data: Path) -> None:
    sql = json.loads((CASE / "recipe.json").read_text())["match_sql"]
    passes = [{"name": "[bold]exact[/]", "match_sql": sql}, {"name": "[red]", "match_sql": sql}]
    path = recipe(tmp_path, match_sql=None, passes=passes)
    result = kalla(*run_args(path, data, tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "[bold]exact[/]" in result.stdout and "[red]" in result.stdout


# ---- outputs never on or over an input ------------------------------------------------------


def _inputs(data: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(data.iterdir())}


OUTPUT_CLASHES = {
    # case: (the --output, relative to tmp_path; --overwrite?; what the error says)
    "the folder holding the inputs": ("data", True, "holds the input of source 'invoices'"),
    "the folder holding the inputs, no overwrite": ("data", False, "holds the input of source"),
    "an input file": ("data/invoices.csv", True, "is the input of source 'invoices'"),
    "an input file, no overwrite": ("data/payments.csv", False, "is the input of source"),
    "inside an input file": ("data/invoices.csv/out", True, "lies inside the input of source"),
    "a link to the inputs' folder": ("link-to-data", True, "holds the input of source"),
    "a parent of the inputs": (".", True, "holds the input of source"),
    "the working directory": ("work", True, "the working directory"),
    "the staging directory's parent": ("work/stage-parent", True, "the staging directory"),
    "a folder that is not a run": ("notes", True, "not an earlier run's output directory"),
    "a file that is not a run": ("notes/todo.txt", True, "is a file, not a run's output"),
}


@pytest.mark.parametrize("case", sorted(OUTPUT_CLASHES))
def test_outputs_never_land_on_or_over_an_input(case: str, tmp_path: Path, data: Path) -> None:
    target, overwrite, fragment = OUTPUT_CLASHES[case]
    (tmp_path / "link-to-data").symlink_to(data, target_is_directory=True)
    work = tmp_path / "work"
    (work / "stage-parent").mkdir(parents=True)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me\n")
    args = run_args(recipe(tmp_path), data, tmp_path / target if target != "work" else ".")
    before = _inputs(data)
    everything = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    if overwrite:
        args.append("--overwrite")
    result = kalla(
        *args,
        cwd=work,
        env={"STAGING_PATH": str(work / "stage-parent" / "staging")},
    )
    assert result.returncode == OutputError.exit_code, (result.stdout, result.stderr)
    assert fragment in result.stderr
    assert _inputs(data) == before
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == everything
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me\n"


def test_overwrite_still_replaces_an_earlier_run(tmp_path: Path, data: Path) -> None:
    out = tmp_path / "out"
    args = run_args(recipe(tmp_path), data, out)
    assert kalla(*args, cwd=tmp_path).returncode == 0
    again = kalla(*args, "--overwrite", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (out / "manifest.json").is_file()


def test_suggest_never_writes_its_recipe_over_an_input(tmp_path: Path, data: Path) -> None:
    before = _inputs(data)
    left, right = data / "invoices.csv", data / "payments.csv"
    result = kalla("suggest", str(left), str(right), "-o", str(left), "--overwrite", cwd=tmp_path)
    assert result.returncode == OutputError.exit_code, result.stderr
    assert "is the input of the left file" in result.stderr
    assert _inputs(data) == before


# ---- python -m kalla serve answers ------------------------------------------------------------


def test_python_dash_m_kalla_serve_answers_and_logs_one_format(tmp_path: Path) -> None:
    """``python -m kalla serve`` starts (migrations, uvicorn) and, with
    ``KALLA_LOG_FORMAT=json``, every line it logs is JSON: uvicorn's and Alembic's too."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "kalla", "serve", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "KALLA_LOG_FORMAT": "json"},
    )
    try:
        wait_until_healthy(
            proc,
            f"http://127.0.0.1:{port}",
            lambda: proc.communicate()[1] if proc.poll() is not None else "",
            what="kalla serve",
        )
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    entries = [json.loads(line) for line in stderr.splitlines()]
    loggers = {e["logger"] for e in entries}
    assert {"uvicorn.error", "alembic.runtime.migration", "kalla.app"} <= loggers, loggers
    assert all(e["time"].endswith("Z") and e["level"] for e in entries)


# ---- placeholders named, values never shown ------------------------------------------------


@pytest.mark.parametrize(
    ("env", "shown", "hidden"),
    [
        ({}, "error: source 'invoices': ${KALLA_TEST_PW} is not set", ()),
        (
            {"KALLA_TEST_PW": "hunter2-Sekrit", "KALLA_TEST_USER": "PW"},
            "error: source 'invoices' (postgres://${KALLA_TEST_USER}:${KALLA_TEST_PW}@127.0.0.1:1/",
            ("hunter2-Sekrit",),
        ),
        ({"KALLA_TEST_USER": "PW"}, "error: source 'invoices': ${KALLA_TEST_PW} is not set", ()),
    ],
)
def test_placeholders_are_named_and_their_values_never_shown(
    env: dict[str, str], shown: str, hidden: tuple[str, ...], tmp_path: Path
) -> None:
    uri = "postgres://${KALLA_TEST_USER}:${KALLA_TEST_PW}@127.0.0.1:1/erp?table=invoices"
    left = {"alias": "invoices", "type": "postgres", "uri": uri, "primary_key": ["invoice_id"]}
    args = ["run", str(recipe(tmp_path, left=left)), "-o", str(tmp_path / "out")]
    args += ["--source", f"payments={CASE / 'payments.csv'}"]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("KALLA_TEST_")}
    result = subprocess.run(
        [sys.executable, "-m", "kalla", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
        env={**environ, "KALLA_TEST_USER": "app", **env},
    )
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith(shown), result.stderr
    assert "${KALLA_TEST_PW}" in result.stderr
    for value in hidden:
        assert value not in result.stderr
