"""Serving NER and QA: texts → overlapping windows → per-token logits → ner.py / qa.py decoding.

The decoding (stitching, aggregation, answer spans) lives in ner.py, qa.py and windows.py; this
module is the serving side they share: one item per window, logits cut to each window's length.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from service.batcher import Timing
from service.errors import InvalidInput
from service.tasks.base import Seq, pad_batch
from service.tasks.ner import Aggregation, decode_entities
from service.tasks.qa import decode_answers
from service.tasks.windows import Window, WindowError, qa_windows, text_windows

if TYPE_CHECKING:
    from service.registry import LoadedModel

# Below this many inputs, windowing inline is cheaper than a hop to a worker thread.
OFFLOAD_MIN_INPUTS = 8


class TokenLogitsHandler:
    """infer(): one padded batch of windows → each window's outputs cut to its own length."""

    def __init__(self, task: str, outputs: tuple[str, ...]) -> None:
        self.task = task
        self.outputs = outputs

    def infer(self, model: LoadedModel, items: list[Seq]) -> list[tuple[np.ndarray, ...]]:
        inputs = pad_batch(items, model.runtime.input_names, model.tokenizer.pad_id)
        out = model.runtime.run(inputs, list(self.outputs))
        arrays = [out[name] for name in self.outputs]  # ner: [batch, seq, labels]; qa: [batch, seq] ×2
        return [tuple(a[i, : len(s.ids)].copy() for a in arrays) for i, s in enumerate(items)]


NER_HANDLER = TokenLogitsHandler("ner", ("logits",))
QA_HANDLER = TokenLogitsHandler("qa", ("start_logits", "end_logits"))


@dataclass(frozen=True)
class NerQuery:
    texts: list[str]
    aggregation: Aggregation = "first"
    ignore_labels: tuple[str, ...] = ("O",)
    threshold: float = 0.0
    stride: int | None = None  # tokens shared by consecutive windows; None: a quarter of a window


@dataclass(frozen=True)
class QaQuery:
    pairs: list[tuple[str, str]]  # (question, context)
    top_k: int = 1
    max_answer_len: int = 30
    doc_stride: int | None = None  # None: min(window // 2, 128) of the window actually used
    max_seq_len: int = 384
    allow_no_answer: bool = False


@dataclass(slots=True)
class SpanServed:
    results: list[list[dict]]
    tokens: int
    timing: Timing

    @property
    def usage(self) -> dict[str, int]:
        return {"tokens": self.tokens, "truncated": 0}  # long inputs are windowed, never cut


def _check_chars(model: LoadedModel, texts: list[str], param: str) -> None:
    limit = model.tokenizer.max_chars
    for i, text in enumerate(texts):
        if len(text) > limit:
            model.metrics.on_rejected("too_long")
            raise InvalidInput(
                f"input has {len(text)} characters, over the limit of {limit}",
                f"{param}.{i}",
                reason="too_long",
            )


async def _windowed(model: LoadedModel, make, count: int) -> list[list[Window]]:
    try:
        if count < OFFLOAD_MIN_INPUTS:
            return make()
        return await asyncio.to_thread(make)
    except WindowError as exc:  # a stride or length the windows cannot honour
        model.metrics.on_rejected("invalid")
        raise InvalidInput(str(exc), param=exc.param) from exc


async def _run_windows(model: LoadedModel, per_input: list[list[Window]]) -> tuple[list, int, Timing]:
    flat = [w for windows in per_input for w in windows]
    items = [Seq(w.input_ids, w.token_type_ids) for w in flat]
    lengths = [len(w) for w in flat]
    results, timing = await model.batcher.submit_many(items, lengths, model.timeout_s)
    model.metrics.served(len(items), sum(lengths), 0)
    grouped, k = [], 0
    for windows in per_input:
        grouped.append(results[k : k + len(windows)])
        k += len(windows)
    return grouped, sum(lengths), timing


async def ner(model: LoadedModel, query: NerQuery) -> SpanServed:
    """Entities per text, with character offsets into the original string."""
    _check_chars(model, query.texts, "inputs")
    max_length = model.manifest.max_length
    room = max_length - model.tokenizer.plain.num_special_tokens_to_add(False)
    stride = query.stride if query.stride is not None else max(0, min(room - 1, max_length // 4))
    if stride >= room:
        raise InvalidInput(f"stride must be below {room} for model {model.name!r}", "stride")
    tok = model.tokenizer.plain
    per_input = await _windowed(
        model, lambda: [text_windows(tok, t, max_length, stride) for t in query.texts], len(query.texts)
    )
    grouped, tokens, timing = await _run_windows(model, per_input)
    labels = model.manifest.labels or []
    results = [
        [
            e.as_dict()
            for e in decode_entities(
                text,
                windows,
                [r[0] for r in outs],
                labels,
                query.aggregation,
                query.ignore_labels,
                query.threshold,
            )
        ]
        for text, windows, outs in zip(query.texts, per_input, grouped, strict=True)
    ]
    return SpanServed(results, tokens, timing)


async def qa(model: LoadedModel, query: QaQuery) -> SpanServed:
    """The top_k answers per (question, context) pair, character offsets into the context."""
    _check_chars(model, [q for q, _ in query.pairs], "question")
    _check_chars(model, [c for _, c in query.pairs], "context")
    max_seq_len = min(query.max_seq_len, model.manifest.max_length)
    # The default overlap follows the window, as HF's pipeline does: a fixed 128 would leave no
    # room for new context in the windows of a 128-token model.
    doc_stride = min(max_seq_len // 2, 128) if query.doc_stride is None else query.doc_stride
    tok = model.tokenizer.plain
    per_input = await _windowed(
        model,
        lambda: [qa_windows(tok, q, c, max_seq_len, doc_stride) for q, c in query.pairs],
        len(query.pairs),
    )
    grouped, tokens, timing = await _run_windows(model, per_input)
    results = [
        [
            a.as_dict()
            for a in decode_answers(
                context,
                windows,
                [r[0] for r in outs],
                [r[1] for r in outs],
                query.top_k,
                query.max_answer_len,
                query.allow_no_answer,
            )
        ]
        for (_, context), windows, outs in zip(query.pairs, per_input, grouped, strict=True)
    ]
    return SpanServed(results, tokens, timing)
