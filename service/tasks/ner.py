"""NER post-processing: token logits of overlapping windows → entities with exact character spans.

Semantics are the Hugging Face token-classification pipeline's (aggregation none / simple / first /
average / max, `ignore_labels`), with its defects fixed: entity text is sliced from the original
string (never decoded from word pieces), words come from the tokenizer's word ids (not a
piece-length heuristic), scores are plain floats, and long texts are stitched per token before
aggregation, so an entity in an overlap is found once and whole. Pure numpy: no torch here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal, get_args

import numpy as np

from service.tasks.windows import Window

Aggregation = Literal["none", "simple", "first", "average", "max"]
AGGREGATIONS: tuple[str, ...] = get_args(Aggregation)


@dataclass(frozen=True, slots=True)
class Entity:
    """One entity (or one piece for aggregation `none`): `text == input[start:end]`."""

    label: str
    score: float
    text: str
    start: int
    end: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True, slots=True, eq=False)
class TokenScores:
    """Per-token label probabilities over a whole text (specials dropped, windows stitched)."""

    probs: np.ndarray  # [n_tokens, num_labels], float64
    offsets: np.ndarray  # [n_tokens, 2], char offsets into the original text
    word_ids: np.ndarray  # [n_tokens], -1 where the tokenizer gives no word


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax in float64."""
    x = np.asarray(logits, dtype=np.float64)
    x = np.exp(x - x.max(axis=axis, keepdims=True))
    return x / x.sum(axis=axis, keepdims=True)


def stitch(windows: Sequence[Window], logits: Sequence[np.ndarray]) -> TokenScores:
    """One probability row per token of the text, each from the window that sees it best.

    A token in an overlap is taken from the window where it is furthest from a window edge (an
    edge that is also the text's own start or end does not count: no context is lost there), so
    every token keeps as much context on both sides as any window gives it. Ties go to the earlier
    window. `logits[k]` is window k's [seq, num_labels] (rows past the window's length, i.e.
    padding, are ignored).
    """
    if len(windows) != len(logits) or not windows:
        raise ValueError(f"got {len(logits)} logits arrays for {len(windows)} windows")
    last = windows[-1]
    n = last.text_start + int(last.text_mask.sum())
    num_labels = np.asarray(logits[0]).shape[-1]
    probs = np.zeros((n, num_labels), dtype=np.float64)
    offsets = np.zeros((n, 2), dtype=np.int64)
    word_ids = np.full(n, -1, dtype=np.int64)
    best = np.full(n, -1.0)
    for window, window_logits in zip(windows, logits, strict=True):
        window_logits = np.asarray(window_logits)
        if window_logits.ndim != 2 or window_logits.shape[0] < len(window):
            raise ValueError(
                f"logits of shape {window_logits.shape} do not cover a window of {len(window)} tokens"
            )
        if window_logits.shape[1] != num_labels:
            raise ValueError("windows' logits disagree on the number of labels")
        pos = window.text_positions
        m = len(pos)
        if m == 0:
            continue
        g = window.text_start + np.arange(m)
        left = np.arange(m, dtype=np.float64) if window.text_start > 0 else np.full(m, np.inf)
        right = (m - 1 - np.arange(m, dtype=np.float64)) if g[-1] < n - 1 else np.full(m, np.inf)
        dist = np.minimum(left, right)
        take = dist > best[g]
        gt = g[take]
        best[gt] = dist[take]
        probs[gt] = softmax(window_logits[pos[take]])
        offsets[gt] = window.offsets[pos[take]]
        word_ids[gt] = window.word_ids[pos[take]]
    return TokenScores(probs, offsets, word_ids)


@dataclass(slots=True)
class _Unit:
    """A piece or a word on its way to an entity: its label index, score and char span."""

    label: int
    score: float
    start: int
    end: int


def _pieces(tokens: TokenScores) -> list[_Unit]:
    idx = tokens.probs.argmax(axis=1)
    score = tokens.probs[np.arange(len(idx)), idx]
    return [
        _Unit(int(i), float(s), int(a), int(b))
        for i, s, (a, b) in zip(idx, score, tokens.offsets, strict=True)
    ]


