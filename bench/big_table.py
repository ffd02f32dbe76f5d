"""A large, deterministic churn-like CSV of a chosen size, written by DuckDB in bounded memory.

Every value is a function of the row number (through DuckDB's `hash`), so the same size gives
the same bytes on every machine and every run; nothing random, nothing held in Python.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

# About this many bytes per row in the file below; the row count is sized from it.
BYTES_PER_ROW = 62


def _row_sql(rows: int) -> str:
    h = "hash(i * 2654435761 + {salt})"
    u = "(" + h + " % 1000000) / 1000000.0"  # a value in [0, 1) per row and salt
    return f"""
        SELECT
            i AS customer_id,
            18 + CAST({u.format(salt=1)} * 60 AS INTEGER) AS age,
            CAST({u.format(salt=2)} * 72 AS INTEGER) AS tenure,
            round(20 + {u.format(salt=3)} * 100, 2) AS monthly_charges,
            CASE WHEN {u.format(salt=4)} < 0.02 THEN NULL
                 ELSE round(({u.format(salt=3)} * 100 + 20) * {u.format(salt=2)} * 72, 2)
            END AS total_charges,
            ['month-to-month', 'one year', 'two year'][CAST(1 + {h.format(salt=5)} % 3 AS BIGINT)] AS contract,
            'city_' || ({h.format(salt=6)} % 500)::VARCHAR AS city,
            DATE '2015-01-01' + CAST({u.format(salt=7)} * 3000 AS INTEGER) AS signup,
            CASE WHEN {u.format(salt=8)} < 0.15 + 0.3 * (1 - {u.format(salt=2)}) THEN 'yes'
                 ELSE 'no' END AS churned
        FROM range({rows}) AS t(i)
    """


def write_big_csv(path: Path, size_bytes: int) -> int:
    """Write about `size_bytes` of CSV to path; returns the number of data rows."""
    rows = max(size_bytes // BYTES_PER_ROW, 100)
    target = str(path).replace("'", "''")
    con = duckdb.connect(config={"memory_limit": "256MB", "threads": 2})
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute(f"COPY ({_row_sql(rows)}) TO '{target}' (HEADER, DELIMITER ',')")
    finally:
        con.close()
    return rows
