"""Backtest inputs: JSONL call events (SPEC section 2) and CDR exports.

JSONL lines go to the engine exactly as they are, in file order, the way the
worker would have consumed them from Kafka. CDR rows are turned into SPEC
events (setup at ``start``, answer at ``answer``, release at ``end`` with the
billed seconds); because switches write a CDR when the call *ends*, their
events are re-ordered on event time through a bounded buffer (``reorder_s``,
default 4 h: a call longer than that has its setup arrive late).

Asterisk ``Master.csv`` (cdr_csv, no header) columns: accountcode, src, dst,
dcontext, clid, channel, dstchannel, lastapp, lastdata, start, answer, end,
duration, billsec, disposition, amaflags, uniqueid, userfield. The protected
line is taken from the first non-empty of ``line_from`` (default
``accountcode,channel``): ``channel`` means the peer of the calling channel,
``SIP/pbx-osaka-0000001a`` -> ``pbx-osaka``.
"""

from __future__ import annotations

import csv
import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

import orjson

ASTERISK_COLUMNS = (
    "accountcode",
    "src",
    "dst",
    "dcontext",
    "clid",
    "channel",
    "dstchannel",
    "lastapp",
    "lastdata",
    "start",
    "answer",
    "end",
    "duration",
    "billsec",
    "disposition",
    "amaflags",
    "uniqueid",
    "userfield",
)
LINE_SOURCES = ("accountcode", "src", "channel", "clid", "dcontext")
MAPPABLE = ("line_id", "callee", "ts", "call_id", "tenant", "caller", "duration_s", "end", "type")
FORMATS = ("auto", "jsonl", "asterisk", "csv")

Progress = Callable[[int], None]


class InputError(ValueError):
    """An input file that cannot be read as the format asked for."""


def _lines(path: Path, progress: Progress | None) -> Iterator[bytes]:
    """Raw lines of a file, reporting bytes read in chunks to `progress`."""
    pending = 0
    with path.open("rb") as fh:
        for line in fh:
            pending += len(line)
            if pending >= 1 << 20 and progress is not None:
                progress(pending)
                pending = 0
            yield line
    if progress is not None and pending:
        progress(pending)


def detect_format(path: Path) -> str:
    with path.open("rb") as fh:
        head = fh.read(4096)
    first = head.split(b"\n", 1)[0].strip()
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson") or first.startswith(b"{"):
        return "jsonl"
    try:
        row = next(csv.reader([first.decode("utf-8", errors="replace")]))
    except StopIteration:
        return "jsonl"
    lowered = [c.strip().lower() for c in row]
    if len(row) >= 16 and "dcontext" not in lowered and _looks_like_time(row[9]):
        return "asterisk"
    return "csv"


def _looks_like_time(text: str) -> bool:
    return len(text) >= 10 and text[4:5] == "-" and text[7:8] == "-"


def jsonl_records(path: Path, progress: Progress | None = None) -> Iterator[bytes]:
    for line in _lines(path, progress):
        line = line.rstrip(b"\r\n")
        if line:
            yield line


def parse_time(text: str, tz: tzinfo) -> int:
    """Epoch ms from ISO / 'YYYY-MM-DD HH:MM:SS' (naive = `tz`) or epoch s / ms numbers."""
    text = text.strip()
    if not text:
        raise ValueError("empty time")
    try:
        number = float(text)
    except ValueError:
        dt = datetime.fromisoformat(text)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=tz)
        return int(dt.timestamp() * 1000)
    return int(number if number >= 1e11 else number * 1000)


def channel_peer(channel: str) -> str:
    """``SIP/pbx-osaka-0000001a`` -> ``pbx-osaka``; ``PJSIP/201-00000003`` -> ``201``."""
    _, _, rest = channel.partition("/")
    rest = rest or channel
    head, sep, tail = rest.rpartition("-")
    if sep and len(tail) == 8 and all(c in "0123456789abcdef" for c in tail.lower()):
        return head
    return rest


def _line_of(row: Mapping[str, str], sources: Sequence[str]) -> str | None:
    for source in sources:
        value = row.get(source, "").strip()
        if source == "channel" and value:
            value = channel_peer(value)
        if value:
            return value[:128]
    return None


class _Reorder:
    """Releases events in ts order once they are `window_ms` behind the newest seen."""

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self.heap: list[tuple[int, int, dict[str, Any]]] = []
        self.seq = 0
        self.newest = 0

    def push(self, event: dict[str, Any]) -> Iterator[dict[str, Any]]:
        ts = int(event["ts"])
        self.seq += 1
        heapq.heappush(self.heap, (ts, self.seq, event))
        self.newest = max(self.newest, ts)
        limit = self.newest - self.window_ms
        while self.heap and self.heap[0][0] < limit:
            yield heapq.heappop(self.heap)[2]

    def drain(self) -> Iterator[dict[str, Any]]:
        while self.heap:
            yield heapq.heappop(self.heap)[2]


def _call_events(
    call_id: str,
    line_id: str,
    callee: str,
    start_ms: int,
    answer_ms: int | None,
    end_ms: int | None,
    billsec: float | None,
    extra: Mapping[str, str],
) -> list[dict[str, Any]]:
    base: dict[str, Any] = {"v": 1, "call_id": call_id, "line_id": line_id}
    base.update({k: v for k, v in extra.items() if v})
    out = [{**base, "type": "setup", "ts": start_ms, "callee": callee}]
    if answer_ms is not None:
        out.append({**base, "type": "answer", "ts": answer_ms})
    if end_ms is not None:
        release: dict[str, Any] = {**base, "type": "release", "ts": end_ms}
        if billsec is not None:
            release["duration_s"] = billsec
        out.append(release)
    return out


