"""Embeddings: pool token states over the attention mask, then cut dimensions and normalize."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from service.errors import InvalidInput
from service.tasks.base import Seq, Served, pad_batch, serve_texts
from service.tokenization import Direction

if TYPE_CHECKING:
    from service.registry import LoadedModel


@dataclass(frozen=True)
class EmbedQuery:
    texts: list[str]
    normalize: bool | None = None  # None: the bundle's (a dot-product model ships unnormalized)
    pooling: str | None = None  # None: the bundle's pooling
    truncate: bool = True
    direction: Direction = "right"
    dimensions: int | None = None


class EmbedHandler:
    task = "embed"
    outputs = ("token_embeddings",)

    def infer(self, model: LoadedModel, items: list[Seq]) -> list[np.ndarray]:
        inputs = pad_batch(items, model.runtime.input_names, model.tokenizer.pad_id)
        states = model.runtime.run(inputs, list(self.outputs))["token_embeddings"]  # [batch, seq, hidden]
        mask = inputs["attention_mask"].astype(states.dtype)[..., None]  # [batch, seq, 1]
        # Pooling here, over the mask, so padding can never leak into a vector and any pooling
        # mode works whatever the graph's own sentence_embedding was built with.
        pooled = (states * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)  # mean: [batch, hidden]
        modes = [s.option for s in items]
        for i, mode in enumerate(modes):
            if mode == "cls":
                pooled[i] = states[i, 0]
            elif mode == "max":
                n = len(items[i].ids)
                pooled[i] = states[i, :n].max(axis=0)
        return list(pooled.astype(np.float32, copy=False))


HANDLER = EmbedHandler()


async def embed(model: LoadedModel, query: EmbedQuery) -> tuple[np.ndarray, Served]:
    """Vectors [n, dims] (float32) for the query's texts."""
    hidden = model.manifest.hidden_size
    if query.dimensions is not None and not 0 < query.dimensions <= hidden:
        raise InvalidInput(
            f"dimensions must be between 1 and {hidden} for model {model.name!r}", "dimensions"
        )
    pooling = query.pooling or model.manifest.pooling or "mean"
    served = await serve_texts(model, list(query.texts), query.truncate, query.direction, option=pooling)
    vectors = np.stack(served.results)
    if query.dimensions is not None:
        vectors = vectors[:, : query.dimensions]  # cut first, then normalize (Matryoshka order)
    normalize = model.manifest.normalize if query.normalize is None else query.normalize
    if normalize:
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(vectors, dtype=np.float32), served
