"""Profiling a 1 GB CSV: peak RSS and time, against DuckDB's own `SUMMARIZE` of the same file.

The file is generated in a temporary folder (bench/big_table.py, the same bytes every run).
Each side runs in a fresh Python process that reports its own time and peak resident memory
(VmHWM from /proc: getrusage's ru_maxrss would start from the parent's size at fork, which
exec does not reset), so neither inherits the other's heap.

    python -m bench.big_profile   # or as part of `make bench`
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.big_table import write_big_csv

SIZE_BYTES = 1024**3
GOAL = "predict whether a customer churned"

# Both children time only the work, not the interpreter's start, and report peak RSS in KB.
_PROFILE = """
import json, sys, time
from activities.column_plan import profile_for_goal
started = time.perf_counter()
profile = profile_for_goal(sys.argv[1], sys.argv[2])
seconds = time.perf_counter() - started
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "peak_kb": peak, "rows": profile.rows}))
"""
_SUMMARIZE = """
import json, sys, time
import duckdb
started = time.perf_counter()
con = duckdb.connect(config={"threads": 2})
con.execute("SET enable_progress_bar = false")
path = sys.argv[1].replace("'", "''")
con.execute(f"SUMMARIZE SELECT * FROM read_csv('{path}')").fetchall()
seconds = time.perf_counter() - started
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "peak_kb": peak}))
"""


def _measure(script: str, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_benchmark(size_bytes: int = SIZE_BYTES) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-big-profile-") as folder:
        dataset = Path(folder) / "big.csv"
        write_big_csv(dataset, size_bytes)
        file_bytes = dataset.stat().st_size
        summarize = _measure(_SUMMARIZE, str(dataset))
        profile = _measure(_PROFILE, str(dataset), GOAL)
    return {
        "file_bytes": file_bytes,
        "rows": profile["rows"],
        "duckdb_summarize_s": summarize["seconds"],
        "profile_s": profile["seconds"],
        "time_ratio": profile["seconds"] / summarize["seconds"],
        "duckdb_summarize_peak_rss_mb": summarize["peak_kb"] / 1024,
        "profile_peak_rss_mb": profile["peak_kb"] / 1024,
        "peak_rss_ratio": profile["peak_kb"] / summarize["peak_kb"],
    }


if __name__ == "__main__":
    print(json.dumps({"profile_1gb_csv_vs_duckdb_summarize": run_benchmark()}, indent=2))
