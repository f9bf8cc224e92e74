"""The CI-sized soak: with a rotating population, tracked lines level off."""

from bench.soak import LIFETIME_MS, run_soak


def test_idle_lines_are_evicted_so_state_stays_bounded() -> None:
    events, active, step_ms = 100_000, 300, 500
    samples = run_soak(events, active, idle_s=1800, batch=2000, every=10_000, step_ms=step_ms)
    # About 7 generations of lines pass through each slot.
    assert events * step_ms >= 6 * LIFETIME_MS
    # Each slot holds its current line plus ones idle for less than 30 minutes.
    bound = active * 2
    assert all(s.tracked_lines <= bound for s in samples), [s.tracked_lines for s in samples]
    assert samples[-1].tombstones > 3 * active, "evicted lines were not removed from the changelog"
