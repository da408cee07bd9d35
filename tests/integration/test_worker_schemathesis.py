"""schemathesis against the worker's own OpenAPI document: no generated input gets a 5xx.

Generated job requests that happen to be valid are accepted and then fail on their made-up
sources, which is the point: the worker must answer every one with a 2xx/4xx and stay up.
The queue is made large so that a burst of accepted jobs is not a (legitimate) 503.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from test_worker_process import Worker

MAX_EXAMPLES = 8


def test_no_server_error_on_generated_input(tmp_path: Path) -> None:
    worker = Worker(tmp_path, KALLA_WORKER_QUEUE_SIZE="100000", KALLA_CALLBACK_RETRY_SECONDS="1")
    try:
        result = subprocess.run(
            [
                str(Path(sys.executable).with_name("st")),
                "--no-color",
                "run",
                f"{worker.url}/openapi.json",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                str(MAX_EXAMPLES),
                "--phases",
                "examples,coverage,fuzzing",
                "--workers",
                "1",
                "--seed",
                "7",
                "--request-timeout",
                "30",
            ],
            capture_output=True,
            text=True,
            timeout=240,
        )
        output = result.stdout + result.stderr
        cases = re.search(r"(\d+) generated", output)
        print(f"schemathesis: {cases.group(1) if cases else '?'} test cases generated")
        assert result.returncode == 0, output[-6000:]
        assert cases is not None and int(cases.group(1)) > 20, output[-3000:]
        assert worker.http.get("/health").status_code == 200
        assert " 500 " not in worker.log()
    finally:
        rc = worker.terminate()
    assert rc == 0, worker.log()[-3000:]
