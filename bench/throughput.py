"""Worker throughput against raw client consumption of the same topic, in one run.

    python -m bench.throughput [--events 1000000] [--lines 100000] [--partitions 4] [--repeat 3]

Starts a real Apache Kafka broker (or uses TOLLGUARD_BENCH_BROKER=host:port),
fills one topic with synthetic call events (one per record) and another with
the same events as envelopes (JSON arrays, partition for partition), then
measures, all in one run:

* baselines: raw aiokafka `getmany` + `orjson.loads` of every value (both
  topics), a naive Faust windowed-table agent and a Faust `take()` agent;
* tollguard: `tollguard worker` processes (1 and 2) with the default rule
  pack on both topics, from the time they spent on batches that held events
  (group join and start-up excluded); each run right after a raw run of its
  own, and one process `--repeat` times (3), the median reported;
* the packer (`tollguard ingest pack`) turning the single-event topic into
  envelopes;
* event-to-block latency on each path at 20 % of that path's measured
  capacity, with the background load produced by `bench.load` over the same
  number of lines, each seen once by the worker before timing starts; and
  its floor: the same path and load through `bench.relay`, a plain aiokafka
  consumer -> producer that decides nothing. An untimed latency run goes
  first, so the broker has compiled the paths of small requests (reported
  apart, as the warm-up).

Prints rates, ratios and latency percentiles. Absolute numbers depend on the
machine; the ratios are what to compare across changes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from statistics import median
from typing import Any

import orjson

from tollguard.app.detector import FETCH_OPTIONS
from tollguard.app.topics import ensure_tollguard_topics
from tollguard.config import Settings
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


async def prefill(
    bootstrap: str, topic: str, records: Iterable[tuple[int | None, bytes, bytes, int]]
) -> int:
    """Produce (partition or None for the key's, key, value, events in it); events sent."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1024 * 1024, acks=1
    )
    await producer.start()
    n = 0
    try:
        pending = []
        for partition, key, value, count in records:
            pending.append(await producer.send(topic, value, key=key, partition=partition))
            n += count
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
                say(f"  prefilled {n} events")
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return n


def single(records: Iterable[tuple[bytes, bytes]]) -> Iterator[tuple[None, bytes, bytes, int]]:
    """Records for `prefill`, one event each, partitioned by key."""
    return ((None, key, value, 1) for key, value in records)


def envelopes(
    records: Iterable[tuple[bytes, bytes]], partitions: int, size: int
) -> Iterator[tuple[int | None, bytes, bytes, int]]:
    """(partition, key, envelope, events) as a packing producer writes them.

    Each event goes to the partition Kafka's default partitioner gives its key
    (murmur2, as for single events), so a line's events stay on one partition.
    """
    from tollguard.adapters.packer import partition_for

    pending: dict[int, list[bytes]] = {}
    for key, value in records:
        p = partition_for(key.decode(), partitions)
        batch = pending.setdefault(p, [])
        batch.append(value)
        if len(batch) >= size:
            yield p, key, b"[" + b",".join(batch) + b"]", len(batch)
            batch.clear()
    for p, batch in pending.items():
        if batch:
            yield p, b"tail", b"[" + b",".join(batch) + b"]", len(batch)


async def raw_consume(bootstrap: str, topic: str, expected: int, enveloped: bool = False) -> float:
    """Events/s of aiokafka getmany + orjson.loads over the whole topic.

    `enveloped`: records are envelopes, each `orjson.loads` returns many events.
    """
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bench-raw-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **FETCH_OPTIONS,  # the worker's
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
                if enveloped:
                    seen += sum(len(loads(r.value)) for r in records)
                else:
                    for r in records:
                        loads(r.value)
                    seen += len(records)
        assert start is not None
        return seen / (time.perf_counter() - start)
    finally:
        await consumer.stop()


