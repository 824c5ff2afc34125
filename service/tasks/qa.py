"""Extractive QA post-processing: start/end logits of context windows → answer spans in the context.

The decoding is the Hugging Face 4.57 question-answering pipeline's (transformers 5 removed it):
per window, softmax of the start and of the end logits over the context tokens plus [CLS]
(question, other specials and padding masked); a span (s, e) scores p_start(s) × p_end(e) for
s ≤ e < s + max_answer_len; spans widen to whole words (`align_to_words`) and token spans that land
on the same characters add up; the no-answer score is [CLS]'s p_start × p_end, the lowest over the
windows. Two of its defects are fixed: a span seen by two overlapping windows is counted once
(the pipeline adds the windows' scores, which can pass 1), and answers are told apart by their
character span, not by lower-cased text (the pipeline merges two places with the same words into
the first one). A third: a word cut at a window's edge widens to the whole word (its extent over
all the windows), where the pipeline can answer with the fragment the window holds. Pure numpy:
no torch here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from service.tasks.windows import Window


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer: `answer == context[start:end]`; the empty answer has start = end = 0."""

    answer: str
    score: float
    start: int
    end: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True, slots=True, eq=False)
class WindowSpans:
    """One window's candidate answers: distinct char spans with their summed scores, and [CLS]'s."""

    starts: np.ndarray  # [k] char start in the context
    ends: np.ndarray  # [k] char end (exclusive)
    scores: np.ndarray  # [k] float64
    null_score: float  # p_start([CLS]) × p_end([CLS]); 0 when the window has no leading special


