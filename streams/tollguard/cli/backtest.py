"""`tollguard backtest`: the worker's engine over recorded events or CDRs, offline.

It drives the same `BatchProcessor` as the worker, on event time only, so
what it reports is what the worker would have decided. Inputs are JSONL call
events (SPEC section 2), Asterisk ``Master.csv`` or a generic CSV with a
column mapping (see `tollguard.report.inputs`). The report is JSON, and
optionally a self-contained HTML page; with a ground-truth file (as written by
`tollguard simulate --truth`) it also scores precision, recall, time to block
and loss prevented.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from pathlib import Path
from typing import Any

import orjson

from tollguard.app.metrics import Metrics
from tollguard.app.processor import BatchProcessor, Outputs, RawRecord
from tollguard.config import Settings
from tollguard.engine import RulePack
from tollguard.numbering import DestinationTable, load_default_dial_plans
from tollguard.numbering.rates import RateTable
from tollguard.report.analysis import Ledger, TappedParser, build_report
from tollguard.report.inputs import (
    InputError,
    Progress,
    Skipped,
    asterisk_events,
    csv_events,
    detect_format,
    encode,
    jsonl_records,
)
from tollguard.rulepacks import RulePackError, load_pack

BATCH = 5000


@dataclass(slots=True)
class Options:
    fmt: str = "auto"
    line_from: tuple[str, ...] = ("accountcode", "channel")
    mapping: dict[str, str] = field(default_factory=dict)
    tz: tzinfo = UTC
    reorder_s: int = 4 * 3600


@dataclass(slots=True)
class Run:
    """What one pass of the engine produced."""

    signals: list[dict[str, Any]] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)
    events: int = 0
    seconds: float = 0.0


def records_of(
    path: Path, opts: Options, skipped: Skipped, progress: Progress | None = None
) -> Iterator[bytes]:
    fmt = detect_format(path) if opts.fmt == "auto" else opts.fmt
    if fmt == "jsonl":
        return jsonl_records(path, progress)
    if fmt == "asterisk":
        return encode(
            asterisk_events(path, opts.line_from, opts.tz, opts.reorder_s, skipped, progress)
        )
    if fmt == "csv":
        return encode(csv_events(path, opts.mapping, opts.tz, opts.reorder_s, skipped, progress))
    raise InputError(f"unknown format {fmt!r}")


def make_processor(pack: RulePack, settings: Settings) -> BatchProcessor:
    return BatchProcessor(
        pack,
        load_default_dial_plans(),
        DestinationTable.load_default(),
        Metrics(),
        lateness_ms=settings.lateness_s * 1000,
        max_event_bytes=settings.max_event_bytes,
    )


def run_engine(
    processor: BatchProcessor,
    raws: Iterable[bytes],
    on_raw: Callable[[bytes], None] | None = None,
) -> Run:
    """Feed raw event bytes through the processor in batches, as the worker does."""
    run = Run()

    def collect(out: Outputs) -> None:
        run.signals.extend(orjson.loads(value) for _, value in out.control)
        for _, value in out.deadletter:
            run.rejected[orjson.loads(value)["reason"]] += 1

    t0 = time.perf_counter()
    batch: list[RawRecord] = []
    offset = 0
    for raw in raws:
        offset += 1
        batch.append(RawRecord("backtest", 0, offset, None, raw))
        if on_raw is not None:
            on_raw(raw)
        if len(batch) >= BATCH:
            collect(processor.process(batch, 0))
            collect(processor.expire(0))
            batch = []
    if batch:
        collect(processor.process(batch, 0))
        collect(processor.expire(0))
    run.events = offset
    run.seconds = time.perf_counter() - t0
    return run


def backtest_raw(
    raws: Iterable[bytes],
    settings: Settings,
    truth: dict[str, Any] | None = None,
    files: Sequence[str] = (),
    skipped: Skipped | None = None,
) -> tuple[dict[str, Any], Ledger, list[dict[str, Any]]]:
    """Run the engine over raw JSON events and build the report (and its ledger)."""
    pack = load_pack(Path(settings.rules))
    processor = make_processor(pack, settings)
    ledger = Ledger(processor.parser, RateTable.load_default())
    # The processor looks its parser up per batch: tapping it lets the ledger see
    # each parsed event without parsing it a second time.
    processor.parser = TappedParser(processor.parser, ledger)  # type: ignore[assignment]
    run = run_engine(processor, raws)
    if run.events > sum(run.rejected.values()) and ledger.seen == 0:
        raise RuntimeError("backtest: the parser tap saw no event; BatchProcessor changed?")
    header = {
        "rules_version": pack.version,
        "rules_file": str(settings.rules),
        "files": list(files),
        "events": run.events,
        "rejected": dict(run.rejected),
        "skipped_rows": dict(skipped.counts) if skipped else {},
        "throughput": {
            "seconds": round(run.seconds, 3),
            "events_per_s": round(run.events / run.seconds) if run.seconds else 0,
        },
    }
    report = build_report(ledger, run.signals, truth, header)
    report["signals"] = run.signals
    return report, ledger, run.signals


def backtest(
    paths: Sequence[Path],
    settings: Settings,
    opts: Options | None = None,
    truth: dict[str, Any] | None = None,
    progress: bool = False,
) -> tuple[dict[str, Any], Ledger, list[dict[str, Any]]]:
    opts = opts or Options()
    skipped = Skipped()
    if not progress:
        raws: Iterable[bytes] = (r for p in paths for r in records_of(p, opts, skipped))
        return backtest_raw(raws, settings, truth, [str(p) for p in paths], skipped)
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    from rich.progress import (
        Progress as Bar,
    )

    total = sum(p.stat().st_size for p in paths)
    with Bar(
        TextColumn("backtest"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task("read", total=total)

        def advance(n: int) -> None:
            bar.update(task, advance=n)

        raws = (r for p in paths for r in records_of(p, opts, skipped, advance))
        return backtest_raw(raws, settings, truth, [str(p) for p in paths], skipped)


def run_backtest(
    files: Sequence[str],
    settings: Settings,
    output: str | None,
    html: str | None = None,
    truth_file: str | None = None,
    opts: Options | None = None,
    progress: bool | None = None,
) -> int:
    paths = [Path(f) for f in files]
    for path in paths:
        if not path.is_file():
            print(f"tollguard backtest: no such file {path}", file=sys.stderr)
            return 2
    truth = orjson.loads(Path(truth_file).read_bytes()) if truth_file else None
    show = sys.stderr.isatty() if progress is None else progress
    try:
        report, ledger, signals = backtest(paths, settings, opts, truth, show)
    except RulePackError as exc:
        print(exc, file=sys.stderr)
        return 2
    except InputError as exc:
        print(f"tollguard backtest: {exc}", file=sys.stderr)
        return 2
    data = orjson.dumps(report, option=orjson.OPT_INDENT_2)
    if html:
        from tollguard.report.html import render

        Path(html).write_text(render(report, ledger, signals), encoding="utf-8")
    if output:
        Path(output).write_bytes(data)
    elif not html:
        sys.stdout.buffer.write(data + b"\n")
    tp = report["throughput"]
    summary = (
        f"{report['events']:,} events in {tp['seconds']:.1f} s ({tp['events_per_s']:,} events/s), "
        f"{len(report['blocked_lines'])} lines blocked, {len(report['alerted_lines'])} alerted"
    )
    ev = report.get("evaluation")
    if ev:
        summary += (
            f"; precision {ev['precision']}, recall {ev['recall']}, "
            f"spend prevented {ev['spend_prevented']} of {ev['attack_spend']}"
        )
    where = ", ".join(x for x in (output, html) if x)
    print(f"tollguard backtest: {summary}" + (f" -> {where}" if where else ""), file=sys.stderr)
    return 0