async def packer_rate(settings: Settings, input_topic: str, output_topic: str, n: int) -> float:
    """Events/s of `tollguard ingest pack` turning the single-event topic into envelopes."""
    from tollguard.adapters.packer import PackerMetrics, run_packer

    metrics = PackerMetrics()
    stop = asyncio.Event()
    task = asyncio.ensure_future(
        run_packer(
            settings, input_topic, stop_event=stop, output_topic=output_topic, metrics=metrics
        )
    )
    start: float | None = None
    deadline = time.monotonic() + 600
    while metrics.events._value.get() < n and time.monotonic() < deadline and not task.done():
        if start is None and metrics.events._value.get() > 0:
            start = time.perf_counter()
        await asyncio.sleep(0.01)
    done = metrics.events._value.get()
    elapsed = time.perf_counter() - (start or time.perf_counter())
    stop.set()
    await task
    if done < n:
        raise SystemExit(f"the packer forwarded {done:.0f} of {n} events")
    return done / elapsed if elapsed > 0 else float("nan")


@dataclass
class WorkerRun:
    rate: float
    counted: int
    busy_seconds: float  # all workers' together


def handled(worker: WorkerProcess) -> int:
    """Events a worker has finished with: accepted, rejected or recognised as duplicates."""
    m = worker.metrics()
    names = ("tollguard_events_total", "tollguard_events_rejected_total")
    total = sum(v for (name, _), v in m.items() if name in names)
    return int(total + m.get(("tollguard_events_duplicate_total", ()), 0.0))


