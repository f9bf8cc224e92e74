"""Durable state: a restored processor decides exactly as one that never stopped."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import orjson

from tollguard.app.metrics import Metrics
from tollguard.app.processor import BatchProcessor, RawRecord, StateRecord
from tollguard.engine.engine import LAST_SEEN_GRANULE_MS, LineState
from tollguard.engine.kinds.live import LiveCalls
from tollguard.engine.snapshot import SnapshotError, decode_line, encode_line
from tollguard.numbering import DestinationTable, load_default_dial_plans
from tollguard.rulepacks import load_pack
from tollguard.simulate.scenarios import hash_small
from tollguard.simulate.traffic import AttackSpec, BackgroundSpec, attack, background, merge

from .helpers import T0

PACK = Path(__file__).resolve().parents[2] / "rules" / "default.yaml"


def processor() -> BatchProcessor:
    return BatchProcessor(
        load_pack(PACK), load_default_dial_plans(), DestinationTable.load_default(), Metrics()
    )


def two_partitions(line_id: str) -> int:
    """The same in every run: Python's hash() is salted per process."""
    return hash_small(line_id) % 2


def records(
    n_lines: int = 30, attack_calls: int = 120, partition_of: Callable[[str], int] = two_partitions
) -> list[RawRecord]:
    end = T0 + 8 * 3_600_000
    events = merge(
        background(BackgroundSpec(lines=n_lines, calls_per_hour=12, intl_share=0.2), T0, end, 5),
        attack(AttackSpec(calls=attack_calls, interval_ms=60_000), T0 + 3_600_000, 5),
    )
    out = []
    offsets = [0, 0]
    for e in events:
        p = partition_of(e["line_id"])
        out.append(RawRecord("calls.events", p, offsets[p], e["line_id"].encode(), orjson.dumps(e)))
        offsets[p] += 1
    return out


def decisions(proc: BatchProcessor, recs: list[RawRecord]) -> list[tuple[str, ...]]:
    out = []
    for i in range(0, len(recs), 97):
        batch = proc.process(recs[i : i + 97], 0)
        batch.signals.extend(proc.expire(0).signals)
        out += [(s.signal_id, s.action, s.line_id) for s in batch.signals]
    return out


def crash_and_resume(recs: list[RawRecord], cut: int, replay_from: int) -> list[tuple[str, ...]]:
    """Decisions of a worker that checkpoints at `cut` and dies, then of its successor.

    The successor restores from the changelog and re-reads from `replay_from`
    (an older committed offset); events its restored lines hold are skipped.
    """
    first = processor()
    before = decisions(first, recs[:cut])
    log: dict[int, list[StateRecord]] = {}
    for r in first.checkpoint():
        log.setdefault(r.partition, []).append(r)
    second = processor()
    for p, entries in log.items():
        second.restore(p, [(r.key, r.value) for r in entries])
    return before + decisions(second, recs[replay_from:])


def test_restored_processor_continues_exactly_where_the_old_one_stopped() -> None:
    recs = records()
    reference = decisions(processor(), recs)
    assert any(a == "block" for _, a, _ in reference)

    cut = len(recs) * 2 // 5
    assert crash_and_resume(recs, cut, cut - 150) == reference


