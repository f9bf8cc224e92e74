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
