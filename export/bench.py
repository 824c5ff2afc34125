"""Throughput of a bundle's graphs against torch, and the choice of each precision's CPU default."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from service.manifest import Manifest, Variant, load_manifest, write_manifest

FULL_SHAPES: tuple[tuple[int, int], ...] = ((1, 16), (8, 64), (32, 32), (32, 128))
# ORT threads the service gives one batch by default (it runs one batch per core side by side):
# the CPU default graph is chosen at this setting.
SERVICE_THREADS_PER_BATCH = 1
QUICK_SHAPES: tuple[tuple[int, int], ...] = ((1, 16), (8, 64))

# Engine name -> variant key in the manifest (torch has none).
ENGINES = {"ort fp32 plain": "fp32", "ort fp32 fused": "fp32-fused",
           "ort int8 plain": "int8", "ort int8 fused": "int8-fused"}


def synthetic_feeds(inputs: Sequence[str], vocab_size: int, batch: int, seq: int,
                    seed: int = 0) -> dict[str, np.ndarray]:
    """Random in-vocabulary ids with all-ones masks: every position is a real token."""
    rng = np.random.default_rng(seed)
    low = 100 if vocab_size > 200 else 5  # past the special tokens of BERT-style vocabularies
    feeds = {"input_ids": rng.integers(low, vocab_size, (batch, seq), dtype=np.int64),
             "attention_mask": np.ones((batch, seq), dtype=np.int64)}
    if "token_type_ids" in inputs:
        feeds["token_type_ids"] = np.zeros((batch, seq), dtype=np.int64)
    return feeds


def tokens_per_second(run: Callable[[dict[str, np.ndarray]], object], feeds: dict[str, np.ndarray],
                      min_seconds: float, min_repeats: int = 3) -> float:
    """Median tokens/s over repeats of one call after a warm-up call."""
    run(feeds)  # warm-up: first-shape allocations and kernel selection
    tokens = feeds["input_ids"].size
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < min_repeats or time.perf_counter() - started < min_seconds:
        t0 = time.perf_counter()
        run(feeds)
        times.append(time.perf_counter() - t0)
    return tokens / statistics.median(times)


def _torch_runner(manifest: Manifest, threads: int):
    """The torch fp32 model the bundle came from, or None when its checkpoint is not here."""
    checkpoint = manifest.source.get("checkpoint")
    if not checkpoint or not Path(str(checkpoint)).is_dir():
        return None
    import torch

    from export.checkpoint import read_checkpoint
    from export.onnx_export import load_torch_model

    torch.set_num_threads(threads)
    info = read_checkpoint(Path(str(checkpoint)), manifest.task, pooling=manifest.pooling,
                           normalize=manifest.normalize, max_length=manifest.max_length)
    model = load_torch_model(info)

    def run(feeds: dict[str, np.ndarray]) -> object:
        with torch.inference_mode():
            return model(*[torch.from_numpy(feeds[n]) for n in info.input_names])

    return run


def bench_bundle(bundle_dir: Path, shapes: Sequence[tuple[int, int]] = FULL_SHAPES, threads: int = 2,
                 seconds: float = 2.0, with_torch: bool = True,
                 rounds: int = 5) -> dict[str, dict[str, float]]:
    """tokens/s per engine per shape ("8x64"), all measured in this one run.

    The engines take turns within each of `rounds` rounds and the median round counts, so a burst
    of load from a neighbour hits every engine alike instead of skewing one ratio.
    """
    from tokenizers import Tokenizer

    from export.parity import session, session_runner

    bundle_dir = Path(bundle_dir)
    manifest = load_manifest(bundle_dir)
    vocab = Tokenizer.from_file(str(bundle_dir / "tokenizer.json")).get_vocab_size()
    runners: dict[str, Callable] = {}
    if with_torch:
        torch_run = _torch_runner(manifest, threads)
        if torch_run is not None:
            runners["torch fp32"] = torch_run
    for engine, key in ENGINES.items():
        if key in manifest.variants:
            runners[engine] = session_runner(session(bundle_dir / manifest.variants[key].file, threads))
    results: dict[str, dict[str, float]] = {engine: {} for engine in runners}
    for batch, seq in shapes:
        feeds = synthetic_feeds(manifest.inputs, vocab, batch, min(seq, manifest.max_length))
        samples: dict[str, list[float]] = {engine: [] for engine in runners}
        for _ in range(rounds):
            for engine, run in runners.items():
                samples[engine].append(tokens_per_second(run, feeds, seconds / rounds, min_repeats=2))
        for engine, values in samples.items():
            results[engine][f"{batch}x{seq}"] = statistics.median(values)
    return results


def _geomean(values: Sequence[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def choose_cpu_defaults(manifest: Manifest, results: dict[str, dict[str, float]]) -> Manifest:
    """Per precision, the graph with the higher geometric-mean tokens/s over the measured shapes
    becomes the CPU default; the fused fp32/fp16 graphs stay the CUDA defaults."""
    variants = dict(manifest.variants)
    for precision in ("fp32", "int8"):
        plain, fused = f"ort {precision} plain", f"ort {precision} fused"
        if plain not in results or fused not in results:
            continue
        shapes = list(results[plain])
        p_mean = _geomean([results[plain][s] for s in shapes])
        f_mean = _geomean([results[fused][s] for s in shapes])
        winner = "plain" if p_mean >= f_mean else "fused"
        per_shape = ", ".join(f"{s}: plain {results[plain][s]:.0f} / fused {results[fused][s]:.0f}"
                              for s in shapes)
        why = (f"the {winner} graph is faster on CPU: geometric mean plain {p_mean:.0f} vs fused "
               f"{f_mean:.0f} tokens/s ({per_shape})")
        for key, graph in ((precision, "plain"), (f"{precision}-fused", "fused")):
            v = variants[key]
            providers = [p for p in v.default_for if p != "cpu"] + (["cpu"] if graph == winner else [])
            note = "CPU default: " if graph == winner else "not the CPU default: "
            if "cuda" in providers:
                note = "CUDA default (fused attention is the GPU path); " + note
            details = {**v.details, "bench_tokens_per_s": {s: round(results[f"ort {precision} {graph}"][s])
                                                           for s in shapes}}
            variants[key] = Variant(**{**v.model_dump(), "default_for": providers, "why": note + why,
                                       "details": details})
    return manifest.model_copy(update={"variants": variants})


def rewrite_defaults(bundle_dir: Path, results: dict[str, dict[str, float]]) -> Manifest:
    """Write the CPU defaults measured by `bench-model` into the bundle's manifest."""
    manifest = choose_cpu_defaults(load_manifest(bundle_dir), results)
    write_manifest(bundle_dir, Manifest.model_validate(manifest.model_dump()))
    return manifest


def format_table(results: dict[str, dict[str, float]]) -> str:
    """tokens/s per shape and engine, with ratios to ORT fp32 plain and to torch."""
    engines = list(results)
    shapes = list(next(iter(results.values()))) if results else []
    lines = ["shape    " + "".join(f"{e:>17}" for e in engines)]
    for shape in shapes:
        lines.append(f"{shape:<9}" + "".join(f"{results[e][shape]:>17,.0f}" for e in engines))
    for base in ("torch fp32", "ort fp32 plain"):
        if base not in results:
            continue
        lines.append(f"ratios to {base}:")
        for shape in shapes:
            lines.append(f"{shape:<9}" + "".join(f"{results[e][shape] / results[base][shape]:>16.2f}x"
                                                 for e in engines))
    return "\n".join(lines)
