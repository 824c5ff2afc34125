"""Classification of texts and text pairs: logits → softmax / sigmoid / none, top_k, threshold."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from service.errors import InvalidInput
from service.tasks.base import Seq, Served, pad_batch, serve_texts
from service.tokenization import Direction, Text

if TYPE_CHECKING:
    from service.registry import LoadedModel

Function = Literal["auto", "softmax", "sigmoid", "none"]


@dataclass(frozen=True)
class ClassifyQuery:
    texts: list[Text]
    top_k: int | None = None  # None: every label
    function: Function = "auto"
    threshold: float | None = None
    truncate: bool = True
    direction: Direction = "right"


class ClassifyHandler:
    task = "classify"
    outputs = ("logits",)

    def infer(self, model: LoadedModel, items: list[Seq]) -> list[np.ndarray]:
        inputs = pad_batch(items, model.runtime.input_names, model.tokenizer.pad_id)
        logits = model.runtime.run(inputs, list(self.outputs))["logits"]  # [batch, num_labels]
        return list(logits.astype(np.float32, copy=False))


HANDLER = ClassifyHandler()


def resolve_function(function: Function, problem_type: str | None, num_labels: int) -> str:
    """auto: none for regression, sigmoid for multi-label or a single label, softmax otherwise."""
    if function != "auto":
        return function
    if problem_type == "regression":
        return "none"
    if problem_type == "multi_label" or num_labels == 1:
        return "sigmoid"
    return "softmax"


def apply_function(logits: np.ndarray, function: str) -> np.ndarray:
    if function == "softmax":
        shifted = logits - logits.max(axis=1, keepdims=True)  # stable
        e = np.exp(shifted)
        return e / e.sum(axis=1, keepdims=True)
    if function == "sigmoid":
        return 1.0 / (1.0 + np.exp(-logits))
    return logits


async def classify(model: LoadedModel, query: ClassifyQuery) -> tuple[list[list[dict]], Served]:
    """One list of {label, score} per input, sorted by score, best first."""
    labels = model.manifest.labels or []
    if query.top_k is not None and query.top_k < 1:
        raise InvalidInput("top_k must be at least 1 (or null for every label)", "top_k")
    served = await serve_texts(model, list(query.texts), query.truncate, query.direction)
    logits = np.stack(served.results).astype(np.float64)
    function = resolve_function(query.function, model.manifest.problem_type, len(labels))
    scores = apply_function(logits, function)
    order = np.argsort(-scores, axis=1, kind="stable")
    if query.top_k is not None:
        order = order[:, : query.top_k]
    keep_all = query.threshold is None
    results = []
    for row_scores, row_order in zip(scores.tolist(), order.tolist(), strict=True):
        results.append(
            [
                {"label": labels[j], "score": row_scores[j]}
                for j in row_order
                if keep_all or row_scores[j] >= query.threshold
            ]
        )
    return results, served