def _masked_softmax(logits: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Softmax over the kept positions; the others get probability 0 (as HF's -10000 fill does)."""
    x = np.where(keep, np.asarray(logits, dtype=np.float64), -np.inf)
    x = np.exp(x - x[keep].max())
    return x / x.sum()


def word_char_bounds(windows: Sequence[Window]) -> tuple[np.ndarray, np.ndarray]:
    """First and last character of every context word, over all of a context's windows (word ids
    count over the whole context, so a word cut at a window's edge gets its whole extent)."""
    ctx = [w.text_positions for w in windows]
    words = np.concatenate([w.word_ids[c] for w, c in zip(windows, ctx, strict=True)])
    offsets = np.concatenate([w.offsets[c] for w, c in zip(windows, ctx, strict=True)]).reshape(-1, 2)
    real = words >= 0
    words, offsets = words[real], offsets[real]
    n = int(words.max()) + 1 if len(words) else 0
    first = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    last = np.full(n, -1, dtype=np.int64)
    np.minimum.at(first, words, offsets[:, 0])
    np.maximum.at(last, words, offsets[:, 1])
    return first, last


def _char_bounds(
    window: Window, ctx: np.ndarray, word_chars: tuple[np.ndarray, np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray]:
    """For each context token: where an answer starting / ending on it starts / ends, in chars.

    With `word_chars` (from `word_char_bounds`) a token stands for its whole word, so an answer
    never starts or ends inside a word; tokens without a word keep their own offsets. None: the
    tokens' own offsets (no `align_to_words`).
    """
    starts = window.offsets[ctx, 0].copy()
    ends = window.offsets[ctx, 1].copy()
    if word_chars is None:
        return starts, ends
    words = window.word_ids[ctx]
    real = words >= 0
    starts[real] = word_chars[0][words[real]]
    ends[real] = word_chars[1][words[real]]
    return starts, ends


def window_spans(
    window: Window,
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    max_answer_len: int = 30,
    align_to_words: bool = True,
    word_chars: tuple[np.ndarray, np.ndarray] | None = None,
) -> WindowSpans:
    """Score every span of the window's context up to `max_answer_len` tokens (see module doc).

    `word_chars`: the context's word extents over all its windows (`word_char_bounds`); without
    them, a word is as far as this window holds it.
    """
    n = len(window)
    start_logits, end_logits = np.asarray(start_logits)[:n], np.asarray(end_logits)[:n]
    if start_logits.shape != (n,) or end_logits.shape != (n,):
        raise ValueError(f"start/end logits of shapes {start_logits.shape}, {end_logits.shape} "
                         f"do not cover a window of {n} tokens")
    ctx = window.text_positions
    has_cls = bool(n and window.special_mask[0])
    keep = window.text_mask.copy()
    if has_cls:
        # [CLS] stays in the softmax even when no-answer is not allowed: that is the pipeline's
        # distribution, and models trained on SQuAD 2 put their no-answer mass there.
        keep[0] = True
    if not keep.any():
        none = np.zeros(0, dtype=np.int64)
        return WindowSpans(none, none, np.zeros(0), 0.0)
    p_start, p_end = _masked_softmax(start_logits, keep), _masked_softmax(end_logits, keep)
    null = float(p_start[0] * p_end[0]) if has_cls else 0.0

    # Spans (i, j) over context tokens, i ≤ j < i + max_answer_len: m × max_answer_len candidates,
    # never the m × m outer product.
    m = len(ctx)
    i = np.repeat(np.arange(m), max_answer_len)
    j = i + np.tile(np.arange(max_answer_len), m)
    inside = j < m
    i, j = i[inside], j[inside]
    scores = p_start[ctx][i] * p_end[ctx][j]
    if align_to_words and word_chars is None:
        word_chars = word_char_bounds([window])
    char_start, char_end = _char_bounds(window, ctx, word_chars if align_to_words else None)
    # Token spans that cover the same characters are one answer: add their probabilities. The
    # char span is keyed densely (rank of its start × rank of its end, at most m² cells) and
    # summed with bincount: no sort over the m × max_answer_len candidates, which was most of
    # the decoding time. Ascending key = ascending (start, end) = first appearance in token order,
    # which fixes the order among equal scores.
    starts_u, start_rank = np.unique(char_start, return_inverse=True)
    ends_u, end_rank = np.unique(char_end, return_inverse=True)
    key = start_rank[i] * len(ends_u) + end_rank[j]
    cells = len(starts_u) * len(ends_u)
    summed = np.bincount(key, weights=scores, minlength=cells)
    seen = np.bincount(key, minlength=cells) > 0
    cell = np.flatnonzero(seen)
    return WindowSpans(starts_u[cell // len(ends_u)], ends_u[cell % len(ends_u)], summed[cell], null)


def _best(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the first `k` entries in (score descending, position) order, without a full sort."""
    if len(scores) > k:
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        candidates = np.flatnonzero(scores >= kth)  # ties at the cut kept, in position order
    else:
        candidates = np.arange(len(scores))
    return candidates[np.argsort(-scores[candidates], kind="stable")][:k]


def decode_answers(
    context: str,
    windows: Sequence[Window],
    start_logits: Sequence[np.ndarray],
    end_logits: Sequence[np.ndarray],
    top_k: int = 1,
    max_answer_len: int = 30,
    allow_no_answer: bool = False,
    align_to_words: bool = True,
) -> list[Answer]:
    """The `top_k` best answers in `context` over all its windows, best first.

    A span found by several windows keeps its best score. With `allow_no_answer`, the empty answer
    (score: the lowest [CLS] score over the windows) takes its place in the ranking. A context with
    no token to answer from gives the empty answer alone.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, not {top_k}")
    if max_answer_len < 1:
        raise ValueError(f"max_answer_len must be at least 1, not {max_answer_len}")
    if not windows or not len(windows) == len(start_logits) == len(end_logits):
        raise ValueError(f"got {len(start_logits)}/{len(end_logits)} logits for {len(windows)} windows")
    word_chars = word_char_bounds(windows) if align_to_words else None
    per_window = [
        window_spans(w, s, e, max_answer_len, align_to_words, word_chars)
        for w, s, e in zip(windows, start_logits, end_logits, strict=True)
    ]
    null = min(ws.null_score for ws in per_window)
    # A span in the final top_k is among its best window's top_k (whatever beats it there beats it
    # overall), so each window's first top_k suffice.
    keep = [np.sort(_best(ws.scores, top_k)) for ws in per_window]  # position order, for ties
    starts = np.concatenate([ws.starts[k] for ws, k in zip(per_window, keep, strict=True)])
    ends = np.concatenate([ws.ends[k] for ws, k in zip(per_window, keep, strict=True)])
    scores = np.concatenate([ws.scores[k] for ws, k in zip(per_window, keep, strict=True)])
    # Best first; among equal scores the earlier window, then the earlier span (a stable sort).
    ranked = np.argsort(-scores, kind="stable")
    # The same characters from several windows: keep the first, i.e. best-scored, occurrence.
    span_key = starts[ranked] * (len(context) + 1) + ends[ranked]
    _, first = np.unique(span_key, return_index=True)
    best = ranked[np.sort(first)][:top_k]
    answers = [
        Answer(context[int(starts[k]) : int(ends[k])], float(scores[k]), int(starts[k]), int(ends[k]))
        for k in best
    ]
    if allow_no_answer or not answers:
        answers.append(Answer("", null, 0, 0))
        # Stable: on a tie the span stays ahead of the empty answer, as in the pipeline.
        answers.sort(key=lambda a: -a.score)
    return answers[:top_k]