def _text_rows(path: Path, progress: Progress | None) -> Iterator[str]:
    for line in _lines(path, progress):
        yield line.decode("utf-8", errors="replace")


class Skipped:
    """Rows that could not become events, by reason (reported, never fatal)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, reason: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1


def asterisk_events(
    path: Path,
    line_from: Sequence[str] = ("accountcode", "channel"),
    tz: tzinfo = UTC,
    reorder_s: int = 4 * 3600,
    skipped: Skipped | None = None,
    progress: Progress | None = None,
) -> Iterator[dict[str, Any]]:
    skipped = skipped or Skipped()
    reorder = _Reorder(reorder_s * 1000)
    for n, cols in enumerate(csv.reader(_text_rows(path, progress)), 1):
        if len(cols) < 14:
            skipped.add("short_row")
            continue
        row = dict(zip(ASTERISK_COLUMNS, cols, strict=False))
        line = _line_of(row, line_from)
        if line is None:
            skipped.add("no_line")
            continue
        try:
            start = parse_time(row["start"], tz)
            answer = parse_time(row["answer"], tz) if row["answer"].strip() else None
            end = parse_time(row["end"], tz) if row["end"].strip() else None
            billsec = float(row["billsec"]) if row["billsec"].strip() else None
        except ValueError:
            skipped.add("bad_time")
            continue
        call_id = row.get("uniqueid", "").strip() or f"{path.name}:{n}"
        extra = {"caller": row["src"].strip(), "tenant": row["accountcode"].strip()}
        for event in _call_events(
            call_id, line, row["dst"].strip(), start, answer, end, billsec, extra
        ):
            yield from reorder.push(event)
    yield from reorder.drain()


def parse_mapping(text: str | None) -> dict[str, str]:
    """``line_id=ext,callee=dialled,ts=start`` -> field -> CSV column."""
    mapping: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, sep, column = part.partition("=")
        key = key.strip()
        if not sep or key not in MAPPABLE or not column.strip():
            raise InputError(
                f"bad column mapping {part!r}: use FIELD=COLUMN with FIELD in {', '.join(MAPPABLE)}"
            )
        mapping[key] = column.strip()
    return mapping


def csv_events(
    path: Path,
    mapping: Mapping[str, str],
    tz: tzinfo = UTC,
    reorder_s: int = 4 * 3600,
    skipped: Skipped | None = None,
    progress: Progress | None = None,
) -> Iterator[dict[str, Any]]:
    """A generic CSV with a header; `mapping` names the column of each field.

    Required: line_id, callee, ts. Each row is one call (setup at ts, and a
    release at ``end`` or ts + duration_s when those columns are mapped),
    unless a ``type`` column is mapped, in which case each row is one event.
    Unmapped fields default to a column of the same name when present.
    """
    skipped = skipped or Skipped()
    reader = csv.DictReader(_text_rows(path, progress))
    header = reader.fieldnames or []
    cols = {f: mapping.get(f, f) for f in MAPPABLE}
    missing = [f for f in ("line_id", "callee", "ts") if cols[f] not in header]
    if missing:
        wanted = ", ".join(f"{f} (column {cols[f]!r})" for f in missing)
        raise InputError(f"{path}: no column for {wanted}; header is {header}")
    has = {f for f, c in cols.items() if c in header}
    reorder = _Reorder(reorder_s * 1000)
    for n, row in enumerate(reader, 2):
        line = (row.get(cols["line_id"]) or "").strip()[:128]
        if not line:
            skipped.add("no_line")
            continue
        try:
            ts = parse_time(row.get(cols["ts"]) or "", tz)
            duration = (
                float(row[cols["duration_s"]])
                if "duration_s" in has and (row.get(cols["duration_s"]) or "").strip()
                else None
            )
            end = (
                parse_time(row[cols["end"]], tz)
                if "end" in has and (row.get(cols["end"]) or "").strip()
                else None
            )
        except ValueError:
            skipped.add("bad_time")
            continue
        call_id = (row.get(cols["call_id"]) or "").strip() if "call_id" in has else ""
        call_id = call_id or f"{path.name}:{n}"
        extra: dict[str, str] = {
            f: (row.get(cols[f]) or "").strip() for f in ("tenant", "caller") if f in has
        }
        callee = (row.get(cols["callee"]) or "").strip()
        if "type" in has:
            event: dict[str, Any] = {
                "v": 1,
                "type": (row.get(cols["type"]) or "setup").strip() or "setup",
                "call_id": call_id,
                "ts": ts,
                "line_id": line,
                **{k: v for k, v in extra.items() if v},
            }
            if callee:
                event["callee"] = callee
            if duration is not None:
                event["duration_s"] = duration
            events = [event]
        else:
            if end is None and duration is not None:
                end = ts + int(duration * 1000)
            events = _call_events(call_id, line, callee, ts, None, end, duration, extra)
        for e in events:
            yield from reorder.push(e)
    yield from reorder.drain()


def encode(events: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    for event in events:
        yield orjson.dumps(event)
