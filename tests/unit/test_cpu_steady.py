from bench.cpu_steady import probe


def test_the_cpu_probe_reports_an_ordered_distribution_of_its_pieces() -> None:
    result = probe(0.05)
    assert result["pieces"] > 0
    assert 0 < result["cpu_ms_p50"] <= result["cpu_ms_p99"] <= result["cpu_ms_max"]
    assert 0 <= result["pieces_over_3x_median"] < result["pieces"]
