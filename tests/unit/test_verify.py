"""``kalla verify`` on real runs: every fixture recipe verified on its own inputs, and each
kind of change an auditor must hear about detected and named — a modified input, a modified
or missing output, a tampered manifest or recipe, another Kalla version."""

from __future__ import annotations

import importlib
import json
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from kalla import pipeline
from kalla.cli import app
from kalla.connectors import stage_source
from kalla.engine import EngineOptions
from kalla.errors import EvidenceError, SqlError
from kalla.evidence.manifest import manifest_sha256
from kalla.evidence.verify import Status, Verdict, VerifyReport
from kalla.recipe import load_recipe
from kalla.replay import verify_run
from kalla.settings import Settings

CASES_DIR = Path(__file__).parent.parent / "fixtures" / "recipes"
CASES = sorted(
    p.name
    for p in CASES_DIR.iterdir()
    if p.is_dir()
    and not p.name.startswith("_")
    and "error" not in json.loads((p / "expected.json").read_text())
)
SEED = "seed_readme_example"


class Run:
    """A completed run of a fixture case, its inputs copied where a test may change them."""

    def __init__(
        self,
        case: str,
        tmp: Path,
        *,
        sorted_outputs: bool = False,
        digests: bool = True,
        sql: str | None = None,
        parquet_inputs: bool = False,
    ) -> None:
        folder = CASES_DIR / case
        expected = json.loads((folder / "expected.json").read_text())
        self.settings = Settings(STAGING_PATH=tmp / "staging", KALLA_CONTENT_DIGESTS=digests)
        self.data = tmp / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.inputs = {}
        for alias, file in expected["sources"].items():
            self.inputs[alias] = self.data / Path(file).name
            shutil.copy(folder / file, self.inputs[alias])
            if parquet_inputs:  # registered where they lie: digested by reading them back
                table = pacsv.read_csv(self.inputs[alias])
                self.inputs[alias] = self.inputs[alias].with_suffix(".parquet")
                pq.write_table(table, self.inputs[alias])
        self.dir = tmp / ("sorted" if sorted_outputs else "run")
        recipe = load_recipe(folder / "recipe.json")
        if sql is not None:
            recipe = recipe.model_copy(update={"match_sql": sql})
        left, right = pipeline.sources_from_recipe(
            recipe, {alias: str(path) for alias, path in self.inputs.items()}
        )
        options = EngineOptions.from_settings(self.settings)
        pipeline.run(
            pipeline.RunRequest(
                spec=recipe,
                left=left,
                right=right,
                output_dir=self.dir,
                recipe=recipe.to_dict(),
                options=replace(options, sorted_outputs=sorted_outputs),
            ),
            settings=self.settings,
        )

    @property
    def manifest(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.dir / "manifest.json").read_text())
        return data

    def rewrite_manifest(self, change: Callable[[dict[str, Any]], None], *, rehash: bool) -> None:
        manifest = self.manifest
        change(manifest)
        if rehash:
            manifest["manifest_sha256"] = manifest_sha256(manifest)
        (self.dir / "manifest.json").write_text(json.dumps(manifest))

    def verify(self, **sources: Path) -> VerifyReport:
        given = {alias: str(path) for alias, path in sources.items()}
        return verify_run(self.dir, given, settings=self.settings)


def statuses(report: VerifyReport) -> dict[str, Status]:
    return {check.name: check.status for check in report.checks}


def detail(report: VerifyReport, name: str) -> str:
    return next(check.detail for check in report.checks if check.name == name)


@pytest.fixture
def seed(tmp_path: Path) -> Run:
    return Run(SEED, tmp_path)


