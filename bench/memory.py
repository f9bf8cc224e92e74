"""Bytes of worker memory per tracked line, and speed, at 10^4, 10^5 and 10^6 lines.

    python -m bench.memory [--sizes 10000,100000,1000000]

For each size, a fresh `BatchProcessor` with the default rule pack takes one
call from each of N distinct lines (about 3 % international, as ordinary
traffic), then a second round over the same lines. Memory per line is the
growth of the process's RSS over the first round divided by N; speed is the
second round's events/s with N lines already in state. Each size runs in its
own process, so sizes do not share a heap.

RSS is read after the worker's housekeeping has run (`settle`). A second
pass per size runs under `tracemalloc` and reports the live heap per line:
exact, and free of the allocator's page granularity, which dominates RSS at
10^4 lines.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import orjson

from bench.soak import T0, _rss_mib
from tollguard.app.metrics import Metrics
from tollguard.app.processor import BatchProcessor, RawRecord
from tollguard.config import Settings
from tollguard.numbering import DestinationTable, load_default_dial_plans
from tollguard.rulepacks import load_pack

FOREIGN = ("0101212", "01044", "01086", "01082", "01063", "0104930")
BATCH = 5000
IDLE_MS = Settings().idle_evict_s * 1000  # the worker's default


def batches(n: int, round_no: int, seed: int, stem: str = "line") -> Iterator[list[RawRecord]]:
    rng = random.Random(seed + round_no)
    batch: list[RawRecord] = []
    base = T0 + round_no * n * 10
    for i in range(n):
        line = f"{stem}-{i:07d}"
        if rng.random() < 0.03:
            callee = rng.choice(FOREIGN) + str(rng.randrange(10**6, 10**7))
        else:
            callee = "03" + str(rng.randrange(10**7, 10**8))
        event = {
            "call_id": f"r{round_no}-{i}",
            "ts": base + i * 10,
            "line_id": line,
            "callee": callee,
        }
        batch.append(RawRecord("calls.events", i % 4, i, line.encode(), orjson.dumps(event)))
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def settle(proc: BatchProcessor) -> None:
    """The worker's housekeeping: a checkpoint, then (within a minute) an eviction scan.

    The scan first hands the heap freed since the last one (here: the
    checkpoint's records, the round's input) back to the OS.
    """
    proc.checkpoint()
    gc.collect()
    proc.checkpoint(IDLE_MS)


def measure(n: int, traced: bool = False) -> dict[str, float]:
    rules = Path(__file__).resolve().parents[1] / "rules" / "default.yaml"
    proc = BatchProcessor(
        load_pack(rules),
        load_default_dial_plans(),
        DestinationTable.load_default(),
        Metrics(),
        evict_scan_s=0.0,  # every checkpoint below is also the worker's periodic scan
    )
    for batch in batches(5000, 0, 3, stem="warm-up"):
        proc.process(batch, 0)  # first-use allocations are not per-line costs
    del batch
    settle(proc)
    if traced:
        tracemalloc.start()
    before = _rss_mib()
    live_before = tracemalloc.get_traced_memory()[0]
    for batch in batches(n, 0, 7):
        proc.process(batch, 0)
    del batch  # the last batch's records are input, not state
    settle(proc)
    grown = _rss_mib() - before
    tracked = sum(len(e.lines) for e in proc.engines.values()) - 5000
    if traced:
        live = tracemalloc.get_traced_memory()[0] - live_before
        return {"lines": tracked, "live_bytes_per_line": round(live / tracked, 1)}
    elapsed = 0.0
    for batch in batches(n, 1, 7):
        started = time.perf_counter()
        proc.process(batch, 0)
        elapsed += time.perf_counter() - started
    return {
        "lines": tracked,
        "bytes_per_line": round(grown * 1024 * 1024 / tracked, 1),
        "events_per_s": round(n / elapsed),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one, args.traced)))
        return 0
    results = []
    print(f"{'tracked lines':>14}{'RSS B/line':>12}{'live B/line':>13}{'events/s':>12}")
    for size in (int(s) for s in args.sizes.split(",")):
        row: dict[str, float] = {}
        for extra in ([], ["--traced"]):
            out = subprocess.run(
                [sys.executable, "-m", "bench.memory", "--one", str(size), *extra],
                capture_output=True,
                text=True,
                check=True,
            )
            row.update(json.loads(out.stdout.strip().splitlines()[-1]))
        results.append(row)
        print(
            f"{row['lines']:>14,.0f}{row['bytes_per_line']:>12,.0f}"
            f"{row['live_bytes_per_line']:>13,.0f}{row['events_per_s']:>12,.0f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
