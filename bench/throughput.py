"""Worker throughput against raw client consumption of the same topic, in one run.

    python -m bench.throughput [--events 300000] [--lines 10000] [--partitions 4]

Starts a real Apache Kafka broker (or uses TOLLGUARD_BENCH_BROKER=host:port),
fills one topic with synthetic call events, then measures on that topic:

* baseline: raw aiokafka `getmany` + `orjson.loads` of every value;
* tollguard: a `tollguard worker` process with the default rule pack, from its
  first counted event to its last (group join and start-up excluded).

Prints both rates and their ratio. Absolute numbers depend on the machine;
the ratio is what to compare across changes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tollguard.app.topics import ensure_tollguard_topics
from tollguard.simulate.traffic import AttackSpec, BackgroundSpec, attack, background, merge
from tollguard.testing.worker_process import WorkerProcess, isolated_settings

T0 = 1_795_910_400_000


def say(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def synthetic_events(n: int, lines: int, seed: int = 11) -> Iterator[tuple[bytes, bytes]]:
    """`n` events from `lines` ordinary lines plus a few attacks, keyed by line."""
    per_line_hour = 20.0
    hours = n / (lines * per_line_hour) * 1.1
    end = T0 + int(hours * 3_600_000)
    streams = [background(BackgroundSpec(lines=lines, calls_per_hour=per_line_hour), T0, end, seed)]
    for i in range(3):
        spec = AttackSpec(line_id=f"bench-attack-{i}", calls=max(50, n // 1000), interval_ms=2_000)
        streams.append(attack(spec, T0 + (i + 1) * (end - T0) // 5, seed + i))
    for count, event in enumerate(merge(*streams)):
        if count >= n:
            return
        yield str(event["line_id"]).encode(), orjson.dumps(event)


async def prefill(bootstrap: str, topic: str, records: Iterator[tuple[bytes, bytes]]) -> int:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=512 * 1024, acks=1
    )
    await producer.start()
    n = 0
    try:
        pending = []
        for key, value in records:
            pending.append(await producer.send(topic, value, key=key))
            n += 1
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
                say(f"  prefilled {n} events")
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return n


async def raw_consume(bootstrap: str, topic: str, expected: int) -> float:
    """Events/s of aiokafka getmany + orjson.loads over the whole topic."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bench-raw-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    try:
        seen = 0
        start: float | None = None
        loads = orjson.loads
        while seen < expected:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batches.values():
                if start is None:
                    start = time.perf_counter()
                for r in records:
                    loads(r.value)
                seen += len(records)
        assert start is not None
        return seen / (time.perf_counter() - start)
    finally:
        await consumer.stop()


@dataclass
class WorkerRun:
    rate: float
    counted: int
    seconds: float


def worker_rate(worker: WorkerProcess, expected: int, timeout: float = 900) -> WorkerRun:
    """Rate between the first and the last counted event, polled from /metrics."""

    def counted() -> int:
        m = worker.metrics()
        events = sum(v for (name, _), v in m.items() if name == "tollguard_events_total")
        rejected = sum(v for (name, _), v in m.items() if name == "tollguard_events_rejected_total")
        dups = m.get(("tollguard_events_duplicate_total", ()), 0.0)
        return int(events + rejected + dups)

    deadline = time.monotonic() + timeout
    first_n, first_t = 0, 0.0
    while time.monotonic() < deadline:
        n = counted()
        if n > 0:
            first_n, first_t = n, time.monotonic()
            break
        time.sleep(0.05)
    last_n, last_t = first_n, first_t
    while time.monotonic() < deadline and last_n < expected:
        time.sleep(0.1)
        n = counted()
        if n != last_n:
            last_n, last_t = n, time.monotonic()
    if last_n < expected:
        raise SystemExit(f"worker counted {last_n} of {expected} events before the timeout")
    seconds = max(last_t - first_t, 1e-6)
    return WorkerRun((last_n - first_n) / seconds, last_n, seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--json", help="also write the results as JSON to this file")
    args = parser.parse_args(argv)

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tollguard-bench-")))
        bootstrap = os.environ.get("TOLLGUARD_BENCH_BROKER")
        broker_desc = f"external broker {bootstrap}"
        if not bootstrap:
            from tollguard.brokers.apache import ApacheKafkaBroker

            broker = ApacheKafkaBroker(tmp / "kafka")
            say("starting Apache Kafka (KRaft) on loopback...")
            bootstrap = broker.start()
            stack.callback(broker.stop)
            broker_desc = broker.describe()
        settings = isolated_settings(bootstrap, tmp, partitions=args.partitions)
        ensure_tollguard_topics(settings)
        say(f"prefilling {args.events} events over {args.lines} lines...")
        n = asyncio.run(
            prefill(bootstrap, settings.topic_events, synthetic_events(args.events, args.lines))
        )

        say("baseline: raw aiokafka getmany + orjson.loads...")
        raw = asyncio.run(raw_consume(bootstrap, settings.topic_events, n))

        say("tollguard worker (default rule pack)...")
        worker = WorkerProcess(settings, tmp / "worker.log")
        worker.start()
        stack.callback(worker.stop)
        run = worker_rate(worker, n)

        results: dict[str, Any] = {
            "machine": (
                f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
            ),
            "broker": broker_desc,
            "events": n,
            "lines": args.lines,
            "partitions": args.partitions,
            "raw_aiokafka_events_per_s": round(raw),
            "worker_events_per_s": round(run.rate),
            "worker_seconds": round(run.seconds, 2),
            "ratio_worker_to_raw": round(run.rate / raw, 4),
        }
    print()
    print(f"{'pipeline':<44}{'events/s':>12}{'ratio':>10}")
    raw_name = "raw aiokafka getmany + orjson.loads"
    print(f"{raw_name:<44}{results['raw_aiokafka_events_per_s']:>12,}{1:>10.3f}")
    print(
        f"{'tollguard worker, default pack':<44}{results['worker_events_per_s']:>12,}"
        f"{results['ratio_worker_to_raw']:>10.3f}"
    )
    print(
        f"\n{results['machine']}; {results['broker']}; {n} events, {args.lines} lines, "
        f"{args.partitions} partitions"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