# ---- verified ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_every_fixture_run_verifies_on_its_own_inputs(case: str, tmp_path: Path) -> None:
    run = Run(case, tmp_path)
    report = run.verify()
    assert report.verdict is Verdict.VERIFIED, report.lines()
    assert report.reasons == ()
    outputs = list(run.manifest["outputs"])
    assert list(statuses(report)) == [
        "manifest",
        "recipe",
        "versions",
        *[f"output {name}" for name in outputs],
        *[f"input {entry['alias']}" for entry in run.manifest["inputs"]],
        *[f"re-run {name}" for name in outputs],
    ]
    assert set(statuses(report).values()) == {Status.OK}


def test_the_manifest_records_a_digest_for_every_table(seed: Run) -> None:
    manifest = seed.manifest
    assert manifest["digest_algorithm"] == "kalla-multiset-sha256/1"
    assert manifest["engine"]["kalla"] and manifest["engine"]["datafusion"]
    tables = [*manifest["inputs"], *manifest["outputs"].values()]
    assert all(len(table["digest"]) == 64 for table in tables)
    assert manifest["manifest_sha256"] == manifest_sha256(manifest)


def test_an_input_in_another_layout_with_the_same_rows_verifies(seed: Run, tmp_path: Path) -> None:
    staged = stage_source(
        str(seed.inputs["payments"]), alias="payments", settings=seed.settings, staging_dir=tmp_path
    )
    table = pq.read_table(staged.path)
    snapshot = tmp_path / "payments-export.parquet"
    order = [*range(1, table.num_rows, 2), *range(0, table.num_rows, 2)]
    pq.write_table(table.take(order), snapshot, compression="gzip", row_group_size=1)

    report = seed.verify(payments=snapshot)

    assert report.verdict is Verdict.VERIFIED, report.lines()
    assert "the same rows the run read (digest)" in detail(report, "input payments")


def test_an_output_rewritten_with_the_same_rows_verifies(seed: Run) -> None:
    path = seed.dir / "matched.parquet"
    table = pq.read_table(path)
    pq.write_table(table.take(list(reversed(range(table.num_rows)))), path, compression="snappy")

    report = seed.verify()

    assert report.verdict is Verdict.VERIFIED, report.lines()
    assert "the same rows in a rewritten file" in detail(report, "output matched")


def test_sorted_outputs_repeat_their_file_hashes(tmp_path: Path) -> None:
    first = Run("one_to_one_ranking", tmp_path / "a", sorted_outputs=True)
    second = Run("one_to_one_ranking", tmp_path / "b", sorted_outputs=True)
    assert first.manifest["outputs_sorted"] is True
    for name, entry in first.manifest["outputs"].items():
        assert entry["sha256"] == second.manifest["outputs"][name]["sha256"], name
    report = first.verify()
    assert report.verdict is Verdict.VERIFIED
    assert "and the same file (sha256)" in detail(report, "re-run matched")


def test_another_version_is_named_and_digests_still_compared(seed: Run) -> None:
    def older(manifest: dict[str, Any]) -> None:
        manifest["engine"]["kalla"] = "0.0.1"

    seed.rewrite_manifest(older, rehash=True)
    report = seed.verify()

    assert report.verdict is Verdict.VERIFIED
    assert statuses(report)["versions"] is Status.NOTE
    assert "kalla 0.0.1 →" in detail(report, "versions")
    assert statuses(report)["re-run matched"] is Status.OK


# ---- cannot verify ----------------------------------------------------------------------


def test_a_modified_input_is_named_and_nothing_is_rerun(seed: Run) -> None:
    path = seed.inputs["payments"]
    path.write_text(path.read_text().replace("249.00", "249.01"))

    report = seed.verify()

    assert report.verdict is Verdict.CANNOT_VERIFY
    assert report.verdict.exit_code == 9
    assert report.reasons == ("input 'payments' changed since the run",)
    assert statuses(report)["input invoices"] is Status.OK
    assert "changed since the run" in detail(report, "input payments")
    assert "not attempted" in detail(report, "re-run")


