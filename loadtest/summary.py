"""Load-run summaries: percentiles from latency histograms, the one-line report, CI thresholds.

Pure functions over counts, shared by the locust quitting hook, `python -m loadtest.run` and
the benchmark client, so "p95" means the same thing everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass


def percentile(histogram: Mapping[float, int], q: float) -> float:
    """The q-quantile (0..1) of a {value: count} histogram: smallest value with ≥ q of the mass.

    Nearest-rank on purpose (no interpolation): with few samples p99 is the worst one seen,
    which is the honest answer for a latency gate.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {q}")
    total = sum(histogram.values())
    if total == 0:
        return math.nan
    rank = max(1, math.ceil(q * total))
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return float(value)
    return float(max(histogram))


def histogram_of(values: Iterable[float], resolution_ms: float = 0.1) -> dict[float, int]:
    """Bucket raw latencies (ms) at a fixed resolution, keeping memory bounded on long runs."""
    hist: dict[float, int] = {}
    for v in values:
        key = round(round(v / resolution_ms) * resolution_ms, 6)
        hist[key] = hist.get(key, 0) + 1
    return hist


@dataclass(frozen=True)
class Summary:
    """What one load run measured (latencies in milliseconds)."""

    scenario: str
    requests: int
    failures: int
    texts: int
    duration_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    queue_p50_ms: float | None = None
    inference_p50_ms: float | None = None

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def texts_per_s(self) -> float:
        return self.texts / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def failure_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    @classmethod
    def from_histogram(
        cls,
        scenario: str,
        latency_ms: Mapping[float, int],
        failures: int,
        texts: int,
        duration_s: float,
        queue_ms: Mapping[float, int] | None = None,
        inference_ms: Mapping[float, int] | None = None,
    ) -> Summary:
        """Summary of a run whose every request (failed ones included) is in `latency_ms`."""
        requests = sum(latency_ms.values())
        return cls(
            scenario=scenario,
            requests=requests,
            failures=failures,
            texts=texts,
            duration_s=duration_s,
            p50_ms=percentile(latency_ms, 0.50),
            p95_ms=percentile(latency_ms, 0.95),
            p99_ms=percentile(latency_ms, 0.99),
            queue_p50_ms=percentile(queue_ms, 0.5) if queue_ms else None,
            inference_p50_ms=percentile(inference_ms, 0.5) if inference_ms else None,
        )

    def line(self) -> str:
        """The one-line report."""
        text = (
            f"{self.scenario}: {self.requests_per_s:.1f} req/s, {self.texts_per_s:.1f} texts/s, "
            f"p50 {self.p50_ms:.1f} ms, p95 {self.p95_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, "
            f"failures {self.failures}/{self.requests} ({self.failure_ratio:.2%})"
        )
        if self.queue_p50_ms is not None and self.inference_p50_ms is not None:
            text += f"; server p50 queue {self.queue_p50_ms:.1f} ms, inference {self.inference_p50_ms:.1f} ms"
        return text

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out.update(
            requests_per_s=self.requests_per_s, texts_per_s=self.texts_per_s, failure_ratio=self.failure_ratio
        )
        # JSON has no NaN: an empty run has no percentiles.
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}


@dataclass(frozen=True)
class Thresholds:
    """Limits a run must meet to pass a CI gate; None disables a limit."""

    max_failure_ratio: float | None = 0.01
    max_p95_ms: float | None = None
    min_requests: int = 1

    def violations(self, summary: Summary) -> list[str]:
        """Every limit the run broke, in words (empty when it passed)."""
        out = []
        if summary.requests < self.min_requests:
            out.append(f"only {summary.requests} requests completed (need ≥ {self.min_requests})")
        if self.max_failure_ratio is not None and summary.failure_ratio > self.max_failure_ratio:
            out.append(f"failure ratio {summary.failure_ratio:.2%} > {self.max_failure_ratio:.2%}")
        if self.max_p95_ms is not None and not summary.p95_ms <= self.max_p95_ms:
            out.append(f"p95 {summary.p95_ms:.1f} ms > {self.max_p95_ms:.1f} ms")
        return out


def exit_code(violations: list[str]) -> int:
    """Process exit status for a gated run: 0 when it passed, 1 when any limit was broken."""
    return 1 if violations else 0
