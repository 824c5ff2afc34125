"""The bundles in the models directory: load, warm and serve each; report broken ones by name."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from service.batcher import BatchConfig, Batcher
from service.errors import InvalidInput, ModelNotFound, NotReady
from service.manifest import TOKENIZER_NAME, Manifest, load_manifest
from service.metrics import Metrics, ModelMetrics
from service.runtime import OrtRuntime, Runtime, choose_runtime
from service.settings import Settings, cpu_count
from service.tasks import handler_for
from service.tasks.base import Seq, TaskHandler
from service.tokenization import TextTokenizer

log = logging.getLogger("berth.registry")

State = Literal["loading", "ready", "failed"]
# Padding tokens an item may add to a CPU batch by default (service/batcher.py, BatchConfig).
# Swept on MiniLM int8, 2 cores, 3 interleaved rounds (texts/s, median): 0 -> interactive 326 /
# bulk 638, 8 -> 392 / 639, 16 -> 387 / 572; an earlier round: 32 -> 315 / 573, 64 -> 311 / 567.
CPU_PAD_ALLOWANCE = 8
TASKS = ("embed", "classify", "ner", "qa")


@dataclass(frozen=True)
class LoadedRuntime:
    runtime: Runtime
    precision: str
    provider: str
    file: str


# (bundle dir, manifest, settings, intra-op threads) -> runtime; tests pass a fake.
RuntimeFactory = Callable[[Path, Manifest, Settings, int], LoadedRuntime]


def ort_runtime_factory(path: Path, manifest: Manifest, settings: Settings, threads: int) -> LoadedRuntime:
    choice = choose_runtime(manifest, settings.provider, settings.precision)
    runtime = OrtRuntime(path / choice.file, choice, threads)
    return LoadedRuntime(runtime, choice.precision, choice.provider, choice.file)


@dataclass(eq=False)
class LoadedModel:
    """One bundle and everything serving it."""

    name: str
    path: Path
    state: State = "loading"
    error: str | None = None
    manifest: Manifest | None = None
    handler: TaskHandler | None = None
    tokenizer: TextTokenizer | None = None
    runtime: Runtime | None = None
    loaded: LoadedRuntime | None = None
    batcher: Batcher | None = None
    metrics: ModelMetrics | None = None
    timeout_s: float = 30.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def task(self) -> str | None:
        return self.manifest.task if self.manifest else None

    def describe(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "name": self.name,
            "task": m.task if m else None,
            "state": self.state,
            "error": self.error,
            "architecture": m.architecture if m else None,
            "labels": m.labels if m else None,
            "problem_type": m.problem_type if m else None,
            "max_length": m.max_length if m else None,
            "hidden_size": m.hidden_size if m else None,
            "pooling": m.pooling if m else None,
            "precision": self.loaded.precision if self.loaded else None,
            "provider": self.loaded.provider if self.loaded else None,
            "file": self.loaded.file if self.loaded else None,
        }


class Registry:
    """Every bundle directory under `settings.models_dir`, by name (= directory name)."""

    def __init__(
        self, settings: Settings, metrics: Metrics, runtime_factory: RuntimeFactory | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.runtime_factory = runtime_factory or ort_runtime_factory
        self.models: dict[str, LoadedModel] = {}
        self.loading_done = False
        self.threads, self.slots = self.thread_plan()
        # Every model's batches run on this pool: `slots` threads, each run using `threads` ORT
        # threads, so all models together never compute on more threads than there are cores.
        self.pool: ThreadPoolExecutor | None = None

    def discover(self) -> list[Path]:
        root = Path(self.settings.models_dir)
        if not root.is_dir():
            return []
        return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def thread_plan(self) -> tuple[int, int]:
        """(ORT threads per batch, batches running at once across all models): product ≤ cores."""
        cores = cpu_count()
        threads = self.settings.intra_op_threads or 1
        if threads > cores:
            log.warning("intra_op_threads=%d > %d cores; using %d", threads, cores, cores)
            threads = cores
        return threads, max(1, cores // threads)

    def lanes_per_model(self) -> int:
        """Batches one model may run at once: the setting, within the pool's slots."""
        wanted = self.settings.concurrent_batches or self.slots
        if wanted > self.slots:
            log.warning("concurrent_batches=%d > %d slots (cores // intra_op_threads); using %d",
                        wanted, self.slots, self.slots)
        return min(wanted, self.slots)

    def pad_allowance(self, provider: str) -> int | None:
        """The batcher's padding allowance for a model on `provider` (the setting, or its default)."""
        if self.settings.batch_pad_allowance is not None:
            return self.settings.batch_pad_allowance
        return CPU_PAD_ALLOWANCE if provider == "cpu" else None

    def register_bundles(self) -> None:
        """List every bundle as "loading" (synchronous: /models and /readyz show them at once)."""
        for path in self.discover():
            self.models[path.name] = LoadedModel(path.name, path, timeout_s=self.settings.request_timeout_s)

    async def load_all(self) -> None:
        """Load and warm each registered bundle in turn (registering them first if nobody has).

        The app runs this as a background task after startup, so the server listens while
        bundles load: /healthz answers 200 and /readyz 503 "loading" instead of refusing
        connections for the minutes a large models folder takes.
        """
        if not self.models:
            self.register_bundles()
        threads = self.threads
        self.pool = ThreadPoolExecutor(max_workers=self.slots, thread_name_prefix="infer")
        for model in self.models.values():
            try:
                await self._load(model, threads)
                model.state = "ready"
                log.info("model %s ready (%s, %s)", model.name, model.loaded.precision, model.loaded.provider)
            except Exception as exc:  # one broken bundle must not take the others down
                model.state = "failed"
                model.error = f"{type(exc).__name__}: {exc}"
                log.error("model %s failed to load: %s", model.name, model.error)
        self.loading_done = True

    async def _load(self, model: LoadedModel, threads: int) -> None:
        manifest = await asyncio.to_thread(load_manifest, model.path)
        model.manifest = manifest
        model.handler = handler_for(manifest.task)
        model.tokenizer = TextTokenizer(
            model.path / TOKENIZER_NAME, manifest.max_length, self.settings.max_chars
        )
        model.loaded = await asyncio.to_thread(
            self.runtime_factory, model.path, manifest, self.settings, threads
        )
        model.runtime = model.loaded.runtime
        model.metrics = self.metrics.for_model(model.name, manifest.task)
        if self.settings.warmup:
            await asyncio.to_thread(self._warm, model)
        s = self.settings
        config = BatchConfig(
            s.max_batch_tokens, s.max_batch_size, s.max_wait_ms, s.max_queue_tokens, s.batch_lookahead,
            lanes=self.lanes_per_model(), pad_allowance=self.pad_allowance(model.loaded.provider),
        )
        handler = model.handler
        model.batcher = Batcher(
            lambda items: handler.infer(model, items), config, model.metrics, model.name, executor=self.pool
        )
        model.batcher.start()
        model.metrics.info(model.loaded.precision, model.loaded.provider)

    def _warm(self, model: LoadedModel) -> None:
        """Run a padded batch of two lengths so the first request pays no session start-up, then
        the largest batch the batcher can form (max_batch_size rows of max_length tokens, within
        max_batch_tokens), so ONNX Runtime's memory arena reaches its peak before `/readyz` says
        ready. Without the second run RSS climbed in steps for minutes as rarer long batches
        arrived (soak, session 2: 612 → 645 → 686 MiB, read as +12% growth after warm-up)."""
        enc = model.tokenizer.encode(["warm up", "warm up the model before it serves"])
        model.handler.infer(model, [Seq(e.ids, e.type_ids, model.manifest.pooling) for e in enc.encodings])
        length = model.manifest.max_length
        rows = max(1, min(self.settings.max_batch_size, self.settings.max_batch_tokens // length))
        (longest,) = model.tokenizer.encode([" ".join(["warm"] * length)]).encodings
        item = Seq(longest.ids, longest.type_ids, model.manifest.pooling)
        model.handler.infer(model, [item] * rows)

    async def stop(self) -> None:
        """Stop every batcher, each finishing the work it accepted."""
        await asyncio.gather(*(m.batcher.stop() for m in self.models.values() if m.batcher is not None))
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool = None

    # -- lookups --------------------------------------------------------------------------------

    def default_name(self, task: str) -> str | None:
        configured = getattr(self.settings, f"default_{task}_model", None)
        if configured:
            return configured
        for model in self.models.values():  # directory order: the single or first bundle
            if model.task == task and model.state == "ready":
                return model.name
        return None

    def get(self, name: str | None, task: str) -> LoadedModel:
        """The model serving `task` (named, or the default); a domain error otherwise."""
        if name is None:
            name = self.default_name(task)
            if name is None and not self.loading_done:
                # A bundle still loading may be the one for this task; its manifest says later.
                raise NotReady(f"models are loading; none serves task {task!r} yet")
            if name is None:
                raise ModelNotFound(f"no model serves task {task!r}", param="model")
        model = self.models.get(name)
        if model is None:
            raise ModelNotFound(f"model {name!r} not found", param="model")
        if model.state == "loading":
            raise NotReady(f"model {name!r} is still loading")
        if model.state == "failed":
            raise NotReady(f"model {name!r} failed to load: {model.error}")
        if model.task != task:
            raise InvalidInput(f"model {name!r} serves task {model.task!r}, not {task!r}", param="model")
        return model

    def get_any(self, name: str | None) -> LoadedModel:
        """A serving model of any task (for /tokenize): named, or the first one serving."""
        if name is None:
            for task in TASKS:
                default = self.default_name(task)
                if default is not None and self.models.get(default) and self.models[default].state == "ready":
                    return self.models[default]
            if not self.loading_done:
                raise NotReady("models are loading; none is serving yet")
            raise ModelNotFound("no model is serving", param="model")
        model = self.models.get(name)
        if model is None:
            raise ModelNotFound(f"model {name!r} not found", param="model")
        return self.get(name, model.task or "")

    def readiness(self) -> tuple[bool, str]:
        """(ready, reason): every bundle settled, at least one serving, every configured default serving."""
        if not self.loading_done:
            settled = [m for m in self.models.values() if m.state != "loading"]
            return False, f"models are loading ({len(settled)} of {len(self.models)} done)"
        ready = [m for m in self.models.values() if m.state == "ready"]
        if not ready:
            return False, f"no model is serving (models dir: {self.settings.models_dir})"
        for task in TASKS:
            configured = getattr(self.settings, f"default_{task}_model", None)
            if configured and (configured not in self.models or self.models[configured].state != "ready"):
                return False, f"default {task} model {configured!r} is not serving"
        failed = [m.name for m in self.models.values() if m.state == "failed"]
        return True, ("ready" if not failed else f"ready; failed bundles: {', '.join(failed)}")
