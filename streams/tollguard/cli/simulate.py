"""`tollguard simulate SCENARIO`: seeded traffic with an attack, to Kafka or a JSONL file.

The events come from the pure scenario library (`tollguard.simulate.scenarios`);
this module only paces them (event-time compression with ``--speed``, a hard
cap with ``--rate``) and writes them out. Ground truth goes to ``--truth``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from tollguard.config import Settings
from tollguard.simulate.scenarios import DAY_MS, DEFAULT_START_MS, SCENARIOS, generate

ALIASES = {"seed-case": "seed-attack"}


def scenario_names() -> list[str]:
    return [*SCENARIOS, *ALIASES]


def parse_start(text: str | None) -> int:
    if not text:
        return DEFAULT_START_MS
    if text == "now":
        return int(time.time() * 1000)
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError(f"--start {text!r} needs a UTC offset")
    return int(dt.timestamp() * 1000)


def live_start(now_ms: int) -> int:
    """The default calendar moved on by whole weeks to start at or after `now_ms`.

    A live worker lifts blocks by the later of wall-clock and event time, so
    traffic dated in the past would see every block expire at once; whole weeks
    keep each scenario's weekday and hour schedule.
    """
    week = 7 * DAY_MS
    return DEFAULT_START_MS + max(0, -(-(now_ms - DEFAULT_START_MS) // week)) * week


def paced(
    events: Iterator[dict[str, Any]], speed: float, rate: float = 0.0
) -> Iterator[dict[str, Any]]:
    """Release events no faster than `speed` times their event-time spacing, and no
    more than `rate` a second; 0 disables either limit."""
    wall0 = time.monotonic()
    ts0: int | None = None
    for sent, event in enumerate(events):
        if speed > 0:
            ts = int(event["ts"])
            ts0 = ts if ts0 is None else ts0
            delay = (ts - ts0) / 1000 / speed - (time.monotonic() - wall0)
            if delay > 0:
                time.sleep(delay)
        if rate > 0:
            delay = sent / rate - (time.monotonic() - wall0)
            if delay > 0:
                time.sleep(delay)
        yield event


def run_simulate(args: argparse.Namespace, settings: Settings) -> int:
    name = ALIASES.get(args.scenario, args.scenario)
    try:
        start_ms = parse_start(args.start)
        if not args.start and not args.out:
            start_ms = live_start(int(time.time() * 1000))
    except ValueError as exc:
        print(f"tollguard simulate: {exc}", file=sys.stderr)
        return 2
    events, truth = generate(
        name,
        seed=args.seed,
        start_ms=start_ms,
        scale=args.scale,
        full_calls=not args.setup_only,
        days=args.days,
    )
    if args.truth:
        Path(args.truth).write_bytes(orjson.dumps(truth, option=orjson.OPT_INDENT_2))
    n = 0
    if args.out:
        with open(args.out, "wb") as fh:
            for event in paced(events, args.speed, args.rate):
                fh.write(orjson.dumps(event) + b"\n")
                n += 1
        print(
            f"wrote {n} events of scenario {name} (seed {args.seed}) to {args.out}"
            + (f", ground truth to {args.truth}" if args.truth else ""),
            file=sys.stderr,
        )
        return 0
    from kafka import KafkaProducer  # type: ignore[import-untyped]

    from tollguard.kafka_security import kafka_python_config

    producer = KafkaProducer(**kafka_python_config(settings), linger_ms=5, acks="all")
    try:
        for event in paced(events, args.speed, args.rate):
            producer.send(
                settings.topic_events, key=str(event["line_id"]).encode(), value=orjson.dumps(event)
            )
            n += 1
            if n % 10_000 == 0:
                print(f"  produced {n} events", file=sys.stderr)
        producer.flush()
    finally:
        producer.close()
    print(f"produced {n} events to {settings.topic_events} at {settings.broker}", file=sys.stderr)
    return 0
