"""The run summary: nearest-rank percentiles, rates, thresholds and the exit code they set."""

from __future__ import annotations

import math

import pytest

from loadtest.summary import Summary, Thresholds, exit_code, histogram_of, percentile


def test_percentile_is_nearest_rank_over_counts():
    hist = {10.0: 90, 50.0: 9, 400.0: 1}  # 100 requests
    assert percentile(hist, 0.50) == 10.0
    assert percentile(hist, 0.90) == 10.0
    assert percentile(hist, 0.95) == 50.0
    assert percentile(hist, 0.99) == 50.0
    assert percentile(hist, 1.0) == 400.0  # the worst request is p100, never interpolated away


def test_percentile_of_nothing_is_nan_and_bad_quantile_is_refused():
    assert math.isnan(percentile({}, 0.5))
    with pytest.raises(ValueError, match="quantile"):
        percentile({1.0: 1}, 95)


def test_histogram_buckets_at_resolution():
    assert histogram_of([1.01, 1.04, 2.26], resolution_ms=0.1) == {1.0: 2, 2.3: 1}


def test_summary_rates_and_line():
    s = Summary.from_histogram(
        "embed_bulk",
        {20.0: 50, 30.0: 50},
        failures=5,
        texts=95 * 32,
        duration_s=10.0,
        queue_ms={2.0: 100},
        inference_ms={15.0: 100},
    )
    assert s.requests == 100
    assert s.requests_per_s == pytest.approx(10.0)
    assert s.texts_per_s == pytest.approx(304.0)
    assert s.failure_ratio == pytest.approx(0.05)
    assert (s.p50_ms, s.p95_ms, s.p99_ms) == (20.0, 30.0, 30.0)
    line = s.line()
    assert "10.0 req/s" in line and "304.0 texts/s" in line and "failures 5/100" in line
    assert "queue 2.0 ms" in line and "inference 15.0 ms" in line
    d = s.to_dict()
    assert d["texts_per_s"] == pytest.approx(304.0) and d["p95_ms"] == 30.0


def test_empty_run_serializes_without_nan():
    s = Summary.from_histogram("qa", {}, failures=0, texts=0, duration_s=0.0)
    assert s.to_dict()["p95_ms"] is None and s.requests_per_s == 0.0


@pytest.mark.parametrize(
    ("failures", "p95_limit", "expected"),
    [
        (0, None, []),
        (2, None, ["failure ratio 2.00% > 1.00%"]),
        (0, 25.0, ["p95 30.0 ms > 25.0 ms"]),
        (0, 30.0, []),
    ],
)
def test_thresholds_set_the_exit_code(failures, p95_limit, expected):
    s = Summary.from_histogram("classify", {20.0: 50, 30.0: 50}, failures=failures, texts=100, duration_s=1.0)
    violations = Thresholds(max_failure_ratio=0.01, max_p95_ms=p95_limit).violations(s)
    assert violations == expected
    assert exit_code(violations) == (1 if expected else 0)


def test_a_run_with_no_requests_fails_the_gate():
    s = Summary.from_histogram("embed_interactive", {}, failures=0, texts=0, duration_s=5.0)
    assert exit_code(Thresholds().violations(s)) == 1
