"""Run Kalla and its peers side by side on the same files and report medians and ratios.

For every size and input format, every run index runs every engine once, in an order
rotated by the run index (A B C, B C A, …), so machine drift and cache position cancel
out. Each engine is a whole process: wall time is ``perf_counter`` around it, peak RSS is
the child's ``ru_maxrss`` from ``os.wait4``. Each run's output row counts are checked
against the generator's exact expected counts (and compared with Kalla's): an engine
whose counts differ is WRONG, and its time is not a result.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from kalla.bench.launcher import run_one
from kalla.bench.peers import DESCRIPTIONS as PEER_DESCRIPTIONS
from kalla.bench.peers import ENGINES as PEER_ENGINES
from kalla.bench.peers._common import parquet_rows, parse_size
from kalla.bench.schema import (
    COUNT_KEYS,
    DATA_FILES,
    EXPECTED_FILE,
    MATCHED_FILE,
    UNMATCHED_LEFT_FILE,
    UNMATCHED_RIGHT_FILE,
)

KALLA = "kalla"
DEFAULT_ENGINES = (KALLA, "duckdb", "polars", "datafusion", "pandas", "datacompy", "floor")
ALL_ENGINES = (KALLA, *PEER_ENGINES)
DESCRIPTIONS = {
    KALLA: "kalla run bench recipe (--json), complete run with manifest",
    **PEER_DESCRIPTIONS,
}
#: Engines left out above this many rows per side unless named in ``engines`` explicitly.
SLOW_ENGINE_MAX_ROWS = {"pandas": 10_000_000, "datacompy": 10_000_000}
#: Baselines for the ratio column, in order of preference (the first that ran correctly).
BASELINES = (KALLA, "datafusion", "duckdb")
DEFAULT_TIMEOUT_S = 3600.0
SEED = 42

OK, WRONG, FAILED, TIMEOUT, KILLED = "ok", "WRONG", "FAILED", "TIMEOUT", "KILLED"


# ----------------------------------------------------------------------------- sizes


def parse_rows(text: str) -> int:
    """``100k``, ``1m``, ``2.5M``, ``100m``, ``1b`` or a plain number → rows."""
    cleaned = text.strip().lower().replace("_", "")
    scale = {"k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9}.get(cleaned[-1:], 1)
    number = cleaned[:-1] if scale != 1 else cleaned
    try:
        rows = round(float(number) * scale)
    except ValueError:
        raise ValueError(f"not a size: {text!r} (use e.g. 100k, 1m, 10m)") from None
    if rows <= 0:
        raise ValueError(f"size must be positive: {text!r}")
    return rows


def size_label(rows: int) -> str:
    """Rows → ``100k`` / ``1m`` / ``2500`` (the inverse of :func:`parse_rows`)."""
    for suffix, scale in (("b", 10**9), ("m", 10**6), ("k", 10**3)):
        if rows >= scale and rows % scale == 0:
            return f"{rows // scale}{suffix}"
    return str(rows)


# ----------------------------------------------------------------------------- data


def data_paths(data_dir: Path, fmt: str) -> tuple[Path, Path]:
    return data_dir / DATA_FILES[("invoices", fmt)], data_dir / DATA_FILES[("payments", fmt)]


def ensure_data(
    data_dir: Path, rows: int, formats: Sequence[str], seed: int = SEED, log: Any = None
) -> dict[str, Any]:
    """Generate the size's data set once (missing formats only) and return expected.json."""
    from kalla.bench.generate import DEFAULT_CHUNK_ROWS, GENERATOR_VERSION, write_dataset

    info_path = data_dir / EXPECTED_FILE
    info: dict[str, Any] = {}
    if info_path.exists():
        info = json.loads(info_path.read_text())
    same = (
        info.get("generator_version") == GENERATOR_VERSION
        and info.get("n_per_side") == rows
        and info.get("seed") == seed
        and info.get("chunk_rows") == DEFAULT_CHUNK_ROWS
    )
    have = set(info.get("formats", [])) if same else set()
    missing = [
        f for f in formats if f not in have or not all(p.exists() for p in data_paths(data_dir, f))
    ]
    if missing:
        if log:
            log(f"generating {size_label(rows)}/side ({', '.join(missing)}) in {data_dir} …")
        info = write_dataset(data_dir, rows, formats=missing, seed=seed)
        if log:
            log(f"  generated in {info['seconds']:.1f} s")
    return info