def test_a_missing_input_file_asks_for_it(seed: Run) -> None:
    seed.inputs["invoices"].unlink()
    report = seed.verify()
    assert report.verdict is Verdict.CANNOT_VERIFY
    assert "give --source invoices=PATH" in detail(report, "input invoices")


def test_a_run_made_without_digests_cannot_be_verified(tmp_path: Path) -> None:
    run = Run(SEED, tmp_path, digests=False)
    assert run.manifest["digest_algorithm"] is None
    assert not any("digest" in entry for entry in run.manifest["outputs"].values())
    report = run.verify()
    assert report.verdict is Verdict.CANNOT_VERIFY
    assert "KALLA_CONTENT_DIGESTS=false" in detail(report, "digests")


def test_a_table_without_a_digest_cannot_be_verified(tmp_path: Path) -> None:
    """A list column has no canonical encoding: the run records why, verify says so."""
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pa.table({"id": ["a", "b"], "tags": [[1], [2, 3]]}), data / "left.parquet")
    pq.write_table(pa.table({"rid": ["r"], "ref": ["a"]}), data / "right.parquet")
    recipe = {
        "recipe_id": "tags",
        "name": "tags",
        "match_sql": "SELECT l.id, r.rid FROM l JOIN r ON l.id = r.ref",
        "sources": {
            "left": {"alias": "l", "type": "file", "primary_key": ["id"]},
            "right": {"alias": "r", "type": "file", "primary_key": ["rid"]},
        },
    }
    (tmp_path / "recipe.json").write_text(json.dumps(recipe))
    args = ["run", str(tmp_path / "recipe.json"), "-o", str(tmp_path / "run")]
    args += ["--source", f"l={data / 'left.parquet'}", "--source", f"r={data / 'right.parquet'}"]
    env = {"STAGING_PATH": str(tmp_path / "staging")}
    assert CliRunner().invoke(app, args, env=env).exit_code == 0
    left = json.loads((tmp_path / "run" / "manifest.json").read_text())["inputs"][0]
    assert left["digest"] is None
    assert "'tags' has type list" in left["digest_error"]

    report = verify_run(tmp_path / "run", {}, settings=Settings(STAGING_PATH=tmp_path / "s"))

    assert report.verdict is Verdict.CANNOT_VERIFY
    assert "cannot compare" in detail(report, "re-run unmatched_left")
    assert statuses(report)["re-run matched"] is Status.OK


# ---- differs ------------------------------------------------------------------------------


def test_a_modified_output_is_named_and_the_rerun_agrees_with_the_record(seed: Run) -> None:
    path = seed.dir / "unmatched_left.parquet"
    table = pq.read_table(path)
    pq.write_table(table.slice(1), path)

    report = seed.verify()

    assert report.verdict is Verdict.DIFFERS
    assert report.verdict.exit_code == 8
    assert report.reasons == ("output 'unmatched_left' was modified after the run",)
    assert "modified" in detail(report, "output unmatched_left")
    assert statuses(report)["re-run unmatched_left"] is Status.OK


def test_a_missing_output_differs(seed: Run) -> None:
    (seed.dir / "matched.parquet").unlink()
    report = seed.verify()
    assert report.verdict is Verdict.DIFFERS
    assert "missing" in detail(report, "output matched")


TAMPERING: list[tuple[str, Callable[[dict[str, Any]], None], bool, str, str]] = [
    (
        "counts edited",
        lambda m: m["counts"].update(matched_count=99),
        False,
        "manifest",
        "the manifest was changed after the run (manifest_sha256 does not match)",
    ),
    (
        "recipe edited, manifest rehashed",
        lambda m: m["recipe"].update(match_sql=m["recipe"]["match_sql"].replace("0.01", "0.05")),
        True,
        "recipe",
        "the manifest's recipe was changed after the run (recipe_sha256 does not match)",
    ),
    (
        "output digest edited, manifest rehashed",
        lambda m: m["outputs"]["matched"].update(sha256="0" * 64, digest="0" * 64),
        True,
        "output matched",
        "output 'matched' was modified after the run",
    ),
]


