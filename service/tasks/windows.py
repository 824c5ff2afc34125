"""Overlapping token windows over long texts (NER) and long QA contexts, mapped back to characters.

A window is one model item: `[CLS] text-slice [SEP]` for NER, `[CLS] question [SEP] context-slice
[SEP]` for QA (whatever specials the tokenizer's own post-processor adds: RoBERTa gets `<s> … </s>`).
The slicing is the Rust tokenizer's own overflow truncation, so windows are token for token what a
Hugging Face fast tokenizer gives with `truncation=True|"only_second", stride=…,
return_overflowing_tokens=True`, which is what the HF token-classification and 4.57 question-answering
pipelines feed their models: consecutive windows share `stride` tokens of the text.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tokenizers import Encoding, Tokenizer


class WindowError(ValueError):
    """A window size or stride that cannot be honoured; `param` names the request field to fix."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True, eq=False)
class Window:
    """One window of a tokenized text, ready for the model and mappable back to characters.

    Arrays have one entry per token of the window (specials included, no padding):
      input_ids, attention_mask, token_type_ids   int64, the model inputs
      offsets      int64 [seq, 2], char offsets (end exclusive) into the ORIGINAL string the
                   token came from: the text for NER, the context for QA tokens of `text_mask`
      word_ids     int64, the word a token belongs to, counted over the whole text (so equal across
                   windows); -1 for specials (for QA the question's tokens count their own words)
      special_mask bool, tokens the post-processor added ([CLS], [SEP], <s>, </s>)
      text_mask    bool, tokens of the windowed text (NER: the text; QA: the context)
    text_start: index, among all the text's tokens, of this window's first text token.
    """

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    offsets: np.ndarray
    word_ids: np.ndarray
    special_mask: np.ndarray
    text_mask: np.ndarray
    text_start: int

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def text_positions(self) -> np.ndarray:
        """Positions (in the window) of the text's tokens, in order."""
        return np.flatnonzero(self.text_mask)


def _check_plain(tokenizer: Tokenizer) -> None:
    # A truncation configured on the tokenizer would cut the text before we window it: a silent loss.
    if tokenizer.truncation is not None or tokenizer.padding is not None:
        raise ValueError(
            "the tokenizer has truncation or padding configured; windows need a plain one "
            "(call no_truncation() and no_padding() on it first)"
        )


def _window(
    enc: Encoding, text: Encoding, text_sequence: int, text_start: int, question: Encoding | None = None
) -> Window:
    """`enc` is post-processed from `text` (the slice) and, for QA, the `question` before it."""
    seq_ids = enc.sequence_ids
    text_mask = np.array([s == text_sequence for s in seq_ids], dtype=bool)
    special_mask = np.asarray(enc.special_tokens_mask, dtype=bool)
    words = np.array([-1 if w is None else w for w in enc.word_ids], dtype=np.int64)
    n = len(enc.ids)
    # Offsets come from the encodings before post_process. encode() has already applied the
    # post-processor's offset trimming to them, and RoBERTa's trimming is not idempotent: run a
    # second time it moves every "Ġword" start one character further into the word. (The
    # question's tokens carry no sequence id after post_process: they are the other non-specials.)
    offsets = np.asarray(enc.offsets, dtype=np.int64).reshape(n, 2)
    parts = [(text_mask, text)] + ([(~text_mask & ~special_mask, question)] if question is not None else [])
    for mask, source in parts:
        if mask.sum() != len(source.ids):
            raise AssertionError("post_process changed the tokens of a sequence")
        offsets[mask] = np.asarray(source.offsets, dtype=np.int64).reshape(-1, 2)
    return Window(
        input_ids=np.asarray(enc.ids, dtype=np.int64),
        attention_mask=np.ones(n, dtype=np.int64),
        token_type_ids=np.asarray(enc.type_ids, dtype=np.int64),
        offsets=offsets,
        word_ids=words,
        special_mask=special_mask,
        text_mask=text_mask,
        text_start=text_start,
    )


def _slices(enc: Encoding, room: int, stride: int) -> list[Encoding]:
    """Cut a specials-free encoding into pieces of `room` tokens sharing `stride` (tokenizers' rule)."""
    enc.truncate(room, stride=stride)
    return [enc, *enc.overflowing]


def text_windows(tokenizer: Tokenizer, text: str, max_length: int, stride: int) -> list[Window]:
    """Windows of at most `max_length` tokens (specials included) over `text`, `stride` tokens shared.

    A text that fits gives one window; an empty text gives one window of specials only.
    """
    _check_plain(tokenizer)
    room = max_length - tokenizer.num_special_tokens_to_add(False)
    if room <= 0:
        raise WindowError(
            f"max_length={max_length} leaves no room for text after the special tokens", "max_length"
        )
    if not 0 <= stride < room:
        raise WindowError(
            f"stride={stride} must be ≥ 0 and below the {room} text tokens a window of "
            f"max_length={max_length} holds",
            "stride",
        )
    enc = tokenizer.encode(text, add_special_tokens=False)
    windows = []
    for k, piece in enumerate(_slices(enc, room, stride)):
        # post_process: the specials and type ids of the tokenizer's own template, exactly as
        # encode() gives them for that slice (main result only, see qa_windows).
        windows.append(_window(tokenizer.post_process(piece), piece, 0, k * (room - stride)))
    return windows


def qa_windows(
    tokenizer: Tokenizer, question: str, context: str, max_seq_len: int, doc_stride: int
) -> list[Window]:
    """`[CLS] question [SEP] context-slice [SEP]` windows of at most `max_seq_len` tokens.

    Only the context is cut (HF `truncation="only_second"`), consecutive slices sharing
    `doc_stride` tokens; question tokens have type 0, the context's type 1 (per the template).
    """
    _check_plain(tokenizer)
    q = tokenizer.encode(question, add_special_tokens=False)
    c = tokenizer.encode(context, add_special_tokens=False)
    room = max_seq_len - len(q.ids) - tokenizer.num_special_tokens_to_add(True)
    # Only a context that must be cut needs room for more than the shared tokens (as in HF).
    if len(c.ids) > room and room <= doc_stride:
        raise WindowError(
            f"the question is {len(q.ids)} tokens: with max_seq_len={max_seq_len} a window holds "
            f"{max(room, 0)} context tokens, which must be more than doc_stride={doc_stride}",
            "doc_stride",
        )
    windows = []
    pieces = _slices(c, room, doc_stride) if len(c.ids) > room else [c]
    for k, piece in enumerate(pieces):
        # One piece at a time, keeping only the main result: the overflows that post_process derives
        # from the first piece get context token type 0 (tokenizers sets type ids on the main pair
        # only), unlike encode()'s.
        enc = tokenizer.post_process(q, piece)
        windows.append(_window(enc, piece, 1, k * (room - doc_stride), question=q))
    return windows

