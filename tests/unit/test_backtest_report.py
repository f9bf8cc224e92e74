"""Backtest: CDR inputs, report metrics against ground truth, self-contained HTML."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from tollguard.cli.backtest import Options, backtest, backtest_raw
from tollguard.cli.main import main
from tollguard.config import load_settings
from tollguard.report.html import render
from tollguard.report.inputs import (
    InputError,
    Skipped,
    asterisk_events,
    channel_peer,
    csv_events,
    detect_format,
    parse_mapping,
)
from tollguard.simulate.scenarios import generate

T0 = 1_795_910_400_000  # 2026-11-29T00:00:00Z
MIN = 60_000

PACK = """\
pack: test
version: "t-1"
dial_plan: JP
rules:
  - id: sl-count
    kind: count
    description: calls to Sierra Leone
    match:
      international: true
      prefixes: ["+232"]
    window: 1h
    warning: 3
    critical: 10
    ttl: 2h
    block_scope: international
"""


@pytest.fixture
def settings(tmp_path: Path) -> Any:
    pack = tmp_path / "pack.yaml"
    pack.write_text(PACK)
    return load_settings(None, rules=str(pack))


def setup(line: str, n: int, ts: int, callee: str = "01023276123456") -> dict[str, Any]:
    return {"call_id": f"{line}-{n}", "ts": ts, "line_id": line, "callee": callee}


def raws(events: list[dict[str, Any]]) -> list[bytes]:
    return [orjson.dumps(e) for e in sorted(events, key=lambda e: e["ts"])]


# --- CDR inputs --------------------------------------------------------------------------

MASTER_ROWS = [
    # accountcode, src, dst, dcontext, clid, channel, dstchannel, lastapp, lastdata,
    # start, answer, end, duration, billsec, disposition, amaflags, uniqueid, userfield
    [
        "acct-7",
        "0661234567",
        "01023276111111",
        "from-pbx",
        '"Reception" <0661234567>',
        "SIP/pbx-osaka-0000001a",
        "SIP/trunk-0000001b",
        "Dial",
        "SIP/trunk/01023276111111,60",
        "2026-11-29 09:00:00",
        "2026-11-29 09:00:05",
        "2026-11-29 09:00:35",
        "35",
        "30",
        "ANSWERED",
        "DOCUMENTATION",
        "1795910400.1",
        "",
    ],
    [
        "",
        "201",
        "0312345678",
        "from-pbx",
        "201",
        "PJSIP/office-201-00000003",
        "PJSIP/trunk-00000004",
        "Dial",
        "x",
        "2026-11-29 08:50:00",
        "",
        "2026-11-29 08:50:20",
        "20",
        "0",
        "NO ANSWER",
        "DOCUMENTATION",
        "1795910400.2",
        "",
    ],
]


def master_csv() -> str:
    buf = io.StringIO()
    csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(MASTER_ROWS)
    return buf.getvalue()


def test_channel_peer() -> None:
    assert channel_peer("SIP/pbx-osaka-0000001a") == "pbx-osaka"
    assert channel_peer("PJSIP/201-00000003") == "201"
    assert channel_peer("IAX2/peer") == "peer"


def test_asterisk_master_csv_rows_become_ordered_events(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    path.write_text(master_csv())
    assert detect_format(path) == "asterisk"
    events = list(asterisk_events(path, tz=ZoneInfo("Asia/Tokyo")))
    # Rows are written at call end; events come out in event-time order.
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    first = events[0]
    assert first["line_id"] == "office-201"  # no accountcode: the calling channel's peer
    assert first["type"] == "setup" and first["callee"] == "0312345678"
    answered = [e for e in events if e["call_id"] == "1795910400.1"]
    assert [e["type"] for e in answered] == ["setup", "answer", "release"]
    assert answered[0]["line_id"] == "acct-7"
    assert answered[0]["caller"] == "0661234567"
    assert answered[-1]["duration_s"] == 30.0  # billsec, not duration
    tokyo_nine = datetime(2026, 11, 29, 0, 0, tzinfo=UTC).timestamp() * 1000
    assert answered[0]["ts"] == int(tokyo_nine)
    # Line from a different column when accountcodes are not per line.
    by_src = list(asterisk_events(path, line_from=("src",)))
    assert {e["line_id"] for e in by_src} == {"0661234567", "201"}
    by_channel = list(asterisk_events(path, line_from=("channel",)))
    assert {e["line_id"] for e in by_channel} == {"pbx-osaka", "office-201"}


def test_generic_csv_with_a_column_mapping(tmp_path: Path) -> None:
    path = tmp_path / "cdr.csv"
    path.write_text(
        "ext,dialled,started,billed,id\n"
        "pbx-1,01023276000001,2026-11-29T09:00:00+09:00,45,a\n"
        "pbx-1,0312345678,1795910300,,b\n"
        ",0312345678,1795910300,,c\n"
    )
    assert detect_format(path) == "csv"
    skipped = Skipped()
    mapping = parse_mapping("line_id=ext,callee=dialled,ts=started,duration_s=billed,call_id=id")
    events = list(csv_events(path, mapping, skipped=skipped))
    assert skipped.counts == {"no_line": 1}
    assert [(e["call_id"], e["type"]) for e in events] == [
        ("b", "setup"),
        ("a", "setup"),
        ("a", "release"),
    ]
    assert events[0]["ts"] == 1_795_910_300_000  # epoch seconds
    assert events[2]["duration_s"] == 45.0
    with pytest.raises(InputError):
        list(csv_events(path, parse_mapping("line_id=nope")))
    with pytest.raises(InputError):
        parse_mapping("colour=ext")


# --- report metrics ----------------------------------------------------------------------


def test_precision_recall_time_to_block_and_spend(settings: Any) -> None:
    events = []
    # A: attacked, 12 calls to Sierra Leone a minute apart: blocked at its 10th call.
    events += [setup("A", n, T0 + n * MIN) for n in range(12)]
    # B: legitimate but dials the same range: a false positive.
    events += [setup("B", n, T0 + n * MIN + 1000) for n in range(10)]
    # C: attacked, but too slowly for this rule: missed.
    events += [setup("C", n, T0 + n * 30 * MIN) for n in range(2)]
    # D: legitimate, domestic.
    events += [setup("D", n, T0 + n * MIN, "0312345678") for n in range(5)]
    # One of A's calls is released after 120 s: its cost becomes exact.
    events.append(
        {"call_id": "A-0", "type": "release", "ts": T0 + 2 * MIN, "line_id": "A", "duration_s": 120}
    )
    truth = {
        "scenario": "hand-made",
        "attacked": [
            {"line_id": "A", "start_ts": T0, "end_ts": T0 + 11 * MIN},
            {"line_id": "C", "start_ts": T0, "end_ts": T0 + 30 * MIN},
        ],
    }
    report, _, _ = backtest_raw(raws(events), settings, truth)
    ev = report["evaluation"]
    assert ev["true_positives"] == 1
    assert ev["false_positive_lines"] == ["B"]
    assert ev["precision"] == 0.5
    assert ev["recall"] == 0.5
    assert ev["time_to_block_s"]["median"] == 540.0  # 10th call, 9 minutes after the first
    assert ev["calls_before_block"]["median"] == 9
    lines = {r["line_id"]: r for r in report["lines"]}
    a = lines["A"]
    assert a["first_block_ts"] == T0 + 9 * MIN
    # Rate +23276: 0.65/min. Call 0 lasted 120 s, the others are priced at 60 s.
    assert a["spend_before_block"] == pytest.approx(0.65 * 2 + 8 * 0.65, abs=0.01)
    # Calls 10 and 11 came while the block was in force.
    assert a["spend_prevented"] == pytest.approx(2 * 0.65, abs=0.01)
    assert lines["C"]["first_block_ts"] is None
    assert lines["C"]["spend_before_block"] == lines["C"]["attack_spend"]
    assert "D" not in lines
    assert report["decisions_by_rule"]["sl-count"]["block"] == 2
    assert report["events"] == len(events)


def test_small_scenario_is_caught_with_the_truth_file(settings: Any, tmp_path: Path) -> None:
    events, truth = generate("seed-attack", seed=3, scale=0.1, days=1.0)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    report, ledger, signals = backtest([path], settings, Options(), truth)
    ev = report["evaluation"]
    assert (ev["precision"], ev["recall"]) == (1.0, 1.0)
    (line,) = truth["attacked"]
    row = next(r for r in report["lines"] if r["line_id"] == line["line_id"])
    # The tenth attack call triggers the block: ten calls of ~25 s spacing.
    attack_times = sorted(
        e["ts"]
        for e in generate("seed-attack", seed=3, scale=0.1, days=1.0)[0]
        if e["call_id"].startswith("atk") and e["type"] == "setup"
    )
    assert row["first_block_ts"] == attack_times[9]
    assert row["time_to_block_s"] == pytest.approx(
        (attack_times[9] - attack_times[0]) / 1000, abs=0.1
    )
    assert ev["spend_prevented"] > 10 * ev["spend_before_block"] > 0
    assert report["throughput"]["events_per_s"] > 0
    html = render(report, ledger, signals)
    assert "<svg" in html and line["line_id"] in html


def test_html_report_is_self_contained(settings: Any, tmp_path: Path) -> None:
    events, truth = generate("caribbean", seed=1, scale=0.1, days=3.0)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    truth_path = tmp_path / "truth.json"
    truth_path.write_bytes(orjson.dumps(truth))
    out, html = tmp_path / "r.json", tmp_path / "r.html"
    rc = main(
        [
            "backtest",
            str(path),
            "--rules",
            settings.rules,
            "--truth",
            str(truth_path),
            "--output",
            str(out),
            "--html",
            str(html),
            "--no-progress",
        ]
    )
    assert rc == 0
    page = html.read_text()
    assert page.startswith("<!doctype html>")
    assert page.count("<svg") >= 2
    assert not re.search(
        r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/|<script|<link|<img|@import|url\(", page
    )
    report = orjson.loads(out.read_bytes())
    assert report["evaluation"]["attacked_lines"] == len(truth["attacked"])
