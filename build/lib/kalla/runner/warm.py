"""Imported by the forkserver only (``child.PRELOAD``): the first-use work of pure-Python
libraries, done once there, so that every job's child starts warm.

Nothing here may start a thread or touch DataFusion's runtime: a fork keeps only the
thread that forks, and a runtime whose threads are gone would hang the child.
"""

from __future__ import annotations

import sqlglot

# SQL is parsed (recipe checks) and generated (the engine's steps) in the PostgreSQL
# dialect: the first use of a dialect builds its tokenizer tries and generator tables.
_SAMPLE = (
    "SELECT l.id, r.id AS rid, SUM(l.amount) FROM l JOIN r ON l.id = r.ref "
    "AND ABS(l.amount - r.amount) <= 0.02 WHERE l.x IN (1, 2) AND r.y IS NOT NULL "
    "GROUP BY l.id, r.id HAVING COUNT(*) > 1 ORDER BY 1 LIMIT 10"
)
sqlglot.parse_one(_SAMPLE, read="postgres").sql(dialect="postgres")
