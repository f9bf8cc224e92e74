"""`tollguard simulate`: seeded traffic with an attack, to Kafka or a JSONL file."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from tollguard.config import Settings
from tollguard.simulate.traffic import AttackSpec, BackgroundSpec, attack, background, merge


def scenario_events(
    scenario: str, lines: int, hours: float, attack_calls: int, seed: int, start_ms: int
) -> tuple[Iterator[dict[str, Any]], dict[str, Any]]:
    end_ms = start_ms + int(hours * 3_600_000)
    streams = [background(BackgroundSpec(lines=lines), start_ms, end_ms, seed)]
    truth: dict[str, Any] = {"scenario": scenario, "seed": seed, "attacked": []}
    if scenario == "seed-attack":
        spec = AttackSpec(calls=attack_calls)
        attack_start = start_ms + (end_ms - start_ms) // 4
        streams.append(attack(spec, attack_start, seed))
        truth["attacked"].append({"line_id": spec.line_id, "start_ts": attack_start})
    return merge(*streams), truth


def paced(events: Iterator[dict[str, Any]], speed: float) -> Iterator[dict[str, Any]]:
    """Release events no faster than `speed` times their event-time spacing."""
    if speed <= 0:
        yield from events
        return
    wall0 = time.monotonic()
    ts0: int | None = None
    for event in events:
        ts = int(event["ts"])
        ts0 = ts if ts0 is None else ts0
        delay = (ts - ts0) / 1000 / speed - (time.monotonic() - wall0)
        if delay > 0:
            time.sleep(delay)
        yield event


def run_simulate(args: argparse.Namespace, settings: Settings) -> int:
    start_ms = int(time.time() * 1000)
    events, truth = scenario_events(
        args.scenario, args.lines, args.hours, args.attack_calls, args.seed, start_ms
    )
    if args.truth:
        Path(args.truth).write_bytes(orjson.dumps(truth, option=orjson.OPT_INDENT_2))
    n = 0
    if args.out:
        with open(args.out, "wb") as fh:
            for event in events:
                fh.write(orjson.dumps(event) + b"\n")
                n += 1
        print(f"wrote {n} events to {args.out}", file=sys.stderr)
        return 0
    from kafka import KafkaProducer  # type: ignore[import-untyped]

    producer = KafkaProducer(bootstrap_servers=settings.bootstrap, linger_ms=5, acks="all")
    try:
        for event in paced(events, args.speed):
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