def measure_rate(workers: list[WorkerProcess], expected: int, timeout: float = 900) -> WorkerRun:
    """Combined rate of workers reading a pre-filled topic, once all of it is handled.

    Each worker counts the wall time of its loops that held events (fetch,
    decide, publish, commit: `tollguard_busy_seconds_total`), so start-up and
    the consumer-group join are excluded, as they are for the raw baseline.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and sum(handled(w) for w in workers) < expected:
        time.sleep(0.2)
    counts = [handled(w) for w in workers]
    if sum(counts) < expected:
        raise SystemExit(f"workers handled {sum(counts)} of {expected} events before the timeout")
    # The last loop's busy time is added once its publish and commit are done,
    # just after its events are counted: wait until every worker's has settled.
    busy = [w.metric("tollguard_busy_seconds_total") for w in workers]
    while time.monotonic() < deadline:
        time.sleep(0.3)
        again = [w.metric("tollguard_busy_seconds_total") for w in workers]
        if again == busy and all(b > 0 for b, n in zip(busy, counts, strict=True) if n):
            break
        busy = again
    rate = sum(n / b for n, b in zip(counts, busy, strict=True) if b > 0)
    return WorkerRun(rate, sum(counts), sum(busy))


FAUST_BASELINES = {
    "windowed": "Faust agent, windowed Table += 1 per event (naive)",
    "take": "Faust agent, take(1000) batches, dict counters",
}
# Calls to Sierra Leone (+232, on the hot list) an attacked line places before
# the timed one: the default pack blocks a line at its tenth (hot-destinations).
EARLIER_CALLS = 9
# One timed call every 15 ms. One stall of a few hundred ms (the VM, the broker)
# delays some twenty calls in a row: 2 % of a 15 s run, enough to set its p99
# alone, and under 1 % of the default 45 s run (3,000 calls).
TIMED_CALL_GAP_S = 0.015


def faust_rate(kind: str, bootstrap: str, topic: str, expected: int, partitions: int) -> float:
    """Run one plain-Faust baseline in its own process; its rate over `expected` events."""
    cmd = [sys.executable, "-m", "bench.faust_baselines", kind, "--broker", bootstrap]
    cmd += ["--topic", topic, "--expected", str(expected), "--partitions", str(partitions)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    for line in (proc.stdout + proc.stderr).splitlines():
        start = line.find('{"pipeline"')
        if start >= 0:
            return float(json.loads(line[start:])["events_per_s"])
    raise SystemExit(f"Faust baseline {kind} failed:\n{proc.stderr[-2000:]}")


def worker_pool_rate(settings: Settings, n: int, workers: int, tmp: Path) -> tuple[float, float]:
    """Events/s of `workers` worker processes sharing one fresh consumer group, and the
    share of their busy time the garbage collector stopped them (start-up included)."""
    pool = replace(settings, app_id=f"{settings.app_id}-x{workers}-{uuid.uuid4().hex[:4]}")
    procs: list[WorkerProcess] = []
    try:
        for i in range(workers):
            procs.append(WorkerProcess(pool, tmp / f"{pool.app_id}-{i}.log").start())
        run = measure_rate(procs, n)
        paused = sum(seconds for w in procs for seconds, _ in gc_pauses(w).values())
        return run.rate, paused / run.busy_seconds if run.busy_seconds else 0.0
    finally:
        for w in procs:
            w.stop()


async def _latency(
    bootstrap: str,
    settings: Settings,
    rate: float,
    attack_lines: int,
    load_lines: int,
    envelope: int = 0,
) -> list[float]:
    """Event readable on the broker -> its block readable on the control topic, in seconds.

    Each attacked line dials Sierra Leone: its earlier calls before the clock
    starts, then the call the default pack blocks it on; the sample is the
    time from that call being readable to its block being readable. The
    attack events are single records; the background load is single events
    or, with `envelope` > 0, envelopes of up to that many events, over
    `load_lines` lines that the worker has seen once before the clock starts.
    """
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    consumer = AIOKafkaConsumer(
        settings.topic_control, bootstrap_servers=bootstrap, auto_offset_reset="latest"
    )
    await consumer.start()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    readable: dict[tuple[str, int], float] = {}
    blocked: dict[str, tuple[int, float]] = {}

    async def read_signals() -> None:
        async for msg in consumer:
            sig = orjson.loads(msg.value)
            if sig["action"] != "block" or sig["line_id"] in blocked:
                continue
            ts = int(datetime.fromisoformat(sig["event_ts"]).timestamp() * 1000)
            if (sig["line_id"], ts) in readable:  # the timed call triggered it
                blocked[sig["line_id"]] = (ts, time.perf_counter())

    def call(n: int, line: str, ts: int) -> bytes:
        event = {"call_id": f"lat-{n}", "ts": ts, "line_id": line}
        event["callee"] = f"01023276{100000 + n}"
        return orjson.dumps(event)

    reader = asyncio.ensure_future(read_signals())
    seconds = attack_lines * TIMED_CALL_GAP_S
    load: subprocess.Popen[bytes] | None = None
    try:
        await asyncio.sleep(2)  # consumer positioned at the end
        # Background traffic from its own process, so this one only times the attack.
        cmd = [sys.executable, "-m", "bench.load", "--bootstrap", bootstrap, "--warm"]
        cmd += ["--topic", settings.topic_events, "--rate", str(rate), "--envelope", str(envelope)]
        cmd += ["--lines", str(load_lines)]
        # Settling: every line seen once, the state they made written, the load up to speed.
        settle = 8.0
        # Until after the last timed call: sending the earlier calls and the
        # sleeps' overshoot (8 % measured) take a little more than settle + seconds.
        load = subprocess.Popen([*cmd, "--seconds", str(settle + seconds * 1.1 + 2)])
        await asyncio.sleep(settle - 3)
        # Each attacked line's earlier calls go out before the clock starts, so
        # this process only sends the timed calls while it times them, and the
        # worker has decided the earlier ones (rule state, alerts) by then.
        ts = int(time.time() * 1000) - 60_000  # their times end well before the timed calls'
        n = 0
        for i in range(attack_lines):
            line = f"lat-{i}"
            for _ in range(EARLIER_CALLS):
                ts += 1
                await producer.send(settings.topic_events, call(n, line, ts), key=line.encode())
                n += 1
        await producer.flush()
        await asyncio.sleep(3)
        for i in range(attack_lines):
            line = f"lat-{i}"
            # Stamped by the wall clock as a switch would, after the line's earlier calls.
            ts = max(ts + 1, int(time.time() * 1000))
            fut = await producer.send(settings.topic_events, call(n, line, ts), key=line.encode())
            n += 1
            readable[(line, ts)] = 0.0
            fut.add_done_callback(
                lambda _f, k=(line, ts): readable.__setitem__(k, time.perf_counter())
            )
            await asyncio.sleep(TIMED_CALL_GAP_S)
        await producer.flush()
        deadline = time.perf_counter() + 30
        while time.perf_counter() < deadline and len(blocked) < attack_lines:
            await asyncio.sleep(0.1)
    finally:
        if load is not None and load.wait(timeout=60) != 0:
            raise SystemExit("bench.load failed")
        reader.cancel()
        await producer.stop()
        await consumer.stop()
    return sorted(
        seen - readable[(line, ts)]
        for line, (ts, seen) in blocked.items()
        if readable[(line, ts)] > 0
    )


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def latency_summary(lat: list[float]) -> dict[str, Any]:
    """Sorted latencies in seconds -> sample count and p50 / p99 / max in ms."""
    return {
        "samples": len(lat),
        "p50_ms": round(percentile(lat, 0.5) * 1000, 2),
        "p99_ms": round(percentile(lat, 0.99) * 1000, 2),
        "max_ms": round(lat[-1] * 1000, 2) if lat else None,
    }


GcSnapshot = dict[str, tuple[float, dict[float, float]]]


def gc_pauses(worker: WorkerProcess) -> GcSnapshot:
    """The worker's collector pauses: per generation, seconds in all and cumulative buckets."""
    out: GcSnapshot = {}
    for (name, labels), value in worker.metrics().items():
        tags = dict(labels)
        if name == "tollguard_gc_pause_seconds_sum":
            out[tags["generation"]] = (value, out.get(tags["generation"], (0.0, {}))[1])
        elif name == "tollguard_gc_pause_seconds_bucket":
            out.setdefault(tags["generation"], (0.0, {}))[1][float(tags["le"])] = value
    return out