def _word_starts(word_ids: np.ndarray) -> np.ndarray:
    """Index of each word's first piece: a piece starts a word unless it continues its neighbour's."""
    if len(word_ids) == 0:
        return np.zeros(0, dtype=np.int64)
    new = np.ones(len(word_ids), dtype=bool)
    new[1:] = (word_ids[1:] != word_ids[:-1]) | (word_ids[1:] < 0)
    return np.flatnonzero(new)


def _words(tokens: TokenScores, aggregation: str) -> list[_Unit]:
    """Fuse pieces into words: the label of the first piece, of the averaged probabilities, or of
    the most confident piece (HF's first / average / max)."""
    probs, n = tokens.probs, len(tokens.probs)
    if n == 0:
        return []
    starts = _word_starts(tokens.word_ids)
    ends = np.append(starts[1:], n)  # exclusive piece index
    if aggregation == "first":
        word_probs = probs[starts]
    elif aggregation == "average":
        word_probs = np.add.reduceat(probs, starts, axis=0) / (ends - starts)[:, None]
    elif aggregation == "max":
        piece_best = probs.max(axis=1)
        # the first piece holding the word's highest probability (argmax keeps the first on ties)
        chosen = [a + int(np.argmax(piece_best[a:b])) for a, b in zip(starts, ends, strict=True)]
        word_probs = probs[chosen]
    else:
        raise ValueError(f"aggregation {aggregation!r} does not fuse words")
    idx = word_probs.argmax(axis=1)
    return [
        _Unit(int(i), float(word_probs[k, i]), int(tokens.offsets[a, 0]), int(tokens.offsets[b - 1, 1]))
        for k, (i, a, b) in enumerate(zip(idx, starts, ends, strict=True))
    ]


def _tag(label: str) -> tuple[str, str]:
    """(B or I, entity type): a label without a B-/I- prefix counts as a continuation (as in HF)."""
    if label.startswith("B-"):
        return "B", label[2:]
    if label.startswith("I-"):
        return "I", label[2:]
    return "I", label


def _group(units: list[_Unit], labels: Sequence[str]) -> list[tuple[str, list[_Unit]]]:
    """Merge neighbours of the same entity type unless the newcomer is tagged B- (HF's grouping)."""
    groups: list[tuple[str, list[_Unit]]] = []
    for unit in units:
        bi, kind = _tag(labels[unit.label])
        if groups and bi != "B" and _tag(labels[groups[-1][1][-1].label])[1] == kind:
            groups[-1][1].append(unit)
        else:
            # The group is named after its first member's label, minus any prefix before "-".
            groups.append((labels[unit.label].split("-", 1)[-1], [unit]))
    return groups


def aggregate(
    text: str,
    tokens: TokenScores,
    labels: Sequence[str],
    aggregation: Aggregation = "first",
    ignore_labels: Sequence[str] = ("O",),
    threshold: float = 0.0,
) -> list[Entity]:
    """Entities of `text` from its stitched token probabilities.

    `none`: one result per piece, labelled with its full tag. `simple`: pieces grouped. `first` /
    `average` / `max`: pieces fused into words, then words grouped. A group's score is the mean of
    its members' scores. Results labelled in `ignore_labels` or scoring below `threshold` are dropped.
    """
    if tokens.probs.shape[1] != len(labels):
        raise ValueError(f"the model gives {tokens.probs.shape[1]} labels, the bundle names {len(labels)}")
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, not {aggregation!r}")
    ignored = set(ignore_labels)
    if aggregation == "none":
        found = [(labels[u.label], u.score, u.start, u.end) for u in _pieces(tokens)]
    else:
        units = _pieces(tokens) if aggregation == "simple" else _words(tokens, aggregation)
        found = [
            (label, float(np.mean([u.score for u in members])), members[0].start, members[-1].end)
            for label, members in _group(units, labels)
        ]
    return [
        Entity(label, score, text[start:end], start, end)
        for label, score, start, end in found
        if label not in ignored and score >= threshold
    ]


def decode_entities(
    text: str,
    windows: Sequence[Window],
    logits: Sequence[np.ndarray],
    labels: Sequence[str],
    aggregation: Aggregation = "first",
    ignore_labels: Sequence[str] = ("O",),
    threshold: float = 0.0,
) -> list[Entity]:
    """Entities of `text` from the logits of its windows (see `stitch` and `aggregate`)."""
    return aggregate(text, stitch(windows, logits), labels, aggregation, ignore_labels, threshold)
