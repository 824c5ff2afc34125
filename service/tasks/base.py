"""What every task shares: the item a request contributes, padding a batch, running a request."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from service.batcher import Timing
from service.tokenization import Direction, Encoded, Text

if TYPE_CHECKING:
    from service.registry import LoadedModel


@dataclass(slots=True)
class Seq:
    """One sequence for the model: token ids, token types and a per-item option for the task."""

    ids: list[int]
    type_ids: list[int]
    option: Any = None


class TaskHandler(Protocol):
    task: str
    outputs: tuple[str, ...]

    def infer(self, model: LoadedModel, items: list[Seq]) -> list[Any]:
        """Run one batch on the inference thread; one result per item, in order."""
        ...


def pad_batch(items: list[Seq], input_names: tuple[str, ...], pad_id: int) -> dict[str, np.ndarray]:
    """Right-padded int64 arrays (the fused attention reads the mask as a mask index)."""
    rows, width = len(items), max(len(s.ids) for s in items)
    ids = np.full((rows, width), pad_id, dtype=np.int64)
    mask = np.zeros((rows, width), dtype=np.int64)
    types = np.zeros((rows, width), dtype=np.int64)
    for i, s in enumerate(items):
        n = len(s.ids)
        ids[i, :n] = s.ids
        mask[i, :n] = 1
        types[i, :n] = s.type_ids
    arrays = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    return {name: arrays[name] for name in input_names}


@dataclass(slots=True)
class Served:
    """The raw per-item results of one request, with what usage and headers need."""

    results: list[Any]
    encoded: Encoded
    timing: Timing
    tokenize_s: float

    @property
    def usage(self) -> dict[str, int]:
        return {"tokens": self.encoded.tokens, "truncated": self.encoded.truncated_count}


async def serve_texts(
    model: LoadedModel,
    texts: list[Text],
    truncate: bool = True,
    direction: Direction = "right",
    option: Any = None,
    param: str = "inputs",
) -> Served:
    """Tokenize a request's texts, queue one item per text, await their results."""
    t0 = time.perf_counter()
    try:
        encoded = await model.tokenizer.encode_async(texts, truncate, direction, param)
    except Exception as exc:
        model.metrics.on_rejected(getattr(exc, "reason", "invalid"))
        raise
    tokenize_s = time.perf_counter() - t0
    model.metrics.tokenize.observe(tokenize_s)
    items = [Seq(e.ids, e.type_ids, option) for e in encoded.encodings]
    results, timing = await model.batcher.submit_many(items, encoded.lengths, model.timeout_s)
    model.metrics.served(len(items), encoded.tokens, encoded.truncated_count)
    return Served(results, encoded, timing, tokenize_s)
