"""The `tollguard` command (SPEC section 6)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from tollguard.config import Settings, load_settings


def _worker(args: argparse.Namespace) -> int:
    import faust

    from tollguard.app.topics import ensure_tollguard_topics
    from tollguard.app.worker import create_app, logging_config

    settings = load_settings(
        args.config, broker=args.broker, rules=args.rules, web_port=args.web_port
    )
    ensure_tollguard_topics(settings)
    app = create_app(settings)
    worker = faust.Worker(
        app,
        loglevel=settings.log_level,
        quiet=True,
        logging_config=logging_config(settings.log_level),
    )
    worker.execute_from_commandline()
    return 0


def _rules_check(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tollguard.rulepacks import RulePackError, load_pack

    failed = False
    for name in args.files:
        try:
            pack = load_pack(Path(name))
        except RulePackError as exc:
            failed = True
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            continue
        print(f"{name}: ok (pack {pack.name}, version {pack.version}, {len(pack.rules)} rules)")
    return 1 if failed else 0


def _rules_push(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tollguard.app.topics import ensure_tollguard_topics
    from tollguard.rulepacks import RulePackError
    from tollguard.rulepacks.publish import push_pack

    settings = load_settings(args.config, broker=args.broker)
    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"{path}:0: cannot read: {exc}", file=sys.stderr)
        return 1
    try:
        from tollguard.rulepacks import load_pack_text

        load_pack_text(text, str(path))  # check before touching Kafka
    except RulePackError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    ensure_tollguard_topics(settings)
    pack = push_pack(settings, text, str(path))
    print(
        f"pushed pack {pack.name} version {pack.version} ({len(pack.rules)} rules) "
        f"to {settings.topic_rules}; running workers apply it without restart"
    )
    return 0


def _backtest(args: argparse.Namespace) -> int:
    from tollguard.cli.backtest import Options, run_backtest
    from tollguard.report.inputs import InputError, parse_mapping

    settings = load_settings(args.config, rules=args.rules)
    try:
        opts = Options(
            fmt=args.format,
            line_from=tuple(s.strip() for s in args.line_from.split(",") if s.strip()),
            mapping=parse_mapping(args.map),
            tz=_tz(args.tz),
            reorder_s=args.reorder_s,
        )
    except (InputError, ValueError) as exc:
        print(f"tollguard backtest: {exc}", file=sys.stderr)
        return 2
    return run_backtest(
        args.files, settings, args.output, args.html, args.truth, opts, args.progress
    )


def _tz(name: str) -> Any:
    from datetime import UTC
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


def _simulate(args: argparse.Namespace) -> int:
    from tollguard.cli.simulate import run_simulate

    settings = load_settings(args.config, broker=args.broker)
    if not args.out:
        from tollguard.kafka_security import preflight

        preflight(settings)  # wrong credentials: one clear line, not a producer timeout
    return run_simulate(args, settings)


def _demo(args: argparse.Namespace) -> int:
    from tollguard.cli.demo import run_demo

    return run_demo(args)


def _adapter_settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    """Settings, logging and a credentials check shared by the long-running adapters."""
    import logging

    from tollguard.kafka_security import preflight

    settings = load_settings(args.config, broker=args.broker, web_port=args.web_port, **overrides)
    logging.basicConfig(level=settings.log_level.upper())
    preflight(settings, 5.0, security_only=True)  # wrong credentials: stop, say why
    return settings


def _ingest_hep(args: argparse.Namespace) -> int:
    import asyncio

    from tollguard.adapters.hep_collector import run_collector

    settings = _adapter_settings(args, hep_listen=args.listen, hep_line_source=args.line_source)
    asyncio.run(
        run_collector(settings, settings.hep_listen, settings.hep_line_source, settings.web_port)
    )
    return 0


def _ingest_pack(args: argparse.Namespace) -> int:
    import asyncio

    from tollguard.adapters.packer import run_packer

    settings = _adapter_settings(args)
    asyncio.run(
        run_packer(
            settings,
            args.input_topic,
            args.max_events,
            args.linger_ms,
            web_port=settings.web_port,
        )
    )
    return 0


def _enforce_kamailio(args: argparse.Namespace) -> int:
    from tollguard.adapters.kamailio import run_enforcer

    settings = _adapter_settings(args, kamailio_rpc_url=args.rpc_url, kamailio_htable=args.htable)
    return run_enforcer(
        settings, settings.kamailio_rpc_url, settings.kamailio_htable, settings.web_port
    )


def _control(args: argparse.Namespace) -> int:
    from tollguard.cli import control

    settings = load_settings(args.config, broker=args.broker)
    run = {"block": control.run_block, "unblock": control.run_unblock}.get(
        args.command, control.run_blocks
    )
    return run(args, settings)


def _envelope_events(text: str) -> int:
    from tollguard.adapters.packer import MAX_ENVELOPE_EVENTS

    n = int(text)
    if not 1 <= n <= MAX_ENVELOPE_EVENTS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_ENVELOPE_EVENTS}")
    return n


def _linger_ms(text: str) -> float:
    ms = float(text)
    if not 0 <= ms <= 60_000:
        raise argparse.ArgumentTypeError("must be between 0 and 60000")
    return ms


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tollguard",
        description="Real-time toll-fraud (IRSF) detector for IP telephony on Kafka.",
        epilog="Settings come from TOLLGUARD_* environment variables or --config FILE.",
    )
    parser.add_argument("--config", help="YAML file of settings (see README)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("worker", help="run the detector against the configured Kafka")
    p.add_argument("--broker", help="kafka://host:port (env TOLLGUARD_BROKER)")
    p.add_argument("--rules", help="rule pack file (env TOLLGUARD_RULES)")
    p.add_argument("--web-port", type=int, help="port of /metrics (env TOLLGUARD_WEB_PORT)")
    p.set_defaults(func=_worker)

    p = sub.add_parser("demo", help="embedded broker + worker + a replayed attack, live")
    p.add_argument("--scenario", default="seed-attack", help="scenario to replay (simulate --help)")
    p.add_argument("--speed", type=float, default=300.0, help="event-time speed-up (default 300x)")
    p.add_argument("--attack-calls", type=int, default=400, help="attack calls to replay")
    p.add_argument("--scale", type=float, default=1.0, help="legitimate population multiplier")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--plain", action="store_true", help="print lines instead of a live view")
    p.add_argument(
        "--broker",
        default="embedded",
        help="embedded (Tansu, no JVM; default), apache (local KRaft node) or HOST:PORT",
    )
    p.set_defaults(func=_demo)

    from tollguard.cli.simulate import scenario_names

    p = sub.add_parser(
        "simulate", help="produce legitimate traffic and an attack scenario to Kafka or a file"
    )
    p.add_argument("scenario", choices=scenario_names(), help="what to generate")
    p.add_argument("--broker", help="kafka://host:port (env TOLLGUARD_BROKER)")
    p.add_argument("--out", help="write JSONL to this file instead of Kafka")
    p.add_argument("--truth", help="write ground truth (attacked lines, from when) as JSON here")
    p.add_argument("--seed", type=int, default=1, help="same seed, same events (default 1)")
    p.add_argument("--scale", type=float, default=1.0, help="population size multiplier")
    p.add_argument("--days", type=float, help="event-time span (default: the scenario's)")
    p.add_argument(
        "--start",
        help="event time of the start, RFC 3339 or 'now' (default Monday 2026-11-02 00:00 JST "
        "for files; to Kafka, the first such Monday 00:00 JST from now on)",
    )
    p.add_argument("--setup-only", action="store_true", help="no answer/release events")
    p.add_argument(
        "--speed", type=float, default=0.0, help="event-time compression, e.g. 3600 = 1 h/s"
    )
    p.add_argument("--rate", type=float, default=0.0, help="at most this many events/s")
    p.set_defaults(func=_simulate)

    p = sub.add_parser("backtest", help="run the engine offline over recorded events or CDRs")
    p.add_argument("files", nargs="+", help="JSONL events, Asterisk Master.csv or CSV")
    p.add_argument("--rules", help="rule pack file (env TOLLGUARD_RULES)")
    p.add_argument("--output", help="write the JSON report here (default: stdout)")
    p.add_argument("--html", help="write a self-contained HTML report here")
    p.add_argument("--truth", help="ground-truth JSON (from simulate --truth): precision, recall")
    p.add_argument("--format", choices=["auto", "jsonl", "asterisk", "csv"], default="auto")
    p.add_argument(
        "--line-from",
        default="accountcode,channel",
        help="Asterisk: where the line id comes from, first non-empty of "
        "accountcode,src,channel,clid,dcontext (default accountcode,channel)",
    )
    p.add_argument(
        "--map", help="CSV: FIELD=COLUMN,... for line_id, callee, ts, call_id, duration_s, end"
    )
    p.add_argument("--tz", default="UTC", help="time zone of naive CDR times (e.g. Asia/Tokyo)")
    p.add_argument(
        "--reorder-s", type=int, default=4 * 3600, help="CDR re-ordering window, seconds"
    )
    p.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, help="progress bar (default: on a tty)"
    )
    p.set_defaults(func=_backtest)

    ingest = sub.add_parser("ingest", help="call events from a switch into Kafka").add_subparsers(
        dest="ingest_cmd", required=True
    )
    p = ingest.add_parser("hep", help="HEPv3 (UDP) collector for Kamailio siptrace mirrors")
    p.add_argument("--broker", help="kafka://host:port (env TOLLGUARD_BROKER)")
    p.add_argument("--listen", help="UDP host:port (env TOLLGUARD_HEP_LISTEN)")
    p.add_argument(
        "--line-source",
        help="where the line id is: from | pai | header:NAME (env TOLLGUARD_HEP_LINE_SOURCE)",
    )
    p.add_argument("--web-port", type=int, help="port of /metrics (env TOLLGUARD_WEB_PORT)")
    p.set_defaults(func=_ingest_hep)
    p = ingest.add_parser(
        "pack",
        help="single-event records to envelopes on the events topic, partition for partition",
    )
    p.add_argument("--broker", help="kafka://host:port (env TOLLGUARD_BROKER)")
    p.add_argument(
        "--input-topic", default="calls.raw", help="topic of single events (default calls.raw)"
    )
    p.add_argument(
        "--max-events",
        type=_envelope_events,
        default=500,
        help="events per envelope at most (default 500)",
    )
    p.add_argument(
        "--linger-ms",
        type=_linger_ms,
        default=5.0,
        help="longest wait for an envelope to fill, after its first event (default 5)",
    )
    p.add_argument("--web-port", type=int, help="port of /metrics (env TOLLGUARD_WEB_PORT)")
    p.set_defaults(func=_ingest_pack)

    enforce = sub.add_parser("enforce", help="apply block signals to a switch").add_subparsers(
        dest="enforce_cmd", required=True
    )
    p = enforce.add_parser("kamailio", help="blocks to a Kamailio htable over JSON-RPC")
    p.add_argument("--broker", help="kafka://host:port (env TOLLGUARD_BROKER)")
    p.add_argument("--rpc-url", help="jsonrpcs HTTP URL (env TOLLGUARD_KAMAILIO_RPC_URL)")
    p.add_argument("--htable", help="htable name (env TOLLGUARD_KAMAILIO_HTABLE)")
    p.add_argument("--web-port", type=int, help="port of /metrics (env TOLLGUARD_WEB_PORT)")
    p.set_defaults(func=_enforce_kamailio)

    p = sub.add_parser("block", help="block a line by hand (control signal, source manual)")
    p.add_argument("line", help="line id")
    p.add_argument("--ttl", help="e.g. 30m, 1h, 2d; default: until unblocked")
    p.add_argument(
        "--scope", default="international", help="international (default), all, or +232,+220"
    )
    p.add_argument("--reason", help="one sentence for the audit trail")
    p.add_argument("--actor", help="who decides (default: the OS user)")
    p.add_argument("--tenant", help="customer account of the line")
    p.add_argument("--broker", help="kafka://host:port (env TOLLGUARD_BROKER)")
    p.set_defaults(func=_control)
    p = sub.add_parser("unblock", help="lift a block by hand (control signal, source manual)")
    p.add_argument("line", help="line id")
    p.add_argument("--reason", help="one sentence for the audit trail")
    p.add_argument("--actor", help="who decides (default: the OS user)")
    p.add_argument("--tenant", help="customer account of the line")
    p.add_argument("--broker", help="kafka://host:port (env TOLLGUARD_BROKER)")
    p.set_defaults(func=_control)
    p = sub.add_parser("blocks", help="the current block list, from the compacted blocks topic")
    p.add_argument("--json", action="store_true", help="JSON array of the block signals")
    p.add_argument("--broker", help="kafka://host:port (env TOLLGUARD_BROKER)")
    p.set_defaults(func=_control)

    rules = sub.add_parser("rules", help="rule packs").add_subparsers(
        dest="rules_cmd", required=True
    )
    p = rules.add_parser("check", help="validate rule pack files; errors as file:line: reason")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=_rules_check)
    p = rules.add_parser("push", help="validate a rule pack and publish it to running workers")
    p.add_argument("file")
    p.add_argument("--broker", help="kafka://host:port (env TOLLGUARD_BROKER)")
    p.set_defaults(func=_rules_push)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
