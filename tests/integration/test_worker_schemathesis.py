"""schemathesis against the worker's own OpenAPI document: no generated input gets a 5xx.

Generated job requests that happen to be valid are accepted and then fail on their made-up
sources, which is the point: the worker must answer every one with a 2xx/4xx and stay up.
The queue is made large so that a burst of accepted jobs is not a (legitimate) 503.
"""

from __future__ import annotations

from pathlib import Path

from kalla_test_services import run_schemathesis
from test_worker_process import Worker


def test_no_server_error_on_generated_input(tmp_path: Path) -> None:
    worker = Worker(tmp_path, KALLA_WORKER_QUEUE_SIZE="100000", KALLA_CALLBACK_RETRY_SECONDS="1")
    try:
        code, output, cases = run_schemathesis(f"{worker.url}/openapi.json")
        assert code == 0, output[-6000:]
        assert cases > 20, output[-3000:]
        assert worker.http.get("/health").status_code == 200
        assert " 500 " not in worker.log()
    finally:
        rc = worker.terminate()
    assert rc == 0, worker.log()[-3000:]
