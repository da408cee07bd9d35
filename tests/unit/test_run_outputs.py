"""Outputs and the CLI as a user meets them: atomic directories, manifest, exit codes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kalla.engine import EngineOptions, SourceInput, make_executor, reconcile
from kalla.errors import ConfigError, OutputError, ResourceLimitError, SqlError
from kalla.recipe import MatchSpec

CASES = Path(__file__).parent.parent / "fixtures" / "recipes"
CASE = CASES / "seed_readme_example"
KALLA = [sys.executable, "-m", "kalla.cli"]


def kalla(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*KALLA, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def run_args(out: Path) -> list[str]:
    return [
        "run",
        str(CASE / "recipe.json"),
        "--source",
        f"invoices={CASE / 'invoices.csv'}",
        "--source",
        f"payments={CASE / 'payments.csv'}",
        "--output",
        str(out),
    ]


def test_kalla_run_json_summary_and_manifest(tmp_path: Path) -> None:
    result = kalla(*run_args(tmp_path / "out"), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["matched_count"], summary["unmatched_left_count"]) == (2, 2)

    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    recipe = json.loads((CASE / "recipe.json").read_text())
    assert manifest["recipe"]["match_sql"] == recipe["match_sql"]
    assert len(manifest["recipe_sha256"]) == 64
    assert manifest["engine"]["datafusion"].startswith("55.")
    assert manifest["executor"]["name"] == "datafusion"
    assert [s["step"] for s in manifest["sql"]] == [
        "match:match_sql",
        "unmatched:invoices",
        "unmatched:payments",
        "breaks:invoices:best",
        "breaks:invoices:output",
        "breaks:payments:best",
        "breaks:payments:output",
    ]
    assert manifest["breaks_explained"] is True
    assert [b["output"] for b in manifest["breaks"]] == ["unmatched_left", "unmatched_right"]
    for source in manifest["inputs"]:
        data = (CASE / f"{source['alias']}.csv").read_bytes()
        assert source["fingerprint"]["sha256"] == hashlib.sha256(data).hexdigest()
    for name, entry in manifest["outputs"].items():
        path = tmp_path / "out" / entry["file"]
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest(), name
        assert entry["rows"] == pq.ParquetFile(path).metadata.num_rows
    assert all(
        t["input_rows"] == t["matched_keys"] + t["unmatched_rows"]
        for t in manifest["control_totals"]
    )
    assert not list((tmp_path / "staging").glob("*.parquet")), "staged copies are removed"


def test_existing_output_is_not_clobbered_unless_asked(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert kalla(*run_args(out), cwd=tmp_path).returncode == 0
    before = (out / "matched.parquet").read_bytes()

    again = kalla(*run_args(out), cwd=tmp_path)
    assert again.returncode == OutputError.exit_code
    assert "already exists" in again.stderr and "--overwrite" in again.stderr
    assert (out / "matched.parquet").read_bytes() == before

    assert kalla(*run_args(out), "--overwrite", cwd=tmp_path).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) == []


def test_a_failed_run_leaves_earlier_outputs_intact(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert kalla(*run_args(out), cwd=tmp_path).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = json.loads((CASE / "recipe.json").read_text())
    bad["match_sql"] = bad["match_sql"].replace("p.amount FROM", "p.amount, p.nope FROM")
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    args = run_args(out)
    args[1] = str(tmp_path / "bad.json")
    failed = kalla(*args, "--overwrite", cwd=tmp_path)
    assert failed.returncode == SqlError.exit_code
    assert "nope" in failed.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["--source", "payments=/nonexistent/pay.csv"], 3, "not found"),
        (["--source", "paymnts=x.csv"], 2, "did you mean 'payments'"),
        (["--source", "payments"], 2, "ALIAS=PATH"),
    ],
)
def test_errors_are_one_paragraph_without_traceback(
    tmp_path: Path, args: list[str], code: int, fragment: str
) -> None:
    base = ["run", str(CASE / "recipe.json"), "--source", f"invoices={CASE / 'invoices.csv'}"]
    result = kalla(*base, *args, "--output", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == code, result.stderr
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    debug = kalla(*base, *args, "--output", str(tmp_path / "out"), "--debug", cwd=tmp_path)
    assert "Traceback" in debug.stderr


def test_missing_recipe_file_is_named(tmp_path: Path) -> None:
    result = kalla("run", "nope.json", "--output", "out", cwd=tmp_path)
    assert result.returncode == 2
    assert "recipe file not found: nope.json" in result.stderr


def test_memory_limit_is_a_clear_error_not_a_crash(engine: str, tmp_path: Path) -> None:
    n = 300_000
    keys = pa.array([f"K{i:09d}" for i in range(n)])
    pq.write_table(pa.table({"id": keys, "v": pa.array(range(n))}), tmp_path / "l.parquet")
    pq.write_table(pa.table({"rid": keys, "ref": keys}), tmp_path / "r.parquet")
    spec = MatchSpec(match_sql="SELECT l.id, r.rid, l.v FROM l JOIN r ON l.id = r.ref")
    options = EngineOptions(memory_limit=2 * 1024**2, target_partitions=2, engine=engine)
    with (
        pytest.raises(ResourceLimitError, match=r"memory limit of 2\.0 MiB"),
        make_executor(options) as executor,
    ):
        reconcile(
            spec,
            SourceInput("l", tmp_path / "l.parquet", ("id",)),
            SourceInput("r", tmp_path / "r.parquet", ("rid",)),
            tmp_path / "out",
            executor=executor,
        )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("strategy", ["hash", "sort_merge"])
def test_join_strategy_setting_holds_with_a_memory_limit(tmp_path: Path, strategy: str) -> None:
    """--memory-limit replaces the limit only; KALLA_JOIN_STRATEGY still decides the joins."""
    env = {"KALLA_JOIN_STRATEGY": strategy}
    result = kalla(*run_args(tmp_path / "out"), "--memory-limit", "1G", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    executor = json.loads((tmp_path / "out" / "manifest.json").read_text())["executor"]
    assert (executor["join_strategy"], executor["joins"]) == (strategy, strategy)
    assert executor["memory_limit"] == 1024**3


@pytest.mark.parametrize(
    ("codec", "written"),
    [("snappy", "SNAPPY"), ("gzip(9)", "GZIP"), ("uncompressed", "UNCOMPRESSED")],
)
@pytest.mark.parametrize("case", ["waterfall_two_pass", "one_to_one_ranking"])
def test_outputs_use_the_configured_compression(
    tmp_path: Path, case: str, codec: str, written: str
) -> None:
    """Every output, including the combined passes and the 1:1 selection, in KALLA_PARQUET_
    COMPRESSION's codec."""
    folder = CASES / case
    args = ["run", str(folder / "recipe.json"), "--output", str(tmp_path / "out")]
    for alias in ("invoices", "payments"):
        args += ["--source", f"{alias}={folder / f'{alias}.csv'}"]
    result = kalla(*args, cwd=tmp_path, env={"KALLA_PARQUET_COMPRESSION": codec})
    assert result.returncode == 0, result.stderr
    outputs = sorted((tmp_path / "out").glob("*.parquet"))
    assert len(outputs) == (4 if case == "one_to_one_ranking" else 3)
    for path in outputs:
        meta = pq.ParquetFile(path).metadata
        assert meta.num_row_groups > 0, path.name
        codecs = {
            meta.row_group(g).column(c).compression
            for g in range(meta.num_row_groups)
            for c in range(meta.num_columns)
        }
        assert codecs == {written}, path.name


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    result = kalla("demo", "--dir", str(tmp_path / "demo"), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert [p["name"] for p in summary["passes"]] == ["exact", "within_2_cents"]
    assert summary["matched_count"] > 0 and summary["unmatched_right_count"] > 0
    matched = pq.read_table(tmp_path / "demo" / "run" / "matched.parquet")
    assert set(matched.column("match_pass").to_pylist()) == {"exact", "within_2_cents"}


def test_atomic_output_never_replaces_a_run_that_finished_meanwhile(tmp_path: Path) -> None:
    from kalla.evidence import AtomicOutputDir

    target = tmp_path / "out"
    with pytest.raises(OutputError, match="another run"), AtomicOutputDir(target) as tmp:
        (tmp / "mine.txt").write_text("mine")
        target.mkdir()
        (target / "theirs.txt").write_text("theirs")
    assert [p.name for p in target.iterdir()] == ["theirs.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_bad_settings_fail_at_start_naming_each_variable(tmp_path: Path) -> None:
    bad = {"KALLA_PARQUET_COMPRESSION": "zstd(30)", "KALLA_JOIN_STRATEGY": "fastest"}
    result = kalla(*run_args(tmp_path / "out"), cwd=tmp_path, env=bad)
    assert result.returncode == ConfigError.exit_code
    assert "KALLA_PARQUET_COMPRESSION: not a Parquet codec: 'zstd(30)'" in result.stderr
    assert "KALLA_JOIN_STRATEGY: Input should be 'auto', 'hash' or 'sort_merge'" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("given", "kept"), [("ZSTD(3)", "zstd(3)"), ("snappy", "snappy"), ("gzip(9)", "gzip(9)")]
)
def test_parquet_codecs_are_normalised(
    given: str, kept: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kalla.settings import Settings

    monkeypatch.setenv("KALLA_PARQUET_COMPRESSION", given)
    assert Settings().parquet_compression == kept


@pytest.mark.parametrize("name", ["runs[1]", "a*b", "what?", "{x,y}", "two words"])
def test_paths_with_glob_characters_are_paths(tmp_path: Path, name: str) -> None:
    """DataFusion reads a plain path with glob characters as a pattern: ``runs[1]`` found no
    input and wrote outputs under random names into the parent. Every file Kalla hands the
    engine, inputs, staging and outputs, is exactly the one named."""
    base = tmp_path / name
    base.mkdir()
    for source in ("recipe.json", "invoices.csv", "payments.csv"):
        (base / source).write_bytes((CASE / source).read_bytes())
    args = ["run", str(base / "recipe.json"), "--output", str(base / "out")]
    args += ["--source", f"invoices={base / 'invoices.csv'}"]
    args += ["--source", f"payments={base / 'payments.csv'}", "--json"]
    result = kalla(*args, cwd=base)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["matched_count"] == 2
    outputs = sorted(p.name for p in (base / "out").iterdir())
    assert outputs == sorted(
        ["matched.parquet", "unmatched_left.parquet", "unmatched_right.parquet", "manifest.json"]
    )
    assert not list(tmp_path.glob("*.parquet"))  # nothing written beside the folder
    verified = kalla("verify", str(base / "out"), cwd=base)
    assert verified.returncode == 0, verified.stdout + verified.stderr
