"""Parity gates: ONNX variants against the torch model on inputs unlike the export dummy."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from export.checkpoint import ExportError
from export.gate_data import Batch

Outputs = dict[str, np.ndarray]
RunFn = Callable[[dict[str, np.ndarray]], Outputs]

# The gates of issue 3. Callers may relax them explicitly (tiny random test models).
DEFAULT_THRESHOLDS: dict[str, float] = {
    "fp32_max_abs_diff": 1e-4,
    "embed_cosine_mean": 0.99,
    "embed_cosine_min": 0.95,
    "classify_agreement": 0.99,
    "ner_agreement": 0.98,
    "qa_agreement": 0.95,
    "fp16_cosine_mean": 0.999,
}
MAX_ANSWER_TOKENS = 30


class GateError(ExportError):
    """A variant failed a parity gate; the bundle is not written."""


def session(path: Path, threads: int = 2, providers: list[str] | None = None):
    """An ORT session configured as the service runs it: fixed threads, sequential, no spinning."""
    import onnxruntime as ort

    from service.ort_options import disabled_optimizers, session_options

    providers = providers or ["CPUExecutionProvider"]
    options = session_options(threads)
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=providers,
                                disabled_optimizers=disabled_optimizers(providers))


def session_runner(sess) -> RunFn:
    names = [o.name for o in sess.get_outputs()]
    wanted = {i.name for i in sess.get_inputs()}

    def run(feeds: dict[str, np.ndarray]) -> Outputs:
        values = sess.run(names, {k: v for k, v in feeds.items() if k in wanted})
        return dict(zip(names, values, strict=True))

    return run


def run_all(run: RunFn, batches: list[Batch]) -> list[Outputs]:
    return [run(b.feeds) for b in batches]


def fp32_gate(reference: list[Outputs], candidate: list[Outputs], thresholds: Mapping[str, float]) -> dict:
    """Max abs difference per output over all batches; every output must be within the limit."""
    figures: dict[str, float] = {}
    for ref, cand in zip(reference, candidate, strict=True):
        for name, value in ref.items():
            if cand[name].shape != value.shape:
                raise GateError(f"fp32 gate: output {name} has shape {cand[name].shape}, torch {value.shape}")
            diff = float(np.max(np.abs(cand[name].astype(np.float64) - value))) if value.size else 0.0
            figures[f"max_abs_diff.{name}"] = max(figures.get(f"max_abs_diff.{name}", 0.0), diff)
    worst = max(figures.values())
    figures["max_abs_diff"] = worst
    limit = thresholds["fp32_max_abs_diff"]
    if not worst <= limit:
        raise GateError(f"fp32 gate failed: max abs diff {worst:.3g} > {limit:g} ({figures})")
    return figures


def _row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(a.shape[0], -1).astype(np.float64)
    b = b.reshape(b.shape[0], -1).astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(1) / np.maximum(norms, 1e-12)


def _best_spans(start: np.ndarray, end: np.ndarray, batch: Batch) -> list[tuple[int, int]]:
    """Best (start, end) over context tokens by summed logits, answers up to 30 tokens (SQuAD eval)."""
    spans = []
    for row in range(start.shape[0]):
        context = np.array([s == 1 for s in batch.sequence_ids[row]] +
                           [False] * (start.shape[1] - len(batch.sequence_ids[row])))
        if not context.any():
            spans.append((0, 0))
            continue
        s_logit = np.where(context, start[row], -np.inf)
        e_logit = np.where(context, end[row], -np.inf)
        scores = s_logit[:, None] + e_logit[None, :]
        n = scores.shape[0]
        band = np.triu(np.ones((n, n), dtype=bool)) & ~np.triu(np.ones((n, n), dtype=bool), MAX_ANSWER_TOKENS)
        scores = np.where(band, scores, -np.inf)
        best = int(np.argmax(scores))
        spans.append((best // n, best % n))
    return spans


def task_agreement(task: str, problem_type: str | None, batches: list[Batch],
                   reference: list[Outputs], candidate: list[Outputs]) -> dict[str, float]:
    """The task-level agreement figures of a lossy variant against torch fp32."""
    if task == "embed":
        cos = np.concatenate([_row_cosines(r["sentence_embedding"], c["sentence_embedding"])
                              for r, c in zip(reference, candidate, strict=True)])
        return {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()), "examples": float(cos.size)}
    if task == "classify":
        same: list[np.ndarray] = []
        for r, c in zip(reference, candidate, strict=True):
            ref, cand = r["logits"], c["logits"]
            if problem_type == "multi_label":
                same.append(((ref > 0) == (cand > 0)).all(axis=1))
            elif problem_type == "regression" or ref.shape[1] == 1:
                # No argmax for one output: agree when within 1% of the reference's spread.
                scale = max(float(np.ptp(ref)), 1e-6)
                same.append((np.abs(ref - cand) <= 0.01 * scale).all(axis=1))
            else:
                same.append(ref.argmax(1) == cand.argmax(1))
        agree = np.concatenate(same)
        return {"agreement": float(agree.mean()), "examples": float(agree.size)}
    if task == "ner":
        hits = total = 0
        for b, r, c in zip(batches, reference, candidate, strict=True):
            mask = b.feeds["attention_mask"].astype(bool)
            hits += int(((r["logits"].argmax(-1) == c["logits"].argmax(-1)) & mask).sum())
            total += int(mask.sum())
        return {"agreement": hits / max(total, 1), "tokens": float(total)}
    spans_same = []
    for b, r, c in zip(batches, reference, candidate, strict=True):
        ref_spans = _best_spans(r["start_logits"], r["end_logits"], b)
        cand_spans = _best_spans(c["start_logits"], c["end_logits"], b)
        spans_same += [x == y for x, y in zip(ref_spans, cand_spans, strict=True)]
    return {"agreement": float(np.mean(spans_same)), "examples": float(len(spans_same))}


def int8_gate(task: str, figures: dict[str, float], thresholds: Mapping[str, float], label: str) -> None:
    """Raise GateError naming the gate and figure when an int8 variant is not good enough."""
    if task == "embed":
        checks = [("cosine_mean", "embed_cosine_mean"), ("cosine_min", "embed_cosine_min")]
    else:
        checks = [("agreement", f"{task}_agreement")]
    for figure, key in checks:
        if not figures[figure] >= thresholds[key]:
            raise GateError(
                f"{label} gate failed: {figure} {figures[figure]:.4f} < {thresholds[key]} "
                f"({int(figures.get('examples', figures.get('tokens', 0)))} examples vs torch fp32)"
            )


def fp16_check(reference: list[Outputs], candidate: list[Outputs]) -> dict[str, float]:
    """Mean and min per-row cosine of every output, fp16 against torch fp32."""
    cos = np.concatenate([_row_cosines(r[name], c[name])
                          for r, c in zip(reference, candidate, strict=True) for name in r])
    return {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min())}
