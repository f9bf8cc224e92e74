import gc

from tollguard.engine.dedup import RecentIds


def test_repeated_pair_is_seen_once_and_types_are_distinct() -> None:
    ids = RecentIds(60_000)
    assert ids.add("c1", "setup", 1_000)
    assert not ids.add("c1", "setup", 1_500)
    assert ids.add("c1", "answer", 1_500)


def test_old_generations_are_forgotten() -> None:
    ids = RecentIds(1000)
    for i in range(100):
        ids.add(f"c{i}", "setup", i * 1000)
    assert len(ids) <= 4


def test_repeats_are_found_across_neighbouring_generations_only() -> None:
    ids = RecentIds(1000)
    assert ids.add("c1", "setup", 5_000)
    assert not ids.add("c1", "setup", 5_999)  # same generation
    assert not ids.add("c1", "setup", 6_500)  # the next one
    assert not ids.add("c1", "setup", 4_200)  # the one before
    assert ids.add("c1", "setup", 7_000)  # two generations on: a new call


def test_a_generation_ends_exactly_where_the_next_begins() -> None:
    ids = RecentIds(1000)
    assert ids.add("c1", "setup", 5_000)
    assert ids.add("c2", "setup", 6_000)  # the next generation's first millisecond
    assert not ids.add("c2", "setup", 7_500)  # so the generation after it still has it
    assert ids.add("c3", "setup", 5_999)  # the last millisecond of the earlier one
    assert ids.add("c3", "setup", 7_000)  # two generations on from it


def test_a_generation_is_spread_over_shards_that_fill_at_different_rates() -> None:
    # A set rehashes its whole table when it outgrows it, and no event is
    # decided meanwhile: no shard may hold much of a generation, and shards
    # must not be the same size, or they would all rehash at the same moment.
    ids = RecentIds(60_000)
    n = 200_000
    for i in range(n):
        assert ids.add(f"call-{i}", "setup", 1_000 + i % 50_000)
    sizes = ids.shard_sizes()
    assert len(ids) == n
    assert max(sizes) < n / 10
    assert max(sizes) > 1.6 * min(sizes)
    assert not any(ids.add(f"call-{i}", "setup", 2_000) for i in range(0, n, 997))


def _collector_visits(root: object) -> int:
    """References a full collection follows from `root` through tracked containers.

    Classes are left out: they lead into modules, which are not the filter's.
    """
    seen: set[int] = set()
    todo = [root]
    visits = 0
    while todo:
        obj = todo.pop()
        if id(obj) in seen or not gc.is_tracked(obj) or isinstance(obj, type):
            continue
        seen.add(id(obj))
        referents = gc.get_referents(obj)
        visits += len(referents)
        todo.extend(referents)
    return visits


def test_a_full_collection_does_not_walk_the_remembered_ids() -> None:
    # A full collection stops the worker while it walks every tracked
    # container; the filter holds millions of ids in production.
    ids = RecentIds(1000)
    for i in range(200_000):
        ids.add(f"call-{i}", "setup", i // 100)
    assert len(ids) > 100_000
    assert _collector_visits(ids) < 500
