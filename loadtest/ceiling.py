"""The in-process ceiling: the bundle's own ONNX session fed pre-tokenized, length-sorted batches.

This is the most a server could get out of the model on this machine: no HTTP, no JSON, no
queueing, tokenization done beforehand, every batch full and sorted by length so padding is
minimal. It loads the same variant with the same session options as the service
(`service.runtime.choose_runtime` + `OrtRuntime`) and tries each way of spreading the cores
(one batch on every thread, or one single-threaded batch per core, as the service runs by
default); the faster one is the ceiling, so the ratio service/ceiling measures the serving
overhead and nothing else.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from service.manifest import TASK_OUTPUTS, TOKENIZER_NAME, load_manifest

# The one output a client of each task needs; fetching token_embeddings too would add a copy
# that no endpoint returns.
_FETCH = {
    "embed": ["sentence_embedding"],
    "classify": ["logits"],
    "ner": ["logits"],
    "qa": list(TASK_OUTPUTS["qa"]),
}


@dataclass(frozen=True)
class Ceiling:
    """The best layout's figures; `layouts` holds every layout tried ("1x2" = 1 batch at a time
    on 2 ORT threads, "2x1" = 2 batches at once on 1 thread each), texts/s."""

    texts_per_s: float
    tokens_per_s: float
    variant: str  # the manifest's variant key ("int8", "fp32-fused", ...)
    threads: int
    runs: list[float]
    lanes: int = 1
    layouts: dict[str, float] = field(default_factory=dict)
    file: str = ""  # the ONNX file timed


def padded_batches(
    ids: list[list[int]], batch_size: int, pad_id: int, with_token_types: bool
) -> list[dict[str, np.ndarray]]:
    """Length-sorted, right-padded int64 batches of at most `batch_size` sequences."""
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    batches = []
    for start in range(0, len(order), batch_size):
        rows = [ids[i] for i in order[start : start + batch_size]]
        width = max(len(r) for r in rows)
        input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for j, row in enumerate(rows):
            input_ids[j, : len(row)] = row
            mask[j, : len(row)] = 1
        batch = {"input_ids": input_ids, "attention_mask": mask}
        if with_token_types:
            batch["token_type_ids"] = np.zeros_like(input_ids)
        batches.append(batch)
    return batches


def layouts_for(cores: int) -> list[tuple[int, int]]:
    """(ORT threads per batch, batches at once) pairs that use every core: all threads on one
    batch, and one thread on each of `cores` batches (what the service runs by default)."""
    return sorted({(cores, 1), (1, cores)}, reverse=True)


def measure_ceiling(
    bundle_dir: Path, texts: list[str], batch_size: int = 32, repeats: int = 3, threads: int | None = None
) -> Ceiling:
    """Texts/s of the bundle's CPU default variant over `texts` (median of `repeats` passes).

    With `threads` given, that many ORT threads on one batch at a time; otherwise the faster of
    the layouts that use every core (`layouts_for`), so the ceiling is the most the session can
    do here, however the service spreads its batches.
    """
    if not texts:
        raise ValueError("the ceiling needs at least one text")
    from tokenizers import Tokenizer

    from service.runtime import OrtRuntime, choose_runtime
    from service.settings import cpu_count, load_settings

    # The variant `berth serve` would load under this environment (BERTH_PROVIDER, BERTH_PRECISION):
    # the served process inherits it, so a fixed "auto" could time another file than it serves.
    settings = load_settings()
    manifest = load_manifest(bundle_dir)
    choice = choose_runtime(manifest, settings.provider, settings.precision)
    tokenizer = Tokenizer.from_file(str(Path(bundle_dir) / TOKENIZER_NAME))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=manifest.max_length)
    ids = [e.ids for e in tokenizer.encode_batch(texts)]
    pad_id = next(
        (tokenizer.token_to_id(t) for t in ("[PAD]", "<pad>") if tokenizer.token_to_id(t) is not None), 0
    )
    batches = padded_batches(ids, batch_size, pad_id, "token_type_ids" in manifest.inputs)
    fetch = _FETCH[manifest.task]
    tokens = sum(len(i) for i in ids)
    # The cores the service plans with (affinity, lowered to a container's CPU quota).
    plans = [(threads, 1)] if threads else layouts_for(cpu_count())
    results: list[Ceiling] = []
    for plan_threads, lanes in plans:
        runtime = OrtRuntime(Path(bundle_dir) / choice.file, choice, plan_threads)
        runs = _timed_passes(runtime, batches, fetch, lanes, repeats)
        best = statistics.median(runs)
        results.append(Ceiling(len(texts) / best, tokens / best, choice.variant, plan_threads,
                               [round(r, 3) for r in runs], lanes))
    layouts = {f"{c.lanes}x{c.threads}": round(c.texts_per_s, 1) for c in results}
    top = max(results, key=lambda c: c.texts_per_s)
    return Ceiling(top.texts_per_s, top.tokens_per_s, top.variant, top.threads, top.runs, top.lanes, layouts,
                   choice.file)


def _timed_passes(runtime, batches: list[dict], fetch: list[str], lanes: int, repeats: int) -> list[float]:
    """Seconds per pass over `batches`: only session.run is timed (one lane), or the wall time
    of `lanes` threads taking the batches in turn (several)."""
    runtime.run(batches[-1], fetch)  # warm-up: the longest shape allocates the arena
    runs = []
    for _ in range(repeats):
        if lanes == 1:
            elapsed = 0.0
            for batch in batches:
                t0 = time.perf_counter()
                runtime.run(batch, fetch)
                elapsed += time.perf_counter() - t0
        else:
            with ThreadPoolExecutor(max_workers=lanes) as pool:
                t0 = time.perf_counter()
                list(pool.map(lambda b: runtime.run(b, fetch), batches))
                elapsed = time.perf_counter() - t0
        runs.append(elapsed)
    return runs