def test_a_checkpoint_written_in_slices_between_batches_resumes_exactly() -> None:
    """The worker writes a round a slice at a time while it decides later batches.

    Its successor restores whatever was written and re-reads from the round's
    offsets. A line written after more of its events were decided must not
    count those events twice; one written before must not lose them.
    """
    recs = records(n_lines=400, attack_calls=150)
    uninterrupted = processor()
    reference = decisions(uninterrupted, recs)
    assert any(a == "block" for _, a, _ in reference)
    first = processor()
    cut = len(recs) // 3
    seen = decisions(first, recs[:cut])
    first.open_checkpoint()
    log: list[StateRecord] = []
    slices = 0
    while not first.checkpoint_written:
        log += first.checkpoint_step(deadline=0.0)  # one slice, then a batch
        slices += 1
        seen += decisions(first, recs[cut : cut + 60])
        cut += 60
    committed = first.close_checkpoint()
    assert slices > 2, "the round was written in one go"
    seen += decisions(first, recs[cut : cut + 300])  # then the worker dies

    second = processor()
    for p in (0, 1):
        second.restore(p, [(r.key, r.value) for r in log if r.partition == p])
    replay = [r for r in recs if r.offset >= committed.get(r.partition, 0)]
    seen += decisions(second, replay)
    # Re-read events may repeat a signal (same signal_id): at-least-once, never different.
    assert sorted(set(seen)) == sorted(set(reference))
    assert len(set(reference)) == len(reference)
    assert line_states(second) == line_states(uninterrupted), "an event counted twice or lost"


def line_states(proc: BatchProcessor) -> dict[str, bytes]:
    return {k: encode_line(v, 0) for e in proc.engines.values() for k, v in e.lines.items()}


def test_evicted_lines_become_tombstones() -> None:
    proc = processor()
    proc.process(records(n_lines=5, attack_calls=0)[:50], 0)
    assert proc.checkpoint(), "changed lines were not written"
    assert proc.checkpoint() == [], "unchanged lines were written again"
    proc.evict_scan_s = 0.0
    tombstones = [r for r in proc.checkpoint(idle_ms=1) if r.value is None]
    assert tombstones, "idle lines were not evicted"
    assert sum(len(e.lines) for e in proc.engines.values()) < 5


def test_snapshot_rejects_foreign_classes_and_garbage() -> None:
    for bad in (b"not json", b'{"v": 9, "o": 1, "s": null}', b'{"v": 1, "o": 1, "s": {"c": "os"}}'):
        try:
            decode_line(bad)
        except SnapshotError:
            continue
        raise AssertionError(f"accepted {bad!r}")
    # Only line state decodes: a rule state tagged with any other class is refused.
    evil = b'{"v":3,"o":1,"s":[null,1,1,[{"r":["EventParser",1]},null,null,null,0,0,null,null]]}'
    for bad in (evil, b'{"v":2,"o":1,"s":{"c":"Engine","f":[]}}', b'{"v":3,"o":1,"s":[]}'):
        try:
            decode_line(bad)
        except SnapshotError:
            continue
        raise AssertionError(f"accepted {bad!r}")
    line = LineState("t-1", T0, T0 + 5)
    assert decode_line(encode_line(line, 7)) == (line, 7)


def test_random_cut_points_agree_with_the_reference() -> None:
    recs = records(n_lines=10, attack_calls=80)
    reference = decisions(processor(), recs)
    rng = random.Random(3)
    for _ in range(4):
        cut = rng.randrange(100, len(recs) - 100)
        assert crash_and_resume(recs, cut, cut - rng.randrange(0, 100)) == reference


def test_format_1_records_from_an_older_worker_are_still_read() -> None:
    block_free = {
        "c": "LineState",
        # format 1: every field on LineState, in slot order
        "f": [None, None, 0, T0, None, T0 + 5, None, None, 0, {"d": []}, "tenant-1"],
    }
    state, offset = decode_line(orjson.dumps({"v": 1, "o": 42, "s": block_free}))
    assert (state.first_ts, state.max_ts, state.tenant, state.rules, offset) == (
        T0,
        T0 + 5,
        "tenant-1",
        None,
        42,
    )
    setup = {"c": "CallEvent", "f": ["setup", "c1", T0, "l", None, None, "010", "+2", None, True]}
    fields = block_free["f"]
    assert isinstance(fields, list)
    with_rules = [{"d": [["r", T0]]}, *fields[1:4], {"d": [["c1", setup]]}, *fields[5:]]
    state, _ = decode_line(orjson.dumps({"v": 1, "o": 1, "s": {"c": "LineState", "f": with_rules}}))
    assert state.rules.alerting == {"r": T0} and state.rules.states == {}
    assert state.rules.legs == {"c1": (T0, "+2", None, True)}