def _warm_cache(paths: Sequence[Path], max_bytes: int) -> bool:
    """Read the inputs once so the first engine does not pay for a cold page cache."""
    if sum(p.stat().st_size for p in paths) > max_bytes:
        return False
    for path in paths:
        with path.open("rb") as handle:
            while handle.read(16 * 2**20):
                pass
    return True


# ----------------------------------------------------------------------------- processes


@dataclass
class Measurement:
    """One whole-process run of one engine."""

    engine: str
    run: int
    wall_s: float
    peak_rss_bytes: int
    returncode: int
    status: str = OK
    counts: dict[str, int] = field(default_factory=dict)
    file_counts: dict[str, int] = field(default_factory=dict)
    reported: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    cpu_s: float = 0.0  # user + system CPU seconds of the process


class Launcher:
    """Starts engines through :mod:`kalla.bench.launcher`, a fresh small process.

    Measuring a child started by the harness itself would report at least the harness's own
    RSS as the child's peak (see the launcher's docstring).
    """

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "kalla.bench.launcher"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(
        self, argv: Sequence[str], env: dict[str, str], timeout_s: float, out: Path, err: Path
    ) -> dict[str, Any]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        job = {
            "argv": list(argv),
            "env": env,
            "timeout_s": timeout_s,
            "stdout": str(out),
            "stderr": str(err),
        }
        self._proc.stdin.write(json.dumps(job) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the benchmark launcher process died")
        result: dict[str, Any] = json.loads(line)
        return result

    def close(self) -> None:
        if self._proc.stdin:
            self._proc.stdin.close()
        self._proc.wait(timeout=30)

    def __enter__(self) -> Launcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_process(
    argv: Sequence[str],
    env: dict[str, str],
    timeout_s: float,
    launcher: Launcher | None = None,
) -> tuple[float, int, int, str, str, bool]:
    """(wall s, peak RSS bytes, return code, stdout, stderr, timed out) of one process."""
    wall, rss, rc, stdout, stderr, timed_out, _ = run_process_cpu(argv, env, timeout_s, launcher)
    return wall, rss, rc, stdout, stderr, timed_out


def run_process_cpu(
    argv: Sequence[str],
    env: dict[str, str],
    timeout_s: float,
    launcher: Launcher | None = None,
) -> tuple[float, int, int, str, str, bool, float]:
    """:func:`run_process` plus the CPU seconds (user + system) the process used."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="kalla-bench-") as tmp:
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        if launcher is not None:
            result = launcher.run(argv, env, timeout_s, out, err)
        else:
            with out.open("wb") as fo, err.open("wb") as fe:
                result = run_one(list(argv), env, timeout_s, fo, fe)
        stdout = out.read_text("utf-8", "replace")
        stderr = err.read_text("utf-8", "replace")
    return (
        float(result["wall_s"]),
        int(result["peak_rss_bytes"]),
        int(result["returncode"]),
        stdout,
        stderr,
        bool(result["timed_out"]),
        float(result.get("cpu_s", 0.0)),
    )


def _find_counts(obj: Any) -> dict[str, int] | None:
    """The three count keys anywhere in a (nested) JSON object."""
    if isinstance(obj, dict):
        if all(k in obj for k in COUNT_KEYS):
            return {k: int(obj[k]) for k in COUNT_KEYS}
        for value in obj.values():
            found = _find_counts(value)
            if found:
                return found
    return None


def parse_summary(stdout: str) -> dict[str, Any] | None:
    """The JSON summary an engine printed: the whole stdout, or its last JSON line."""
    text = stdout.strip()
    if not text:
        return None
    try:
        value = json.loads(text)
        if isinstance(value, dict):
            return value
    except json.JSONDecodeError:
        pass
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    return None


def _output_file_counts(out_dir: Path) -> dict[str, int]:
    """Rows in the three outputs, read from Parquet footers wherever they were written."""
    found: dict[str, int] = {}
    for key, name in zip(
        COUNT_KEYS, (MATCHED_FILE, UNMATCHED_LEFT_FILE, UNMATCHED_RIGHT_FILE), strict=True
    ):
        hits = sorted(out_dir.rglob(name)) if out_dir.exists() else []
        if len(hits) == 1:
            with contextlib.suppress(Exception):  # an unreadable output is judged elsewhere
                found[key] = parquet_rows(hits[0])
    return found


def recipe_path() -> Path:
    """The packaged benchmark recipe."""
    path = Path(str(resources.files("kalla.bench").joinpath("recipe.json")))
    if not path.exists():  # pragma: no cover - a wheel built without package data
        raise FileNotFoundError("kalla/bench/recipe.json is missing from the installation")
    return path


def kalla_command() -> list[str]:
    """How to start the ``kalla`` CLI of this interpreter."""
    script = Path(sys.executable).with_name("kalla")
    if script.exists():
        return [str(script)]
    found = shutil.which("kalla")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from kalla.cli import main; sys.exit(main())"]


def engine_argv(
    engine: str,
    left: Path,
    right: Path,
    out: Path,
    fmt: str,
    expected: dict[str, int],
    memory_limit: int | None,
) -> list[str]:
    if engine == KALLA:
        return [
            *kalla_command(),
            "run",
            str(recipe_path()),
            "--source",
            f"invoices={left}",
            "--source",
            f"payments={right}",
            "--output",
            str(out),
            "--json",
            *(["--memory-limit", str(memory_limit)] if memory_limit else []),
        ]
    argv = [sys.executable, "-m", "kalla.bench.peers", engine]
    argv += ["--left", str(left), "--right", str(right), "--out", str(out), "--format", fmt]
    if memory_limit:
        argv += ["--memory-limit", str(memory_limit)]
    if engine == "floor":
        argv += ["--counts", ",".join(str(expected[k]) for k in COUNT_KEYS)]
    return argv


def measure(
    engine: str,
    run: int,
    left: Path,
    right: Path,
    out: Path,
    fmt: str,
    expected: dict[str, int],
    memory_limit: int | None,
    timeout_s: float,
    launcher: Launcher | None = None,
) -> Measurement:
    """Run one engine once, check its counts, clean its outputs."""
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if memory_limit:
        env["KALLA_MEMORY_LIMIT"] = str(memory_limit)
    argv = engine_argv(engine, left, right, out, fmt, expected, memory_limit)
    wall, rss, rc, stdout, stderr, timed_out, cpu = run_process_cpu(argv, env, timeout_s, launcher)
    m = Measurement(
        engine=engine, run=run, wall_s=wall, peak_rss_bytes=rss, returncode=rc, cpu_s=cpu
    )
    summary = parse_summary(stdout)
    if summary:
        m.reported = summary
    if timed_out:
        m.status, m.note = TIMEOUT, f"killed after {timeout_s:.0f} s"
    elif rc == -signal.SIGKILL:
        m.status, m.note = KILLED, "killed by SIGKILL (out of memory?)"
    elif rc != 0:
        tail = (stderr.strip() or stdout.strip()).splitlines()[-3:]
        m.status, m.note = FAILED, f"exit {rc}: " + " | ".join(tail)[-400:]
    else:
        counts = _find_counts(summary) if summary else None
        m.file_counts = _output_file_counts(out) if engine != "floor" else {}
        if counts is None:
            m.status, m.note = FAILED, "no JSON summary with the three counts on stdout"
        else:
            m.counts = counts
            expected_counts = {k: expected[k] for k in COUNT_KEYS}
            if counts != expected_counts:
                m.status = WRONG
                m.note = "counts " + _fmt_counts(counts) + " ≠ expected " + _fmt_counts(expected)
            elif m.file_counts and any(m.file_counts.get(k, v) != v for k, v in counts.items()):
                m.status = WRONG
                m.note = "files hold " + _fmt_counts(m.file_counts) + ", summary says otherwise"
    shutil.rmtree(out, ignore_errors=True)
    return m


def _fmt_counts(counts: dict[str, int]) -> str:
    return "/".join(f"{counts.get(k, '?')}" for k in COUNT_KEYS)


# ----------------------------------------------------------------------------- one case


@dataclass
class EngineResult:
    """All runs of one engine on one size and format, summarised."""

    engine: str
    status: str
    runs: list[Measurement]
    median_s: float | None = None
    min_s: float | None = None
    max_s: float | None = None
    ratio: float | None = None  # median of per-run ratios to the baseline
    ratio_of_medians: float | None = None
    peak_rss_bytes: int | None = None  # the largest over runs
    counts: dict[str, int] = field(default_factory=dict)
    differs_from_kalla: bool = False
    note: str = ""


@dataclass
class CaseResult:
    size: str
    rows: int
    fmt: str
    expected: dict[str, int]
    baseline: str | None
    engines: list[EngineResult]
    cache_warmed: bool
    input_bytes: int
    other_load: float | None = None  # share of the cores other processes used meanwhile


def summarise(
    measurements: dict[str, list[Measurement]], preferred: Sequence[str] = BASELINES
) -> tuple[str | None, list[EngineResult]]:
    """Status, medians, per-pair ratios and peak RSS per engine."""
    results: dict[str, EngineResult] = {}
    for engine, runs in measurements.items():
        bad = [m for m in runs if m.status != OK]
        status = OK
        if bad:
            ranked = (WRONG, KILLED, TIMEOUT, FAILED)
            status = next(s for s in ranked if any(m.status == s for m in bad))
        good = [m.wall_s for m in runs if m.status == OK]
        result = EngineResult(engine=engine, status=status, runs=runs)
        timed = [m.wall_s for m in runs if m.status in (OK, WRONG)]
        if timed:
            result.median_s = statistics.median(timed)
            result.min_s, result.max_s = min(timed), max(timed)
        rss = [m.peak_rss_bytes for m in runs if m.status in (OK, WRONG)]
        result.peak_rss_bytes = max(rss) if rss else None
        counted = [m.counts for m in runs if m.counts]
        result.counts = counted[-1] if counted else {}
        notes = sorted({m.note for m in runs if m.note})
        result.note = "; ".join(notes)
        if status == OK and not good:  # pragma: no cover - no runs at all
            result.status = FAILED
        results[engine] = result

    baseline = next(
        (b for b in preferred if b in results and results[b].status == OK),
        None,
    )
    if baseline:
        base_runs = {m.run: m for m in measurements[baseline] if m.status == OK}
        for engine, result in results.items():
            pairs = [
                m.wall_s / base_runs[m.run].wall_s
                for m in measurements[engine]
                if m.status in (OK, WRONG) and m.run in base_runs
            ]
            if pairs:
                result.ratio = statistics.median(pairs)
            base_median = results[baseline].median_s
            if result.median_s is not None and base_median:
                result.ratio_of_medians = result.median_s / base_median
    kalla = results.get(KALLA)
    if kalla and kalla.counts:
        for result in results.values():
            result.differs_from_kalla = bool(result.counts) and result.counts != kalla.counts
    return baseline, list(results.values())


def run_case(
    rows: int,
    fmt: str,
    engines: Sequence[str],
    runs: int,
    data_dir: Path,
    work_dir: Path,
    expected: dict[str, int],
    memory_limit: int | None,
    timeout_s: float,
    log: Any = print,
    launcher: Launcher | None = None,
) -> CaseResult:
    """Every engine ``runs`` times on one size and format, interleaved."""
    left, right = data_paths(data_dir, fmt)
    warmed = _warm_cache([left, right], max_bytes=_total_memory() // 4)
    measurements: dict[str, list[Measurement]] = {e: [] for e in engines}
    busy_before, started = _cpu_busy_seconds(), time.perf_counter()
    for run in range(runs):
        order = list(engines[run % len(engines) :]) + list(engines[: run % len(engines)])
        for engine in order:
            out = work_dir / f"{size_label(rows)}-{fmt}" / engine
            m = measure(
                engine, run, left, right, out, fmt, expected, memory_limit, timeout_s, launcher
            )
            measurements[engine].append(m)
            flag = "" if m.status == OK else f"  {m.status} {m.note}"
            log(
                f"  {size_label(rows):>5} {fmt:<7} run {run + 1}/{runs} {engine:<10} "
                f"{m.wall_s:8.2f} s {_fmt_bytes(m.peak_rss_bytes):>10}{flag}"
            )
    other_load = None
    busy_after, elapsed = _cpu_busy_seconds(), time.perf_counter() - started
    if busy_before is not None and busy_after is not None and elapsed > 0:
        ours = sum(m.cpu_s for runs_ in measurements.values() for m in runs_)
        cores = _usable_cores()
        other_load = max(0.0, (busy_after - busy_before - ours) / (elapsed * cores))
    baseline, results = summarise(measurements)
    return CaseResult(
        size=size_label(rows),
        rows=rows,
        fmt=fmt,
        expected={k: expected[k] for k in COUNT_KEYS},
        baseline=baseline,
        engines=results,
        cache_warmed=warmed,
        input_bytes=left.stat().st_size + right.stat().st_size,
        other_load=other_load,
    )


# ----------------------------------------------------------------------------- reporting


def _cpu_busy_seconds() -> float | None:
    """CPU seconds all processes have used since boot (Linux ``/proc/stat``)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):  # pragma: no cover - not Linux
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _total_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return 8 * 2**30


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    usable = _usable_cores()
    versions: dict[str, str | None] = {}
    for package in ("kalla", "datafusion", "pyarrow", "duckdb", "polars", "pandas", "datacompy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu_count": os.cpu_count(),
        "usable_cores": usable,
        "cpu_model": _cpu_model(),
        "memory_bytes": _total_memory(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": versions,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "–"
    if n >= 2**30:
        return f"{n / 2**30:.2f} GiB"
    if n >= 2**20:
        return f"{n / 2**20:.0f} MiB"
    return f"{n / 2**10:.0f} KiB"


def _fmt_s(s: float | None) -> str:
    if s is None:
        return "–"
    return f"{s:.2f}" if s < 100 else f"{s:.0f}"


def _fmt_ratio(r: float | None) -> str:
    return "–" if r is None else f"{r:.2f}×"


def render_markdown(report: dict[str, Any], cases: Sequence[CaseResult]) -> str:
    m = report["machine"]
    lines = [
        f"# Kalla benchmark: invoices vs payments ({report['started']})",
        "",
        f"Machine: {m['usable_cores']} cores ({m['cpu_model']}), "
        f"{_fmt_bytes(m['memory_bytes'])} memory, {m['os']}, Python {m['python']}.  ",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v) + ".  ",
        f"Runs per engine: {report['runs']} (interleaved, order rotated per run); "
        f"memory limit: {report['memory_limit'] or 'engine defaults'}; "
        f"load average at start {_fmt_load(m['load_average'])}, "
        f"at end {_fmt_load(report.get('load_average_end'))}.",
        "",
        *_busy_warning(cases),
        "Whole-process wall time (median, min–max over runs), ratio to the baseline "
        "(median of per-run ratios, so drift cancels; < 1 is faster), peak RSS (largest "
        "over runs). Counts are matched / unmatched left / unmatched right; an engine whose "
        "counts differ from the generator's exact expected counts is **WRONG** and its "
        "time is no result.",
        "",
    ]
    for case in cases:
        lines.append(
            f"## {case.size}/side, {case.fmt} in ({_fmt_bytes(case.input_bytes)} of input)"
        )
        lines.append("")
        lines.append(
            f"Expected counts {_fmt_counts(case.expected)}; ratios to "
            f"**{case.baseline or 'none (no baseline ran correctly)'}**"
            + ("" if case.cache_warmed else "; inputs too large to pre-warm the page cache")
            + (
                ""
                if case.other_load is None
                else f"; other processes used {case.other_load:.0%} of the cores meanwhile"
            )
            + "."
        )
        lines.append("")
        lines.append("| engine | median s | min–max s | ratio | peak RSS | counts | status |")
        lines.append("|---|---:|---:|---:|---:|---|---|")
        for r in case.engines:
            status = "ok" if r.status == OK else f"**{r.status}**"
            if r.status != OK and r.note:
                status += f": {_md_escape(r.note)[:160]}"
            elif r.differs_from_kalla:
                status += " (≠ kalla)"
            spread = "–" if r.min_s is None else f"{_fmt_s(r.min_s)}–{_fmt_s(r.max_s)}"
            ratio = _fmt_ratio(r.ratio) if r.status == OK else f"({_fmt_ratio(r.ratio)})"
            lines.append(
                f"| {r.engine} | {_fmt_s(r.median_s)} | {spread} | {ratio} | "
                f"{_fmt_bytes(r.peak_rss_bytes)} | {_fmt_counts(r.counts) if r.counts else '–'} "
                f"| {status} |"
            )
        lines.append("")
    lines.append("Engines:")
    lines.append("")
    for engine in report["engines"]:
        lines.append(f"- **{engine}**: {DESCRIPTIONS.get(engine, '')}")
    lines.append("")
    lines.append(f"Reproduce: `{report['command']}`")
    lines.append("")
    return "\n".join(lines)


BUSY_SHARE = 0.10


def _busy_warning(cases: Sequence[CaseResult]) -> list[str]:
    """A warning when other processes used a noticeable share of the cores meanwhile."""
    worst = max((c.other_load for c in cases if c.other_load is not None), default=0.0)
    if worst <= BUSY_SHARE:
        return []
    return [
        f"> **Busy machine**: other processes used up to {worst:.0%} of the cores while "
        "engines ran; seconds are inflated and noisy, ratios less so. Rerun on a quiet "
        "machine before quoting.",
        "",
    ]


def _fmt_load(load: Sequence[float] | None) -> str:
    return "–" if not load else " ".join(f"{x:.2f}" for x in load)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _case_json(case: CaseResult) -> dict[str, Any]:
    data = asdict(case)
    for engine in data["engines"]:
        for run in engine["runs"]:
            run["reported"] = {k: v for k, v in run["reported"].items() if k != "manifest"}
    return dict(data)


# ----------------------------------------------------------------------------- entry points


def select_engines(engines: Sequence[str] | None, rows: int) -> list[str]:
    """The engines to run at a size: the defaults drop slow ones at big sizes."""
    if engines:
        unknown = [e for e in engines if e not in ALL_ENGINES]
        if unknown:
            raise ValueError(f"unknown engine(s) {unknown}; choose from {', '.join(ALL_ENGINES)}")
        return list(dict.fromkeys(engines))
    return [e for e in DEFAULT_ENGINES if rows <= SLOW_ENGINE_MAX_ROWS.get(e, rows)]


def run_bench(
    sizes: Sequence[str | int] = ("1m",),
    formats: Sequence[str] = ("parquet", "csv"),
    runs: int = 3,
    engines: Sequence[str] | None = None,
    data_dir: Path = Path("bench/data"),
    results_dir: Path = Path("bench/results"),
    memory_limit: str | int | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    seed: int = SEED,
    log: Any = print,
    command: str | None = None,
) -> Path:
    """Run the benchmark and write its tables; returns the path of ``latest.md``.

    Writes ``<results_dir>/<date>-<size>.md`` and ``.json`` per size, and ``latest.md`` /
    ``latest.json`` for the whole invocation.
    """
    if runs < 1:
        raise ValueError("runs must be >= 1")
    bad = [f for f in formats if f not in ("parquet", "csv")]
    if bad:
        raise ValueError(f"unknown format(s) {bad}; use parquet and/or csv")
    limit = parse_size(memory_limit) if isinstance(memory_limit, str) else memory_limit
    row_sizes = [s if isinstance(s, int) else parse_rows(s) for s in sizes]
    started = datetime.now(UTC).astimezone()
    date = started.strftime("%Y-%m-%d")
    data_dir, results_dir = Path(data_dir), Path(results_dir)
    work_dir = results_dir / "tmp"
    results_dir.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    report: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "machine": machine,
        "runs": runs,
        "formats": list(formats),
        "sizes": [size_label(r) for r in row_sizes],
        "memory_limit": _fmt_bytes(limit) if limit else None,
        "seed": seed,
        "engines": [],
        "command": command or _default_command(row_sizes, formats, runs, engines, limit),
    }
    all_cases: list[CaseResult] = []
    for rows in row_sizes:
        chosen = select_engines(engines, rows)
        for engine in chosen:
            if engine not in report["engines"]:
                report["engines"].append(engine)
        size_dir = data_dir / size_label(rows)
        info = ensure_data(size_dir, rows, formats, seed=seed, log=log)
        expected = info["expected"]
        cases = []
        for fmt in formats:
            log(f"{size_label(rows)}/side, {fmt}: {', '.join(chosen)} × {runs} runs")
            with Launcher() as launcher:
                case = run_case(
                    rows,
                    fmt,
                    chosen,
                    runs,
                    size_dir,
                    work_dir,
                    expected,
                    limit,
                    timeout_s,
                    log,
                    launcher,
                )
            cases.append(case)
        all_cases.extend(cases)
        report["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
        _write(results_dir / f"{date}-{size_label(rows)}", report, cases)
    shutil.rmtree(work_dir, ignore_errors=True)
    report["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    latest = results_dir / "latest"
    _write(latest, report, all_cases)
    return latest.with_suffix(".md")


def _write(stem: Path, report: dict[str, Any], cases: Sequence[CaseResult]) -> None:
    stem.with_suffix(".md").write_text(render_markdown(report, cases))
    payload = {**report, "cases": [_case_json(c) for c in cases]}
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=2, default=str) + "\n")


