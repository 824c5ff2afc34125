"""The in-process ceiling: the bundle's own ONNX session fed pre-tokenized, length-sorted batches.

This is the most a server could get out of the model on this machine: no HTTP, no JSON, no
queueing, tokenization done beforehand, every batch full and sorted by length so padding is
minimal. It loads the same variant with the same session options as the service
(`service.runtime.choose_runtime` + `OrtRuntime`), so the ratio service/ceiling measures the
serving overhead and nothing else.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
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
    texts_per_s: float
    tokens_per_s: float
    variant: str
    threads: int
    runs: list[float]


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


def measure_ceiling(
    bundle_dir: Path, texts: list[str], batch_size: int = 32, repeats: int = 3, threads: int | None = None
) -> Ceiling:
    """Texts/s of the bundle's CPU default variant over `texts` (median of `repeats` passes)."""
    from tokenizers import Tokenizer

    from service.runtime import OrtRuntime, choose_runtime

    manifest = load_manifest(bundle_dir)
    choice = choose_runtime(manifest, "auto", "auto")
    threads = threads or len(os.sched_getaffinity(0))
    runtime = OrtRuntime(Path(bundle_dir) / choice.file, choice, threads)
    tokenizer = Tokenizer.from_file(str(Path(bundle_dir) / TOKENIZER_NAME))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=manifest.max_length)
    ids = [e.ids for e in tokenizer.encode_batch(texts)]
    pad_id = next(
        (tokenizer.token_to_id(t) for t in ("[PAD]", "<pad>") if tokenizer.token_to_id(t) is not None), 0
    )
    batches = padded_batches(ids, batch_size, pad_id, "token_type_ids" in manifest.inputs)
    fetch = _FETCH[manifest.task]
    runtime.run(batches[-1], fetch)  # warm-up: the longest shape allocates the arena
    runs = []
    for _ in range(repeats):
        elapsed = 0.0
        for batch in batches:
            t0 = time.perf_counter()
            runtime.run(batch, fetch)
            elapsed += time.perf_counter() - t0
        runs.append(elapsed)
    best = statistics.median(runs)
    tokens = sum(len(i) for i in ids)
    return Ceiling(len(texts) / best, tokens / best, choice.variant, threads, [round(r, 3) for r in runs])
