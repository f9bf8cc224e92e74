"""Property tests: the keyed and sum windows against brute-force models.

Event times arrive mostly in order with some late ones (never older than the
newest minus the lateness, as the engine guarantees), and the window at each
step is (now - span, now] where now is the newest time seen.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tollguard.engine.windows import KeyedWindow, SlidingWindow, SumWindow

LATENESS = 5_000

steps = st.lists(
    st.tuples(st.integers(0, 20_000), st.integers(0, LATENESS), st.sampled_from("abcdefgh")),
    min_size=1,
    max_size=150,
)


def feed(raw: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """(ts, now, key) per step: a gap forward or a late event within the lateness."""
    out: list[tuple[int, int, str]] = []
    now = 0
    for gap, late, key in raw:
        # a late event (at most LATENESS behind the newest) or a step forward
        ts = max(0, now - late) if late > gap else now + gap
        now = max(now, ts)
        out.append((ts, now, key))
    return out


def inside(seen: list[tuple[int, str]], now: int, span: int) -> list[tuple[int, str]]:
    return [(t, k) for t, k in seen if now - span < t <= now]


@given(steps, st.integers(1, 30_000), st.sampled_from([0, 1, 2]))
@settings(max_examples=200)
def test_keyed_window_matches_brute_force(
    raw: list[tuple[int, int, str]], span: int, range_digits: int
) -> None:
    w = KeyedWindow(range_digits)
    seen: list[tuple[int, str]] = []
    for i, (ts, now, key) in enumerate(feed(raw)):
        number = f"+23276{key * 3}{i % 3}"
        w.add(ts, number, now, span, 10_000)
        seen.append((ts, number))
        live = inside(seen, now, span)
        counts: dict[str, int] = {}
        for _, k in live:
            counts[k] = counts.get(k, 0) + 1
        assert w.counts == counts  # distinct numbers and repeats
        if range_digits:
            rng = number[: len(number) - range_digits]
            expected = len({k for _, k in live if k[: len(k) - range_digits] == rng})
            assert w.ranges is not None and w.ranges.get(rng, 0) == expected
        assert list(w.times) == sorted(w.times)


@given(steps, st.integers(1, 30_000))
@settings(max_examples=200)
def test_sum_window_matches_brute_force_with_corrections(
    raw: list[tuple[int, int, str]], span: int
) -> None:
    w = SumWindow()
    seen: dict[str, tuple[int, int]] = {}
    for i, (ts, now, key) in enumerate(feed(raw)):
        call_id = f"c{i}"
        amount = (ord(key) * 7919 + i) % 100_000
        total = w.add(ts, amount, call_id, "+232", now, span, 10_000)
        seen[call_id] = (ts, amount)
        # now and then a release corrects an earlier call's amount
        if i % 3 == 2:
            target = f"c{i - 2}"
            corrected = w.rescale(target, 2.5, now, span, 10_000)
            t_ts, t_amount = seen[target]
            if now - span < t_ts <= now:
                seen[target] = (t_ts, round(t_amount * 2.5))
                assert corrected is not None
                total = corrected
            else:
                assert corrected is None
        expected = sum(a for t, a in seen.values() if now - span < t <= now)
        assert total == expected == w.total


@given(steps, st.integers(1, 30_000), st.integers(1, 40))
@settings(max_examples=200)
def test_count_window_with_late_events_matches_brute_force_up_to_the_cap(
    raw: list[tuple[int, int, str]], span: int, cap: int
) -> None:
    w = SlidingWindow()
    seen: list[int] = []
    for ts, now, _ in feed(raw):
        seen.append(ts)
        got = w.add(ts, "x", now, span, cap)
        assert got == min(sum(1 for t in seen if now - span < t <= now), cap)
