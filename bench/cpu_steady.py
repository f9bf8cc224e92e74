"""How steady this machine's CPU is: the same small piece of work, timed many times.

    python -m bench.cpu_steady [--seconds 10] [--processes 1]

Runs a fixed loop of pure Python (about 1 ms) back to back and reports the
distribution of its thread CPU time and wall time. On a quiet machine every
run costs the same. On a virtual machine whose host takes the vCPU away, the
guest still counts that time as the thread's own CPU time (the VM this
project is developed on shows no steal in /proc/stat), so a 1 ms piece shows
up as 10 ms or more. That stretches whatever the worker is doing at the time,
and it is part of every latency figure measured here. With --processes 2 both
vCPUs are kept busy.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time


def _piece() -> int:
    total = 0
    for i in range(20_000):
        total += i * i
    return total


def probe(seconds: float) -> dict[str, float]:
    """CPU and wall time of each fixed piece of work, in ms: median, p99, p99.9, max."""
    cpu: list[float] = []
    wall: list[float] = []
    clock, cpu_clock = time.perf_counter, time.thread_time
    end = clock() + seconds
    while clock() < end:
        c0, w0 = cpu_clock(), clock()
        _piece()
        cpu.append((cpu_clock() - c0) * 1000)
        wall.append((clock() - w0) * 1000)
    cpu.sort()
    wall.sort()
    n = len(cpu)
    median = cpu[n // 2]
    return {
        "pieces": n,
        "cpu_ms_p50": round(median, 2),
        "cpu_ms_p99": round(cpu[int(n * 0.99)], 2),
        "cpu_ms_p999": round(cpu[int(n * 0.999)], 2),
        "cpu_ms_max": round(cpu[-1], 2),
        "wall_ms_max": round(wall[-1], 2),
        "pieces_over_3x_median": sum(1 for c in cpu if c > 3 * median),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args(argv)
    with multiprocessing.Pool(args.processes) as pool:
        results = pool.map(probe, [args.seconds] * args.processes)
    for result in results:
        print(json.dumps({"bench": "cpu_steady", **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