@pytest.mark.parametrize(
    ("change", "rehash", "check", "reason"),
    [t[1:] for t in TAMPERING],
    ids=[t[0] for t in TAMPERING],
)
def test_a_tampered_manifest_is_named(
    seed: Run,
    change: Callable[[dict[str, Any]], None],
    rehash: bool,
    check: str,
    reason: str,
) -> None:
    seed.rewrite_manifest(change, rehash=rehash)
    report = seed.verify()
    assert report.verdict is Verdict.DIFFERS
    assert statuses(report)[check] is Status.DIFFERS
    assert reason in report.reasons


def test_a_recipe_that_gives_other_results_differs(seed: Run) -> None:
    """The recorded digests are of other rows than the recipe gives: what a run on other
    data, or a changed engine, would show."""

    def other_rows(manifest: dict[str, Any]) -> None:
        for entry in manifest["outputs"].values():
            entry["sha256"] = "0" * 64
        manifest["outputs"]["unmatched_right"]["digest"] = "f" * 64

    seed.rewrite_manifest(other_rows, rehash=True)
    report = seed.verify()
    assert report.verdict is Verdict.DIFFERS
    assert "re-running the recipe gives another 'unmatched_right'" in report.reasons
    assert statuses(report)["re-run matched"] is Status.OK


# ---- the command --------------------------------------------------------------------------


def test_kalla_verify_prints_one_line_per_check_and_exits_with_the_verdict(seed: Run) -> None:
    env = {"STAGING_PATH": str(seed.settings.staging_path)}
    result = CliRunner().invoke(app, ["verify", str(seed.dir)], env=env)
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1] == "verdict: verified"
    assert lines[0].split()[:2] == ["manifest", "ok"]

    (seed.dir / "matched.parquet").unlink()
    result = CliRunner().invoke(app, ["verify", str(seed.dir), "--json"], env=env)
    assert result.exit_code == 8
    report = VerifyReport.model_validate_json(result.output)
    assert report.verdict is Verdict.DIFFERS


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "nope=x.csv"], "--source names an input the run does not have: nope"),
        (["--source", "broken"], "--source expects ALIAS=PATH"),
    ],
)
def test_kalla_verify_refuses_unknown_sources(seed: Run, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["verify", str(seed.dir), *args])
    assert result.exit_code in (2, 7)
    assert message in result.output


def test_kalla_verify_of_a_directory_that_is_no_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["verify", str(tmp_path)])
    assert result.exit_code == EvidenceError.exit_code
    assert "holds no manifest.json: it is not a Kalla run" in result.output


def test_a_failed_run_cancels_its_digests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Digests read back (of Parquet inputs registered where they lie) wait on their own
    thread; those of a run that fails are cancelled, so a failed job leaves nothing
    computing and the process nothing to wait for."""
    from kalla.engine.datafusion import digest

    module = importlib.import_module("kalla.engine.datafusion.executor")

    started: list[Future[Any]] = []

    def recorded(paths: Any) -> Future[Any]:
        future = digest.digest_in_background(paths)
        started.append(future)
        return future

    monkeypatch.setattr(module, "digest_in_background", recorded)
    release = threading.Event()
    blocker = digest._POOL.submit(release.wait)  # the run's digests queue behind it
    try:
        with pytest.raises(SqlError):
            # plans, so the input digests start; fails as DataFusion plans it
            sql = (
                "SELECT i.invoice_id, p.payment_id, CAST('x' AS INT) AS bad FROM invoices i "
                "JOIN payments p ON i.invoice_id = p.reference_number"
            )
            Run("seed_readme_example", tmp_path, sql=sql, parquet_inputs=True)
    finally:
        release.set()
    blocker.result()
    assert len(started) == 2
    assert all(future.cancelled() for future in started)
