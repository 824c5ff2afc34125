"""Every Prometheus metric of design §5, in one registry per app so tests never collide."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
TOKEN_BUCKETS = (16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768)
RATIO_BUCKETS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
MT = ("model", "task")


class Metrics:
    """The metric objects of one app instance."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("berth_requests_total", "HTTP requests", ["route", "status"], registry=r)
        self.request_duration = Histogram(
            "berth_request_duration_seconds",
            "Request latency",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.items = Counter("berth_items_total", "Inputs served", MT, registry=r)
        self.tokens = Counter("berth_tokens_total", "Tokens served (unpadded)", MT, registry=r)
        self.truncated = Counter("berth_truncated_total", "Inputs truncated", MT, registry=r)
        self.rejected = Counter(
            "berth_rejected_total",
            "Requests refused or dropped (overloaded, too_long, invalid, deadline, cancelled)",
            [*MT, "reason"],
            registry=r,
        )
        self.queue_wait = Histogram(
            "berth_queue_wait_seconds",
            "Time an item waited for its batch",
            MT,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference = Histogram(
            "berth_inference_seconds",
            "Time of one batch on the runtime",
            MT,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokenize = Histogram(
            "berth_tokenize_seconds",
            "Tokenization time of one request",
            MT,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "berth_batch_size", "Items per batch", MT, buckets=SIZE_BUCKETS, registry=r
        )
        self.batch_tokens = Histogram(
            "berth_batch_tokens", "Padded tokens per batch", MT, buckets=TOKEN_BUCKETS, registry=r
        )
        self.batch_padding = Histogram(
            "berth_batch_padding_ratio",
            "Share of a batch's tokens that are padding",
            MT,
            buckets=RATIO_BUCKETS,
            registry=r,
        )
        self.queue_items = Gauge("berth_queue_items", "Items waiting", MT, registry=r)
        self.queue_tokens = Gauge("berth_queue_tokens", "Tokens waiting", MT, registry=r)
        self.model_info = Gauge(
            "berth_model_info", "Loaded model (value 1)", [*MT, "precision", "provider"], registry=r
        )
        self.ready = Gauge("berth_ready", "1 when every model is loaded and warmed", registry=r)

    def for_model(self, model: str, task: str) -> ModelMetrics:
        return ModelMetrics(self, model, task)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class ModelMetrics:
    """The per-model view: label values bound once, and the batcher's observer interface."""

    def __init__(self, metrics: Metrics, model: str, task: str) -> None:
        labels = {"model": model, "task": task}
        self._m = metrics
        self._labels = labels
        self.items = metrics.items.labels(**labels)
        self.tokens = metrics.tokens.labels(**labels)
        self.truncated = metrics.truncated.labels(**labels)
        self.tokenize = metrics.tokenize.labels(**labels)
        self._queue_wait = metrics.queue_wait.labels(**labels)
        self._inference = metrics.inference.labels(**labels)
        self._batch_size = metrics.batch_size.labels(**labels)
        self._batch_tokens = metrics.batch_tokens.labels(**labels)
        self._padding = metrics.batch_padding.labels(**labels)
        self._queue_items = metrics.queue_items.labels(**labels)
        self._queue_tokens = metrics.queue_tokens.labels(**labels)

    def on_batch(self, size: int, padded_tokens: int, real_tokens: int, seconds: float) -> None:
        self._batch_size.observe(size)
        self._batch_tokens.observe(padded_tokens)
        self._padding.observe(1.0 - real_tokens / padded_tokens if padded_tokens else 0.0)
        self._inference.observe(seconds)

    def on_queue(self, items: int, tokens: int) -> None:
        self._queue_items.set(items)
        self._queue_tokens.set(tokens)

    def on_queue_wait(self, seconds: float) -> None:
        self._queue_wait.observe(seconds)

    def on_rejected(self, reason: str) -> None:
        self._m.rejected.labels(**self._labels, reason=reason).inc()

    def served(self, items: int, tokens: int, truncated: int) -> None:
        self.items.inc(items)
        self.tokens.inc(tokens)
        if truncated:
            self.truncated.inc(truncated)

    def info(self, precision: str, provider: str) -> None:
        self._m.model_info.labels(**self._labels, precision=precision, provider=provider).set(1)
