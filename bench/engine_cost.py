"""The engine's own cost per event with a rule pack (default: the full default pack).

    python -m bench.engine_cost [--events 200000] [--lines 20000] [--intl 0.1] [--rules FILE]

Events are generated and parsed first (parsing is not the engine's cost and is
measured separately); then the parsed events go through a fresh `Engine` and
only the `Engine.process` loop is timed: `engine_us_per_event` over the second
half of the event-time span (lines already known: steady state), and
`engine_us_per_event_cold` over the first half (every line new).
Traffic: ordinary lines (setup, and for answered calls answer and
release with `duration_s`), a share of them international, plus the seed
attack, so every rule kind does real work. Prints one JSON line.

Times are CPU time of the measuring thread (`time.thread_time`), so a busy
shared machine inflates them less than wall time would; still compare runs
on the same machine, best of `--repeat`.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import sys
import time
from pathlib import Path

from tollguard.engine import Engine, EventParser
from tollguard.engine.events import CallEvent
from tollguard.numbering import DestinationTable, load_default_dial_plans
from tollguard.rulepacks import load_pack
from tollguard.signals.model import ControlSignal
from tollguard.simulate.traffic import AttackSpec, BackgroundSpec, attack, background, merge

REPO = Path(__file__).resolve().parents[1]
T0 = 1_795_910_400_000


def make_events(n: int, lines: int, intl: float, seed: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    spec = BackgroundSpec(lines=lines, calls_per_hour=6, intl_share=intl)
    # Enough event time for ~n/2 setups (half the setups get answer + release).
    hours = max(1.0, n / 2 / (lines * spec.calls_per_hour))
    end = T0 + int(hours * 3_600_000)
    setups = list(
        merge(
            background(spec, T0, end, seed),
            attack(AttackSpec(calls=min(2000, n // 50)), T0 + 600_000, seed),
        )
    )
    out: list[dict[str, object]] = []
    for s in setups:
        out.append(s)
        if rng.random() < 0.5:
            ts = int(s["ts"])  # type: ignore[call-overload]
            dur = rng.randint(10, 600)
            leg = {"v": 1, "call_id": s["call_id"], "line_id": s["line_id"], "tenant": s["tenant"]}
            out.append({**leg, "type": "answer", "ts": ts + 5_000})
            out.append({**leg, "type": "release", "ts": ts + 5_000 + dur * 1000, "duration_s": dur})
        if len(out) >= n:
            break
    out.sort(key=lambda e: int(e["ts"]))  # type: ignore[call-overload]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--lines", type=int, default=20_000)
    ap.add_argument("--intl", type=float, default=0.1, help="share of international setups")
    ap.add_argument("--rules", default=str(REPO / "rules" / "default.yaml"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)

    pack = load_pack(Path(args.rules))
    parser = EventParser(load_default_dial_plans()[pack.dial_plan], DestinationTable.load_default())
    raw = make_events(args.events, args.lines, args.intl, args.seed)
    t = time.thread_time()
    parsed: list[CallEvent] = [parser.from_dict(e) for e in raw]
    parse_us = (time.thread_time() - t) / len(parsed) * 1e6

    # Cold: every line is new, so its rule state is allocated on its first
    # calls. Warm: the engine has already seen the first half of the event-time
    # span, and only the second half is timed, as in a worker that has run for
    # a while. The warm figure is the steady-state cost.
    half = parsed[-1].ts_ms - (parsed[-1].ts_ms - parsed[0].ts_ms) // 2
    split = next(i for i, e in enumerate(parsed) if e.ts_ms >= half)
    cold = warm = float("inf")
    signals = 0
    engine = Engine(pack)
    for _ in range(args.repeat):
        engine = Engine(pack)
        out: list[ControlSignal] = []
        process = engine.process
        gc.collect()
        # CPU time of this thread: the machine may be shared, wall time would
        # include waiting for a core.
        t = time.thread_time()
        for event in parsed[:split]:
            process(event, out)
        cold = min(cold, (time.thread_time() - t) / split)
        gc.collect()
        t = time.thread_time()
        for event in parsed[split:]:
            process(event, out)
        warm = min(warm, (time.thread_time() - t) / (len(parsed) - split))
        signals = len(out)
    by_type: dict[str, int] = {}
    for e in parsed:
        by_type[e.type] = by_type.get(e.type, 0) + 1
    result = {
        "bench": "engine_cost",
        "pack": f"{pack.name}@{pack.version}",
        "rules": len(pack.rules),
        "events": len(parsed),
        "by_type": by_type,
        "international_setups": sum(1 for e in parsed if e.type == "setup" and e.international),
        "lines": len(engine.lines),
        "signals": signals,
        "engine_us_per_event": round(warm * 1e6, 2),
        "engine_events_per_s": round(1 / warm),
        "engine_us_per_event_cold": round(cold * 1e6, 2),
        "parse_us_per_event": round(parse_us, 2),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
