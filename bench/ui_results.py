"""Results pages on a big run: how long ``kalla serve`` takes to answer the web UI's result
requests on a 1M-row unmatched table (page, deep page, sort, filter, age column).

Starts a real ``kalla serve`` (embedded, SQLite) in a temp dir, runs the demo recipe on
generated data where 1M invoices find no payment, then times each request the results
table makes, ``--repeat`` times each, interleaved, and prints the median, p90 and max of
the server's answer time (the client's wall time for one whole HTTP response on loopback).

    python bench/ui_results.py [--rows 1000000] [--repeat 15] [--output FILE.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pyarrow.parquet as pq

from kalla.bench.generate import generate
from kalla.demo import DEMO_RECIPE

IN_FLIGHT = ("queued", "running")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _requests(n: int) -> list[tuple[str, dict[str, object]]]:
    """What the results table asks for, as (label, query parameters)."""
    deep = max(0, n // 2)
    return [
        ("first page (50 rows)", {"limit": 50}),
        (f"page at row {deep:,}", {"limit": 50, "offset": deep}),
        ("sort by amount, descending", {"limit": 50, "sort": "amount", "order": "desc"}),
        ("sort by issue_date", {"limit": 50, "sort": "issue_date"}),
        ("filter currency = EUR", {"limit": 50, "filter_column": "currency",
                                   "filter_op": "eq", "filter_value": "EUR"}),
        ("filter description contains 'Travel'", {"limit": 50, "filter_column": "description",
                                                  "filter_op": "contains",
                                                  "filter_value": "Travel"}),
        ("filter amount > 1000, sort by amount", {"limit": 50, "filter_column": "amount",
                                                  "filter_op": "gt", "filter_value": "1000",
                                                  "sort": "amount"}),
        ("age column, sort by age descending", {"limit": 50, "age_from": "issue_date",
                                                "sort": "age_days", "order": "desc"}),
        ("two filters + sort, page 3", {"limit": 50, "offset": 100,
                                        "filter_column": ["currency", "amount"],
                                        "filter_op": ["eq", "gte"],
                                        "filter_value": ["GBP", "500"],
                                        "sort": "issue_date", "order": "desc"}),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="kalla-ui-bench-") as name:
        work = Path(name)
        invoices, payments = generate(args.rows, seed=3)
        pq.write_table(invoices, work / "invoices.parquet")
        pq.write_table(payments.slice(0, 1000), work / "payments.parquet")  # ~all unmatched
        port = _free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("KALLA_")},
            "DATABASE_URL": f"sqlite:///{work / 'kalla.db'}",
            "STAGING_PATH": str(work / "staging"),
            "KALLA_OUTPUT_ROOT": str(work / "runs"),
        }
        env.pop("WORKER_URL", None)
        log = open(work / "app.log", "wb")  # noqa: SIM115 - closed below
        app = subprocess.Popen(
            [sys.executable, "-m", "kalla.cli", "serve", "--port", str(port)],
            env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            http = httpx.Client(base_url=base, timeout=120, trust_env=False)
            for _ in range(300):
                try:
                    if http.get("/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            http.post("/api/recipes", json=DEMO_RECIPE).raise_for_status()
            with (
                open(work / "invoices.parquet", "rb") as inv,
                open(work / "payments.parquet", "rb") as pay,
            ):
                files = {"invoices": ("i.parquet", inv), "payments": ("p.parquet", pay)}
                started = http.post(
                    "/api/runs", data={"recipe_id": DEMO_RECIPE["recipe_id"]}, files=files
                )
            started.raise_for_status()
            run_id = started.json()["id"]
            while (run := http.get(f"/api/runs/{run_id}").json())["status"] in IN_FLIGHT:
                time.sleep(0.5)
            assert run["status"] == "completed", run
            unmatched = run["counts"]["unmatched_left"]
            url = f"/api/runs/{run_id}/results/unmatched_left"
            cases = _requests(unmatched)
            times: dict[str, list[float]] = {label: [] for label, _ in cases}
            totals: dict[str, int] = {}
            for label, params in cases:  # warm-up: one of each
                response = http.get(url, params=params)
                response.raise_for_status()
                totals[label] = response.json()["total"]
            for _ in range(args.repeat):  # interleaved, so drift spreads over every case
                for label, params in cases:
                    begin = time.perf_counter()
                    http.get(url, params=params).raise_for_status()
                    times[label].append((time.perf_counter() - begin) * 1000)
        finally:
            app.send_signal(signal.SIGTERM)
            app.wait(timeout=30)
            log.close()

    lines = [
        f"# Results pages on a {unmatched:,}-row unmatched table",
        "",
        f"`python bench/ui_results.py --rows {args.rows} --repeat {args.repeat}` on "
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())} at the end. "
        "Milliseconds for one whole HTTP response of `GET /api/runs/{id}/results/"
        "unmatched_left` on loopback (50 rows as JSON), "
        f"{args.repeat} requests per case, cases interleaved.",
        "",
        "| request | rows matching | median ms | p90 ms | max ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, values in times.items():
        ordered = sorted(values)
        p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
        lines.append(
            f"| {label} | {totals[label]:,} | {statistics.median(values):.0f} | {p90:.0f} "
            f"| {max(values):.0f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
        args.output.with_suffix(".json").write_text(
            json.dumps({"rows": unmatched, "repeat": args.repeat, "ms": times}, indent=1) + "\n",
            encoding="utf-8",
        )


if __name__ == "__main__":
    main()
