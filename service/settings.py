"""Every setting of the service, in one pydantic-settings class (env prefix BERTH_), read once."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "BERTH_"


class Settings(BaseSettings):
    """Read at start from BERTH_* variables (or keyword arguments) and passed down, frozen."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    # Where bundles live, and which one serves a task when a request names none.
    models_dir: Path = Path("models")
    default_embed_model: str | None = None
    default_classify_model: str | None = None
    default_ner_model: str | None = None
    default_qa_model: str | None = None

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)

    # Batching (design §4).
    max_batch_tokens: int = Field(8192, gt=0, description="padded tokens per batch")
    # 16, not 32: on 2 cores a closed-loop client's next request is parsed and tokenized while the
    # previous batch runs, so two smaller batches in flight beat one big one (berth bench, session
    # 2: bulk 4 × 32 texts 480 vs 438 texts/s, interactive 16 × 1 293 vs 279; docs/benchmarks.md).
    max_batch_size: int = Field(16, gt=0)
    max_wait_ms: float = Field(5.0, ge=0)
    max_queue_tokens: int = Field(65536, gt=0, description="tokens waiting per model before 429")
    batch_lookahead: int = Field(256, gt=0, description="queued items considered for length grouping")
    # Unset: 8 on CPU, where a padded token costs as much as a real one and a run's fixed cost is
    # about 16 tokens' worth (service/batcher.py); no limit on CUDA, where padding is nearly free.
    batch_pad_allowance: int | None = Field(
        None, ge=0, description="padding tokens an item may add to a batch (unset: 8 on CPU, none on GPU)"
    )

    # Request limits.
    max_body_bytes: int = Field(4 * 1024 * 1024, gt=0)
    max_items: int = Field(256, gt=0, description="inputs per request")
    max_chars: int = Field(50_000, gt=0, description="characters per input, checked before tokenizing")
    request_timeout_s: float = Field(30.0, gt=0, description="deadline of a request while queued")
    shutdown_grace_s: float = Field(
        0.0, ge=0, description="after SIGTERM, keep the socket open (503 to new work) at least this long"
    )

    # Runtime.
    provider: Literal["auto", "cpu", "cuda", "tensorrt"] = "auto"
    precision: Literal["auto", "fp32", "int8", "fp16"] = "auto"
    # How the cores are used: each batch runs on `intra_op_threads` threads, and the process runs
    # at most cores // intra_op_threads batches at once (all models together), a model at most
    # `concurrent_batches` of them. The default, one thread a batch and as many batches as cores,
    # measured faster than one batch on every core (docs/benchmarks.md: a small batch cannot keep
    # two intra-op threads busy, and they wait on each other at every operator).
    intra_op_threads: int = Field(0, ge=0, description="ORT threads per batch; 0 = 1")
    concurrent_batches: int = Field(
        0, ge=0, description="batches one model may run at once; 0 = as many as the cores allow"
    )
    warmup: bool = True

    # Security and logging.
    api_key: SecretStr | None = None
    # A JSON list or comma-separated origins (NoDecode: the environment's text reaches the
    # validator below, which parses both, instead of pydantic-settings' JSON-only decoding,
    # which crashed `berth serve` with a traceback on "https://a.example").
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Prometheus scrapers often carry no credentials; opening /metrics is an explicit choice.
    metrics_public: bool = False
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    access_log: bool = True

    @field_validator("api_key")
    @classmethod
    def _empty_key_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value() else None

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: object) -> object:
        """BERTH_CORS_ORIGINS as a JSON list or comma-separated; other types go to validation."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not a JSON list of origins ({exc.msg})") from None
        return [origin.strip() for origin in text.split(",") if origin.strip()]


class SettingsError(ValueError):
    """Settings that cannot start the service; the message names the variable."""


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment plus explicit overrides (CLI options)."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            problems.append(f"{ENV_PREFIX}{field.upper()}: {err['msg']}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from exc


def cpu_count() -> int:
    """Cores this process may use: the affinity mask (unlike os.cpu_count), lowered to the
    container's CPU quota when one is set (`docker run --cpus 2`, compose `cpus:` and Kubernetes
    limits set a CFS quota, not an affinity mask, so without this a 2-CPU container on a 16-core
    host would run 16 batches at once)."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        cores = max(1, os.cpu_count() or 1)
    quota = cgroup_cpu_quota()
    return max(1, min(cores, int(quota))) if quota is not None else cores


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by the cgroup's CFS quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us` / `period`),
    rounded down to whole CPUs by the caller; None when unlimited or unreadable."""
    try:
        text = (root / "cpu.max").read_text().split()
        if text and text[0] != "max":
            return float(text[0]) / float(text[1])
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None
