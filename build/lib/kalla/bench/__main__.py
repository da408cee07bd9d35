"""``python -m kalla.bench --sizes 1m --formats parquet,csv --runs 3``."""

from __future__ import annotations

import sys

from kalla.bench.harness import main

if __name__ == "__main__":
    sys.exit(main())
