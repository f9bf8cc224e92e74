"""Memory over a long run with a rotating population of lines.

    python -m bench.soak [--events 10000000] [--active 5000]

Drives the worker's `BatchProcessor` (engine, checkpoints, idle eviction; no
Kafka, which holds no engine state) with events from a population where every
line lives for two hours of event time and is then replaced by a new one, as
PBX accounts come and go. Prints RSS, tracked lines and changelog writes as
the run goes: with eviction working, all three level off instead of growing.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from tollguard.app.metrics import Metrics
from tollguard.app.processor import BatchProcessor, RawRecord
from tollguard.numbering import DestinationTable, load_default_dial_plans
from tollguard.rulepacks import load_pack

T0 = 1_795_910_400_000
LIFETIME_MS = 2 * 3_600_000
STEP_MS = 10  # event-time spacing: 10^7 events span about 28 hours
FOREIGN = ("0101212", "01044", "01086", "01082", "01063", "01023276", "01022070")


def _rss_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rotating_events(
    n: int, active: int, step_ms: int = STEP_MS, seed: int = 1
) -> Iterator[tuple[str, bytes]]:
    rng = random.Random(seed)
    phase = [rng.randrange(LIFETIME_MS) for _ in range(active)]
    for k in range(n):
        ts = T0 + k * step_ms
        slot = rng.randrange(active)
        line = f"line-{slot}-{(ts + phase[slot]) // LIFETIME_MS}"
        if rng.random() < 0.05:
            callee = rng.choice(FOREIGN) + str(rng.randrange(10**6, 10**7))
        else:
            callee = "03" + str(rng.randrange(10**7, 10**8))
        event = {"call_id": f"s{k}", "ts": ts, "line_id": line, "callee": callee}
        yield line, orjson.dumps(event)


@dataclass
class Sample:
    events: int
    seconds: float
    rss_mib: float
    tracked_lines: int
    state_writes: int
    tombstones: int


def run_soak(
    events: int,
    active: int,
    idle_s: int = 3600,
    batch: int = 5000,
    every: int = 1_000_000,
    partitions: int = 4,
    step_ms: int = STEP_MS,
) -> list[Sample]:
    rules = Path(__file__).resolve().parents[1] / "rules" / "default.yaml"
    proc = BatchProcessor(
        load_pack(rules),
        load_default_dial_plans(),
        DestinationTable.load_default(),
        Metrics(),
        evict_scan_s=0.0,
    )
    samples: list[Sample] = []
    writes = tombstones = 0
    offsets = [0] * partitions
    pending: list[RawRecord] = []
    started = time.perf_counter()
    for k, (line, value) in enumerate(rotating_events(events, active, step_ms), 1):
        p = zlib.crc32(line.encode()) % partitions  # the same in every run
        pending.append(RawRecord("calls.events", p, offsets[p], line.encode(), value))
        offsets[p] += 1
        if len(pending) >= batch:
            proc.process(pending, 0)
            proc.expire(0)
            pending = []
            for record in proc.checkpoint(idle_s * 1000):
                writes += 1
                tombstones += record.value is None
        if k % every == 0 or k == events:
            tracked = sum(len(e.lines) for e in proc.engines.values())
            sample = Sample(
                k, time.perf_counter() - started, _rss_mib(), tracked, writes, tombstones
            )
            samples.append(sample)
            print(
                f"{k:>12,} events {sample.seconds:8.1f}s  RSS {sample.rss_mib:7.1f} MiB  "
                f"lines {tracked:>8,}  state writes {writes:>11,}  tombstones {tombstones:>9,}",
                file=sys.stderr,
                flush=True,
            )
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--active", type=int, default=5000, help="lines alive at any time")
    parser.add_argument("--every", type=int, default=1_000_000, help="report interval")
    args = parser.parse_args(argv)
    samples = run_soak(args.events, args.active, every=args.every)
    first, last = samples[0], samples[-1]
    print(
        f"\nRSS {first.rss_mib:.1f} MiB after {first.events:,} events, "
        f"{last.rss_mib:.1f} MiB after {last.events:,}; tracked lines {first.tracked_lines:,} "
        f"-> {last.tracked_lines:,}; {last.events / last.seconds:,.0f} events/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
