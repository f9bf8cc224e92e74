"""`tollguard backtest`: the worker's engine over recorded events, offline.

It drives the same `BatchProcessor` as the worker, on event time only, so
what it reports is what the worker would have decided.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from tollguard.app.metrics import Metrics
from tollguard.app.processor import BatchProcessor, Outputs, RawRecord
from tollguard.config import Settings
from tollguard.numbering import DestinationTable, load_default_dial_plans
from tollguard.rulepacks import RulePackError, load_pack

BATCH = 5000


def _records(path: Path) -> Iterator[RawRecord]:
    with path.open("rb") as fh:
        for n, line in enumerate(fh, 1):
            line = line.rstrip(b"\r\n")
            if line:
                yield RawRecord(str(path), 0, n, None, line)


def _batches(paths: Sequence[Path]) -> Iterator[list[RawRecord]]:
    batch: list[RawRecord] = []
    for path in paths:
        for record in _records(path):
            batch.append(record)
            if len(batch) >= BATCH:
                yield batch
                batch = []
    if batch:
        yield batch


def backtest(paths: Sequence[Path], settings: Settings) -> dict[str, Any]:
    pack = load_pack(Path(settings.rules))
    metrics = Metrics()
    processor = BatchProcessor(
        pack,
        load_default_dial_plans(),
        DestinationTable.load_default(),
        metrics,
        lateness_ms=settings.lateness_s * 1000,
        max_event_bytes=settings.max_event_bytes,
    )
    signals: list[dict[str, Any]] = []
    rejected: Counter[str] = Counter()
    events = 0

    def collect(out: Outputs) -> None:
        signals.extend(orjson.loads(value) for _, value in out.control)
        for _, value in out.deadletter:
            rejected[orjson.loads(value)["reason"]] += 1

    for batch in _batches(paths):
        events += len(batch)
        collect(processor.process(batch, 0))
        collect(processor.expire(0))
    by_rule = Counter(f"{s['action']}:{s['rule_id']}" for s in signals)
    return {
        "rules_version": pack.version,
        "events": events,
        "rejected": dict(rejected),
        "signals_by_rule": dict(by_rule),
        "blocked_lines": sorted({s["line_id"] for s in signals if s["action"] == "block"}),
        "signals": signals,
    }


def run_backtest(files: Sequence[str], settings: Settings, output: str | None) -> int:
    paths = [Path(f) for f in files]
    for path in paths:
        if not path.is_file():
            print(f"tollguard backtest: no such file {path}", file=sys.stderr)
            return 2
    try:
        report = backtest(paths, settings)
    except RulePackError as exc:
        print(exc, file=sys.stderr)
        return 2
    data = orjson.dumps(report, option=orjson.OPT_INDENT_2)
    if output:
        Path(output).write_bytes(data)
        print(
            f"report written to {output}: {report['events']} events, "
            f"{len(report['blocked_lines'])} lines blocked",
            file=sys.stderr,
        )
    else:
        sys.stdout.buffer.write(data + b"\n")
    return 0