def gc_during(before: GcSnapshot, after: GcSnapshot) -> dict[str, Any]:
    """Collections between two snapshots, per generation: count, total ms, longest's bucket."""
    summary: dict[str, Any] = {}
    for generation, (seconds, buckets) in sorted(after.items()):
        seconds0, buckets0 = before.get(generation, (0.0, {}))
        grown = [(bound, n - buckets0.get(bound, 0.0)) for bound, n in sorted(buckets.items())]
        count = grown[-1][1] if grown else 0.0
        longest = next(bound for bound, n in grown if n == count) if count else None
        summary[generation] = {
            "collections": int(count),
            "total_ms": round((seconds - seconds0) * 1000, 1),
            "longest_under_ms": None if longest is None else longest * 1000,
        }
    return summary


@contextmanager
def relay_process(bootstrap: str, settings: Settings) -> Iterator[None]:
    """`bench.relay` from the events to the control topic, ready, for the block's duration."""
    cmd = [sys.executable, "-m", "bench.relay", "--bootstrap", bootstrap]
    cmd += ["--source", settings.topic_events, "--sink", settings.topic_control]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit(f"bench.relay did not start (exit code {proc.wait(timeout=10)})")
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--faust-events",
        type=int,
        default=40_000,
        help="events the plain-Faust baselines run over (they are slow)",
    )
    parser.add_argument(
        "--latency-lines",
        type=int,
        default=3000,
        help="attacked lines in the latency run (one block each, one timed call every 15 ms)",
    )
    parser.add_argument(
        "--envelope-size", type=int, default=500, help="events per envelope in the batched path"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of each one-process worker row, each right after a raw run of its own; "
        "the median is reported, with the range",
    )
    parser.add_argument("--skip-faust", action="store_true")
    parser.add_argument("--json", help="also write the results as JSON to this file")
    args = parser.parse_args(argv)

    rows: list[tuple[str, float]] = []
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
            prefill(
                bootstrap, settings.topic_events, single(synthetic_events(args.events, args.lines))
            )
        )

        say("baseline: raw aiokafka getmany + orjson.loads...")
        raw = asyncio.run(raw_consume(bootstrap, settings.topic_events, n))
        rows.append(("raw aiokafka getmany + orjson.loads", raw))
        if not args.skip_faust:
            for kind, name in FAUST_BASELINES.items():
                say(f"baseline: {name} over {min(n, args.faust_events)} events...")
                rate = faust_rate(
                    kind,
                    bootstrap,
                    settings.topic_events,
                    min(n, args.faust_events),
                    args.partitions,
                )
                rows.append((name, rate))

        # The VM's speed drifts by up to half within minutes, so the ratio to a
        # raw run minutes earlier moves with it (0.345 and 0.621 of raw on one
        # code). Each worker run also gets a raw run of its own just before it,
        # over the single-event topic: the baseline the goal names. A
        # one-process row, the goal's, is the median of --repeat such pairs:
        # one slow spell of a minute moved a single run by a fifth.
        adjacent_runs: dict[str, list[tuple[float, float]]] = {}
        gc_share: dict[str, float] = {}

        def worker_row(name: str, row_settings: Settings, events: int, workers: int) -> float:
            times = max(1, args.repeat) if workers == 1 else 1
            pairs: list[tuple[float, float]] = []
            shares: list[float] = []
            for i in range(times):
                run = f" (run {i + 1} of {times})" if times > 1 else ""
                say(f"{name}: raw aiokafka just before it, then the worker(s){run}...")
                before = asyncio.run(raw_consume(bootstrap, settings.topic_events, n))
                rate, share = worker_pool_rate(row_settings, events, workers, tmp)
                pairs.append((before, rate))
                shares.append(share)
            adjacent_runs[name] = pairs
            gc_share[name] = median(shares)
            rate = median(rate for _, rate in pairs)
            rows.append((name, rate))
            return rate

        single_rate = worker_row("tollguard worker, default pack, 1 process", settings, n, 1)
        worker_row("tollguard worker, default pack, 2 processes", settings, n, 2)

        say(f"batched path: envelopes of {args.envelope_size} events...")
        env_settings = isolated_settings(bootstrap, tmp, partitions=args.partitions)
        ensure_tollguard_topics(env_settings)
        env_events = asyncio.run(
            prefill(
                bootstrap,
                env_settings.topic_events,
                envelopes(
                    synthetic_events(args.events, args.lines), args.partitions, args.envelope_size
                ),
            )
        )
        rows.append(
            (
                "raw aiokafka getmany + orjson.loads, envelopes",
                asyncio.run(
                    raw_consume(bootstrap, env_settings.topic_events, env_events, enveloped=True)
                ),
            )
        )
        env_rate = worker_row(
            "tollguard worker, default pack, envelopes, 1 process", env_settings, env_events, 1
        )
        worker_row(
            "tollguard worker, default pack, envelopes, 2 processes", env_settings, env_events, 2
        )
        say("packer: single events -> envelopes (tollguard ingest pack)...")
        packed = isolated_settings(bootstrap, tmp, partitions=args.partitions)
        ensure_tollguard_topics(packed)
        rows.append(
            (
                "packer, single events -> envelopes, 1 process",
                asyncio.run(packer_rate(packed, settings.topic_events, packed.topic_events, n)),
            )
        )

        def timed(lat_settings: Settings, load: float, envelope: int) -> list[float]:
            lines = (args.latency_lines, args.lines)
            return asyncio.run(_latency(bootstrap, lat_settings, load, *lines, envelope))

        # The worker's garbage-collector pauses during each timed run, by path.
        latency_gc: dict[str, dict[str, Any]] = {}

        def worker_latency(name: str, load: float, envelope: int) -> list[float]:
            lat_settings = isolated_settings(bootstrap, tmp, partitions=args.partitions)
            lat_worker = WorkerProcess(lat_settings, tmp / f"latency-{name}.log").start()
            try:
                before = gc_pauses(lat_worker)
                lat = timed(lat_settings, load, envelope)
                latency_gc[name] = gc_during(before, gc_pauses(lat_worker))
                return lat
            finally:
                lat_worker.stop()

        # The broker compiles the paths of small requests while the first
        # latency run goes on (its JIT thread took a whole core for 0.3-0.5 s
        # at a time): a first run on a fresh broker had p99 85 ms, the next
        # eight 28-43. A running broker has compiled them long before; so an
        # untimed run first, reported apart.
        paths = (
            ("envelopes", max(0.2 * env_rate, 50.0), args.envelope_size),
            ("single", max(0.2 * single_rate, 50.0), 0),
        )
        _, warm_load, warm_envelope = paths[0]
        say(f"latency warm-up, envelopes path at {warm_load:,.0f} events/s (not counted)...")
        warmup = worker_latency("warmup", warm_load, warm_envelope)
        # The pack the capacity was measured with: the full default pack.
        latency: dict[str, tuple[float, list[float], list[float]]] = {}
        for path, load, envelope in paths:
            say(f"latency, {path} path, at 20% of its capacity ({load:,.0f} events/s)...")
            worker_lat = worker_latency(path, load, envelope)
            say(f"latency floor, {path} path: plain aiokafka relay at the same load...")
            floor_settings = isolated_settings(bootstrap, tmp, partitions=args.partitions)
            ensure_tollguard_topics(floor_settings)
            with relay_process(bootstrap, floor_settings):
                floor_lat = timed(floor_settings, load, envelope)
            latency[path] = (load, worker_lat, floor_lat)

    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "broker": broker_desc,
        "events": n,
        "lines": args.lines,
        "partitions": args.partitions,
        "pipelines": {name: round(rate) for name, rate in rows},
        "worker_to_raw": round(single_rate / raw, 4),
        "envelope_worker_to_raw": round(env_rate / raw, 4),
        "adjacent_raw": {
            name: {
                "raw": round(median(before for before, _ in pairs)),
                "ratio": round(median(rate / before for before, rate in pairs), 4),
                "gc_share_of_busy": round(gc_share[name], 4),
                "runs": [{"raw": round(before), "worker": round(rate)} for before, rate in pairs],
            }
            for name, pairs in adjacent_runs.items()
        },
        "latency": {
            path: {
                "events_per_s": round(load),
                **latency_summary(lat),
                "floor": latency_summary(floor),
                "gc": latency_gc[path],
            }
            for path, (load, lat, floor) in latency.items()
        },
        "latency_warmup": {"events_per_s": round(warm_load), **latency_summary(warmup)},
    }
    print()
    print(f"{'pipeline':<52}{'events/s':>12}{'x raw':>9}{'x naive':>9}")
    naive = dict(rows).get(FAUST_BASELINES["windowed"])
    for name, rate in rows:
        vs_naive = f"{rate / naive:>9.1f}" if naive else f"{'-':>9}"
        print(f"{name:<52}{rate:>12,.0f}{rate / raw:>9.3f}{vs_naive}")
    print()
    header = "each worker run against a raw run just before it"
    print(f"{header:<52}{'raw':>12}{'x raw':>9}{'GC % busy':>11}  worker runs (median above)")
    for name, adj in results["adjacent_raw"].items():
        gc_pct = 100 * adj["gc_share_of_busy"]
        spread = ", ".join(f"{r['worker']:,}" for r in adj["runs"])
        print(f"{name:<52}{adj['raw']:>12,}{adj['ratio']:>9.3f}{gc_pct:>10.1f}%  {spread}")
    print()
    for path, lat in results["latency"].items():
        floor = lat["floor"]
        print(
            f"event readable -> block readable, {path} path at {lat['events_per_s']:,} "
            f"events/s: p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms, "
            f"max {lat['max_ms']} ms ({lat['samples']} blocks); floor (plain aiokafka "
            f"relay, same load): p50 {floor['p50_ms']} ms, p99 {floor['p99_ms']} ms, "
            f"max {floor['max_ms']} ms"
        )
        pauses = ", ".join(
            f"generation {g}: {c['collections']} ({c['total_ms']} ms, longest under "
            f"{c['longest_under_ms']} ms)"
            for g, c in lat["gc"].items()
            if c["collections"]
        )
        print(f"  worker's garbage-collector pauses during the run: {pauses or 'none'}")
    warm = results["latency_warmup"]
    print(
        f"(untimed warm-up before them, envelopes path at {warm['events_per_s']:,} events/s: "
        f"p50 {warm['p50_ms']} ms, p99 {warm['p99_ms']} ms, max {warm['max_ms']} ms)"
    )
    print(
        f"{results['machine']}; {broker_desc}; {n} events, {args.lines} lines, "
        f"{args.partitions} partitions"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
