"""Bytes of worker memory per tracked line, and speed, at 10^4, 10^5 and 10^6 lines.

    python -m bench.memory [--sizes 10000,100000,1000000]

For each size, a fresh `BatchProcessor` with the default rule pack takes one
call from each of N distinct lines (about 3 % international, as ordinary
traffic), then a second round over the same lines. Memory per line is the
growth of the process's RSS over the first round divided by N; speed is the
second round's events/s with N lines already in state. Each size runs in its
own process, so sizes do not share a heap.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

from bench.soak import T0, _rss_mib
from tollguard.app.metrics import Metrics
from tollguard.app.processor import BatchProcessor, RawRecord
from tollguard.numbering import DestinationTable, load_default_dial_plans
from tollguard.rulepacks import load_pack

FOREIGN = ("0101212", "01044", "01086", "01082", "01063", "0104930")
BATCH = 5000


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


def measure(n: int) -> dict[str, float]:
    rules = Path(__file__).resolve().parents[1] / "rules" / "default.yaml"
    proc = BatchProcessor(
        load_pack(rules), load_default_dial_plans(), DestinationTable.load_default(), Metrics()
    )
    for batch in batches(5000, 0, 3, stem="warm-up"):
        proc.process(batch, 0)  # first-use allocations are not per-line costs
    proc.checkpoint()
    gc.collect()
    before = _rss_mib()
    for batch in batches(n, 0, 7):
        proc.process(batch, 0)
    del batch  # the last batch's records are input, not state
    proc.checkpoint()  # as the worker does every second: clears the dirty-line set
    gc.collect()
    grown = _rss_mib() - before
    elapsed = 0.0
    for batch in batches(n, 1, 7):
        started = time.perf_counter()
        proc.process(batch, 0)
        elapsed += time.perf_counter() - started
    tracked = sum(len(e.lines) for e in proc.engines.values()) - 5000
    return {
        "lines": tracked,
        "bytes_per_line": round(grown * 1024 * 1024 / tracked, 1),
        "events_per_s": round(n / elapsed),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one)))
        return 0
    results = []
    print(f"{'tracked lines':>14}{'bytes/line':>12}{'events/s':>12}")
    for size in (int(s) for s in args.sizes.split(",")):
        out = subprocess.run(
            [sys.executable, "-m", "bench.memory", "--one", str(size)],
            capture_output=True,
            text=True,
            check=True,
        )
        row = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(row)
        print(f"{row['lines']:>14,.0f}{row['bytes_per_line']:>12,.0f}{row['events_per_s']:>12,.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
