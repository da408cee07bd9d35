"""S3 CSV staging rate: the bench's invoices as CSV in an S3 bucket → staged Parquet.

    .venv/bin/python bench/stage_s3.py [--rows 1000000] [--repeat 3]

Uses $AWS_ENDPOINT_URL when set (a real store), otherwise starts moto's S3 server on a free
loopback port (a Python server: it, not Kalla, bounds the transfer rate there). Reports the
whole ``stage_source`` call — parallel ranged GETs, CSV parse, exact typing, Parquet write,
sha256 — in MB/s of CSV and rows/s.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import socket
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import boto3
import pyarrow.csv as pacsv

from kalla.bench.generate import generate
from kalla.connectors import stage_source
from kalla.engine import EngineOptions, make_executor
from kalla.settings import Settings

SETTINGS = Settings()
# Stage as `kalla run` does: with the engine's Parquet writer.
WRITER = make_executor(EngineOptions.from_settings(SETTINGS)).write_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    server = None
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto logs every request
    if not os.environ.get("AWS_ENDPOINT_URL"):
        from moto.server import ThreadedMotoServer

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        os.environ.update(
            AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
            AWS_ALLOW_HTTP="true",
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_REGION="us-east-1",
        )
    try:
        invoices, _ = generate(args.rows)
        buffer = io.BytesIO()
        pacsv.write_csv(invoices, buffer)
        body = buffer.getvalue()
        client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
        bucket = f"kalla-bench-{uuid.uuid4().hex[:8]}"
        client.create_bucket(Bucket=bucket)
        client.put_object(Bucket=bucket, Key="invoices.csv", Body=body)
        uri = f"s3://{bucket}/invoices.csv"
        times = []
        with tempfile.TemporaryDirectory(prefix="kalla-s3-bench-") as tmp:
            for _ in range(args.repeat):
                start = time.perf_counter()
                staged = stage_source(
                    uri, alias="invoices", settings=SETTINGS, staging_dir=Path(tmp), writer=WRITER
                )
                times.append(time.perf_counter() - start)
                staged.path.unlink()
        median = statistics.median(times)
        print(
            f"{len(body) / 1e6:.0f} MB CSV, {args.rows:,} rows: median {median:.2f} s "
            f"({len(body) / median / 1e6:.0f} MB/s, {args.rows / median / 1e6:.2f}M rows/s), "
            f"best {min(times):.2f} s"
        )
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
