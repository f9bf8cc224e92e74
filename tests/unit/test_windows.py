from hypothesis import given
from hypothesis import strategies as st

from tollguard.engine.windows import SlidingWindow


def brute_count(times: list[int], now: int, span: int) -> int:
    return sum(1 for t in times if now - span < t <= now)


def test_window_slides_rather_than_resetting() -> None:
    w = SlidingWindow()
    span = 600_000
    counts = [w.add(t, "x", t, span, 100) for t in range(0, 1_200_000, 60_000)]
    # one call a minute: the count rises to 10 and then stays at 10.
    assert counts[:10] == list(range(1, 11))
    assert set(counts[10:]) == {10}


def test_call_exactly_one_span_old_has_left_the_window() -> None:
    w = SlidingWindow()
    w.add(0, "x", 0, 1000, 10)
    assert w.add(1000, "x", 1000, 1000, 10) == 1


@given(
    st.lists(st.tuples(st.integers(0, 50_000), st.integers(0, 5_000)), min_size=1, max_size=200),
    st.integers(1, 20_000),
    st.integers(1, 30),
)
def test_matches_brute_force_model_up_to_the_cap(
    steps: list[tuple[int, int]], span: int, cap: int
) -> None:
    """Counts equal a brute-force count, capped: enough to decide any threshold <= cap."""
    w = SlidingWindow()
    seen: list[int] = []
    now = 0
    for base, lateness in steps:
        ts = max(0, base - lateness) if base < now else base
        now = max(now, ts)
        seen.append(ts)
        got = w.add(ts, "x", now, span, cap)
        assert got == min(brute_count(seen, now, span), cap)
        assert list(w.times) == sorted(w.times)
