"""The runtime contract (numpy in, numpy out), the ONNX Runtime implementation and a fake for tests."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from service.manifest import Manifest, Precision, Provider
from service.ort_options import disabled_optimizers, session_options

log = logging.getLogger("berth.runtime")


class Runtime(Protocol):
    """What the batcher calls, on its dedicated inference thread."""

    input_names: tuple[str, ...]

    def run(self, inputs: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """Run one padded batch; `outputs` limits what is fetched (default: all)."""
        ...

    def health(self) -> dict[str, object]: ...


@dataclass(frozen=True)
class RuntimeChoice:
    """Which ONNX file to load and where, decided from the settings and the manifest."""

    file: str
    variant: str
    precision: Precision
    provider: Provider
    ort_providers: tuple[str, ...]


def available_ort_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def choose_runtime(
    manifest: Manifest, provider: str, precision: str, available: list[str] | None = None
) -> RuntimeChoice:
    """Resolve provider `auto|cpu|cuda|tensorrt` and precision `auto|fp32|int8|fp16` for a bundle.

    auto provider: CUDA when onnxruntime-gpu sees a GPU, else CPU. auto precision: int8 on CPU,
    fp16 on GPU; a missing variant falls back to fp32 (logged), never to a failure.
    """
    available = available if available is not None else available_ort_providers()
    has_cuda = "CUDAExecutionProvider" in available
    if provider == "auto":
        provider = "cuda" if has_cuda else "cpu"
    if provider in ("cuda", "tensorrt") and not has_cuda:
        raise ValueError(f"provider {provider!r} requested but onnxruntime offers only {available}")
    ort_providers: tuple[str, ...] = ("CPUExecutionProvider",)
    if provider == "cuda":
        ort_providers = ("CUDAExecutionProvider", "CPUExecutionProvider")
    elif provider == "tensorrt":
        ort_providers = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
    device: Provider = "cpu" if provider == "cpu" else "cuda"
    wanted: Precision = ("int8" if device == "cpu" else "fp16") if precision == "auto" else precision  # type: ignore[assignment]
    found = manifest.variant_for(wanted, device)
    if found is None and wanted != "fp32":
        log.warning("bundle %s has no %s variant; using fp32", manifest.name, wanted)
        found = manifest.variant_for("fp32", device)
    if found is None:
        raise ValueError(f"bundle {manifest.name!r} has no {wanted} or fp32 variant")
    key, variant = found
    return RuntimeChoice(variant.file, key, variant.precision, device, ort_providers)


_cpu_arena_registered = False


def _register_cpu_arena() -> None:
    """Register one process-wide CPU arena with extend strategy kSameAsRequested (once)."""
    global _cpu_arena_registered
    if _cpu_arena_registered:
        return
    import onnxruntime as ort

    mem_info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    # max_mem=0 (no cap), extend strategy 1 = kSameAsRequested, defaults for the rest.
    ort.create_and_register_allocator(mem_info, ort.OrtArenaCfg(0, 1, -1, -1))
    _cpu_arena_registered = True


class OrtRuntime:
    """One ONNX Runtime session, tuned for a CPU shared with the web server (references.md)."""

    def __init__(self, path: Path, choice: RuntimeChoice, intra_op_threads: int) -> None:
        import onnxruntime as ort

        opts = session_options(intra_op_threads)
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        provider_options: list[dict[str, str]] = []
        for name in choice.ort_providers:
            # Every batch has a new shape; the default arena grows without bound on that.
            provider_options.append(
                {"arena_extend_strategy": "kSameAsRequested"} if name == "CUDAExecutionProvider" else {}
            )
        if choice.ort_providers[0] == "CPUExecutionProvider":
            _register_cpu_arena()
            # The shared CPU arena grows by what each shape asks, not by doubling.
            opts.add_session_config_entry("session.use_env_allocators", "1")
        self.session = ort.InferenceSession(
            str(path),
            sess_options=opts,
            providers=list(choice.ort_providers),
            provider_options=provider_options,
            disabled_optimizers=disabled_optimizers(choice.ort_providers),
        )
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self.output_names = tuple(o.name for o in self.session.get_outputs())
        self.choice = choice
        self.threads = intra_op_threads
        self._runs = 0

    def run(self, inputs: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        names = list(outputs) if outputs else list(self.output_names)
        feed = {name: inputs[name] for name in self.input_names}
        values = self.session.run(names, feed)
        self._runs += 1
        return dict(zip(names, values, strict=True))

    def health(self) -> dict[str, object]:
        return {
            "providers": self.session.get_providers(),
            "threads": self.threads,
            "runs": self._runs,
        }


class FakeRuntime:
    """Deterministic stand-in for tests: outputs are fixed functions of the ids and the mask.

    Each row's output depends only on that row's unpadded tokens, like a real encoder, so batching
    invariance can be asserted exactly. `fail` makes every run raise it.
    """

    def __init__(
        self, task: str, hidden_size: int = 8, num_labels: int = 2, with_token_types: bool = True
    ) -> None:
        self.task = task
        self.hidden_size = hidden_size
        self.num_labels = num_labels
        names = ["input_ids", "attention_mask"] + (["token_type_ids"] if with_token_types else [])
        self.input_names = tuple(names)
        self.fail: BaseException | None = None
        self.batches: list[tuple[int, int]] = []  # (rows, padded length) of every run

    def _token_states(self, ids: np.ndarray, width: int) -> np.ndarray:
        # [batch, seq, width]: a smooth, id-determined feature per token.
        k = np.arange(1, width + 1, dtype=np.float32)
        return np.sin(ids[..., None].astype(np.float32) * 0.37 * k + k)

    def run(self, inputs: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        if self.fail is not None:
            raise self.fail
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        self.batches.append(ids.shape)
        m = mask[..., None].astype(np.float32)
        if self.task == "embed":
            tokens = self._token_states(ids, self.hidden_size) * m
            pooled = tokens.sum(1) / np.maximum(m.sum(1), 1.0)
            pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
            result = {"token_embeddings": tokens, "sentence_embedding": pooled}
        elif self.task == "classify":
            tokens = self._token_states(ids, self.num_labels) * m
            result = {"logits": 3.0 * tokens.sum(1) / np.maximum(m.sum(1), 1.0)}
        elif self.task == "ner":
            result = {"logits": 3.0 * self._token_states(ids, self.num_labels)}
        else:
            states = self._token_states(ids, 2)
            result = {"start_logits": 4.0 * states[..., 0], "end_logits": 4.0 * states[..., 1]}
        return {k: v for k, v in result.items() if not outputs or k in outputs}

    def health(self) -> dict[str, object]:
        return {"fake": True, "runs": len(self.batches)}