def _default_command(
    sizes: Sequence[int],
    formats: Sequence[str],
    runs: int,
    engines: Sequence[str] | None,
    limit: int | None,
) -> str:
    parts = [
        "kalla bench",
        "--sizes " + ",".join(size_label(s) for s in sizes),
        "--formats " + ",".join(formats),
        f"--runs {runs}",
    ]
    if engines:
        parts.append("--engines " + ",".join(engines))
    if limit:
        parts.append(
            f"--memory-limit {_fmt_bytes(limit).replace(' GiB', 'G').replace(' MiB', 'M')}"
        )
    return " ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kalla.bench``: generate data as needed, run, write the tables."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m kalla.bench",
        description="Benchmark Kalla against DuckDB, Polars, DataFusion, pandas, datacompy "
        "and the I/O floor on the invoices-vs-payments workload.",
    )
    parser.add_argument("--sizes", default="1m", help="rows per side, e.g. 100k,1m,10m,100m")
    parser.add_argument("--formats", default="parquet,csv", help="parquet,csv")
    parser.add_argument("--runs", type=int, default=3, help="runs per engine (median reported)")
    parser.add_argument(
        "--engines",
        default=None,
        help=f"comma list from {','.join(ALL_ENGINES)} (default: all; pandas and datacompy "
        "only up to 10m)",
    )
    parser.add_argument("--data-dir", type=Path, default=Path("bench/data"))
    parser.add_argument("--results-dir", type=Path, default=Path("bench/results"))
    parser.add_argument(
        "--memory-limit",
        default=None,
        help="e.g. 16G; Kalla and the peers that have a limit (DuckDB, DataFusion) get it",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help="seconds per process before it is killed",
    )
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument(
        "--generate-only", action="store_true", help="only generate the data sets into --data-dir"
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    sizes = [s for s in args.sizes.split(",") if s.strip()]
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    engines = [e.strip() for e in args.engines.split(",") if e.strip()] if args.engines else None
    try:
        if args.generate_only:
            for size in sizes:
                rows = parse_rows(size)
                ensure_data(args.data_dir / size_label(rows), rows, formats, args.seed, print)
            return 0
        path = run_bench(
            sizes=sizes,
            formats=formats,
            runs=args.runs,
            engines=engines,
            data_dir=args.data_dir,
            results_dir=args.results_dir,
            memory_limit=args.memory_limit,
            timeout_s=args.timeout,
            seed=args.seed,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path.read_text())
    print(f"written: {path}")
    return 0