def test_only_events_that_change_durable_state_mark_the_line() -> None:
    proc = processor()

    def dirty_after(**fields: object) -> set[str]:
        e = {"call_id": f"c{len(seen)}", "line_id": "line-1", "callee": "0312345678", **fields}
        seen.append(e)
        proc.process([RawRecord("calls.events", 0, len(seen), b"k", orjson.dumps(e))], T0)
        return {r.key.decode() for r in proc.checkpoint()}

    seen: list[dict[str, object]] = []
    assert dirty_after(ts=T0) == {"line-1"}  # a new line
    assert dirty_after(ts=T0 + 1_000) == set()  # domestic, same last-seen granule
    assert dirty_after(ts=T0 + 2_000, callee="01023276123456") == {"line-1"}  # a rule saw it
    assert dirty_after(ts=T0 + 3_600_000) == {"line-1"}  # last-seen moved a granule on


def test_a_batch_marks_the_lines_whose_last_seen_time_moved_a_granule_on() -> None:
    # One engine call decides a batch, and places each event's granule from
    # the one before it: lines must still be marked by their own last-seen time.
    proc = processor()
    hour = (T0 // LAST_SEEN_GRANULE_MS + 1) * LAST_SEEN_GRANULE_MS  # a granule starts

    def batch(*events: tuple[str, int]) -> set[str]:
        values = [
            {"call_id": f"c{line}{ts}", "line_id": line, "callee": "0312345678", "ts": ts}
            for line, ts in events
        ]
        records = [
            RawRecord("calls.events", 0, i, b"k", orjson.dumps(v)) for i, v in enumerate(values)
        ]
        proc.process(records, T0)
        return {r.key.decode() for r in proc.checkpoint()}

    first = [("a", hour - 10_000), ("b", hour - 9_000), ("c", hour + 500), ("d", hour - 8_000)]
    assert batch(*first) == {"a", "b", "c", "d"}  # new lines
    assert batch(
        ("a", hour + 1_000),  # moved on
        ("b", hour + 2_000),  # moved on, after an event that did too
        ("c", hour + 4_000),  # was in this granule already
        ("d", hour - 1_000),  # later, but still in its granule
    ) == {"a", "b"}


FORMAT_2 = orjson.loads((Path(__file__).parent / "data" / "changelog_v2.json").read_bytes())


def test_format_2_records_from_the_previous_release_resume_exactly() -> None:
    # The fixture's offsets count each partition's records as that worker had
    # them, so the events must be partitioned as they were then.
    written_to = {k: p for p, k, _ in FORMAT_2["records"]}
    recs = records(n_lines=10, attack_calls=80, partition_of=written_to.__getitem__)
    reference = decisions(processor(), recs)
    cut = FORMAT_2["cut"]
    before = decisions(processor(), recs[:cut])
    resumed = processor()
    for partition in (0, 1):
        log = [(k.encode(), v.encode()) for p, k, v in FORMAT_2["records"] if p == partition]
        resumed.restore(partition, log)
    blocked = [
        s for e in resumed.engines.values() for s in e.lines.values() if s.rules and s.rules.block
    ]
    assert blocked, "the fixture holds an open block"
    assert before + decisions(resumed, recs[cut:]) == reference


def test_format_2_live_calls_and_legs_are_read() -> None:
    [(_, _, value)] = FORMAT_2["live"]
    state, _ = decode_line(value.encode())
    assert state.tenant == "t-9" and state.rules is not None
    long_calls = state.rules.states["long-intl-call"]
    assert isinstance(long_calls, LiveCalls)
    assert long_calls.tags == {"up-1": "+232", "up-2": "+44"}
    assert state.rules.legs is not None
    assert state.rules.legs["up-1"][2] == DestinationTable.load_default().lookup("+232")
    # written again as format 3, it reads back the same
    assert decode_line(encode_line(state, 4)) == (state, 4)
