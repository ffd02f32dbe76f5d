"""Benchmarks, each reported as a ratio to a baseline measured in the same run: `make bench`.

- profiling: `profile_for_goal` on a 100k-row churn table vs. pandas merely reading it.
- sandbox: a trivial script through the local sandbox (bubblewrap, and unisolated) vs. a bare
  `python -c pass` subprocess.
- peak memory (tracemalloc) of profiling vs. of reading.
- profiling a 1 GB CSV: time and peak RSS vs. DuckDB's SUMMARIZE (bench/big_profile.py).
- live progress: Temporal calls with 50 watchers of a run's events vs. with 1 (bench/events_fanout.py).
- the service vs. a bare Temporal workflow of the same shape: latency, throughput, CPU, reads,
  parked runs' memory (bench/engine_floor.py); one run's history sizes (bench/payload_sizes.py).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from activities.column_plan import profile_for_goal
from activities.sandbox import Isolation, SandboxLimits, run_python
from bench.big_profile import run_benchmark as big_profile_benchmark
from bench.engine_floor import run_benchmark as engine_floor_benchmark
from bench.events_fanout import run_benchmark as events_fanout_benchmark
from bench.payload_sizes import run_benchmark as payload_sizes_benchmark
from tests.sample_data import make_churn

REPEATS = 5


def median_seconds(work: Callable[[], object]) -> float:
    timings = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def peak_bytes(work: Callable[[], object]) -> int:
    tracemalloc.start()
    work()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        dataset = root / "churn.csv"
        make_churn(rows=100_000).to_csv(dataset, index=False)
        goal = "Build a customer churn prediction model"
        read = median_seconds(lambda: pd.read_csv(dataset, low_memory=False))
        profile = median_seconds(lambda: profile_for_goal(dataset, goal))
        read_peak = peak_bytes(lambda: pd.read_csv(dataset, low_memory=False))
        profile_peak = peak_bytes(lambda: profile_for_goal(dataset, goal))

        limits = SandboxLimits(wall_seconds=60, memory_mb=1024, cpu_seconds=60,
                               output_bytes=64 * 1024)  # fmt: skip
        bare = median_seconds(
            lambda: subprocess.run([sys.executable, "-I", "-c", "pass"], check=True)
        )
        sandboxed = median_seconds(
            lambda: asyncio.run(run_python("pass\n", dataset, root / "work", limits))
        )
        unisolated = median_seconds(
            lambda: asyncio.run(
                run_python("pass\n", dataset, root / "work", limits, isolation=Isolation.UNISOLATED)
            )
        )

    results: dict[str, object] = {
        "profile_csv_vs_read_csv": {"baseline_s": read, "measured_s": profile,
                                    "ratio": profile / read},
        "profile_csv_peak_memory_vs_read_csv": {"baseline_bytes": read_peak,
                                                "measured_bytes": profile_peak,
                                                "ratio": profile_peak / read_peak},
        "sandbox_bubblewrap_vs_bare_subprocess": {"baseline_s": bare, "measured_s": sandboxed,
                                                  "ratio": sandboxed / bare},
        "sandbox_unisolated_vs_bare_subprocess": {"baseline_s": bare, "measured_s": unisolated,
                                                  "ratio": unisolated / bare},
    }  # fmt: skip
    results["events_temporal_calls_50_vs_1_watchers"] = events_fanout_benchmark()
    results["service_vs_bare_temporal_workflow"] = engine_floor_benchmark()
    results["payload_sizes_one_run"] = payload_sizes_benchmark()
    results["profile_1gb_csv_vs_duckdb_summarize"] = big_profile_benchmark()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
