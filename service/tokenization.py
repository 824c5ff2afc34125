"""Text → token ids with the bundle's tokenizer.json (Rust `tokenizers`): caps, truncation, pairs."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tokenizers import Encoding, Tokenizer

from service.errors import InvalidInput

Direction = Literal["right", "left"]
Text = str | tuple[str, str]

# Below this many texts, tokenizing inline is cheaper than a hop to a worker thread.
OFFLOAD_MIN_TEXTS = 16


@dataclass(slots=True)
class Encoded:
    """One request's texts, tokenized: parallel lists, one entry per text."""

    encodings: list[Encoding]
    truncated: list[bool]
    # Per text, per sequence (one, or two for a pair): characters the character cap cut from the
    # front (truncation_direction "left"); an encoding's offsets plus this index the original.
    char_shifts: list[tuple[int, ...]]

    @property
    def lengths(self) -> list[int]:
        return [len(e.ids) for e in self.encodings]

    @property
    def tokens(self) -> int:
        return sum(len(e.ids) for e in self.encodings)

    @property
    def truncated_count(self) -> int:
        return sum(self.truncated)


def _pad_id(tok: Tokenizer) -> int:
    # RoBERTa's position ids are computed from `input_ids != pad`, so the real pad id matters.
    for token in ("[PAD]", "<pad>", "<PAD>"):
        pad = tok.token_to_id(token)
        if pad is not None:
            return pad
    return 0


class TextTokenizer:
    """A bundle's tokenizer with one truncating copy per direction (tokenizers is stateful)."""

    def __init__(self, path: Path, max_length: int, max_chars: int) -> None:
        base = Tokenizer.from_file(str(path))
        # Bundles should have neither baked in; a sentence-transformers file pads to 128 otherwise.
        base.no_padding()
        base.no_truncation()
        # "[CLS]" typed by a user is text, not the special id: otherwise a caller could inject
        # separators or masks into what the model sees (tokenizers matches them in raw text).
        base.encode_special_tokens = True
        self.plain = base
        self._truncating: dict[str, Tokenizer] = {}
        for direction in ("right", "left"):
            tok = Tokenizer.from_str(base.to_str())
            tok.enable_truncation(max_length, strategy="longest_first", direction=direction)
            tok.encode_special_tokens = True  # not carried by to_str()
            self._truncating[direction] = tok
        self.max_length = max_length
        self.max_chars = max_chars
        self.pad_id = _pad_id(base)

    def _cap_chars(self, text: str, truncate: bool, direction: Direction, param: str) -> tuple[str, int]:
        """The text within the character cap, and how many characters were cut from its front."""
        if not isinstance(text, str) or not text:
            raise InvalidInput("input text must be a non-empty string", param=param)
        if len(text) <= self.max_chars:
            return text, 0
        if not truncate:
            raise InvalidInput(
                f"input has {len(text)} characters, over the limit of {self.max_chars} (truncate=false)",
                param=param,
                reason="too_long",
            )
        if direction == "right":
            return text[: self.max_chars], 0
        return text[-self.max_chars :], len(text) - self.max_chars

    def encode(
        self, texts: list[Text], truncate: bool = True, direction: Direction = "right", param: str = "inputs"
    ) -> Encoded:
        """Tokenize a request's texts (or (text, text_pair) pairs) with special tokens."""
        capped: list[str | tuple[str, str]] = []
        cut: list[bool] = []
        shifts: list[tuple[int, ...]] = []
        for i, text in enumerate(texts):
            if isinstance(text, tuple):
                a, shift_a = self._cap_chars(text[0], truncate, direction, f"{param}.{i}.text")
                b, shift_b = self._cap_chars(text[1], truncate, direction, f"{param}.{i}.text_pair")
                capped.append((a, b))
                cut.append(len(a) < len(text[0]) or len(b) < len(text[1]))
                shifts.append((shift_a, shift_b))
            else:
                t, shift = self._cap_chars(text, truncate, direction, f"{param}.{i}")
                capped.append(t)
                cut.append(len(t) < len(text))
                shifts.append((shift,))
        tok = self._truncating[direction]
        if len(capped) < OFFLOAD_MIN_TEXTS:
            # One call per text keeps the GIL: encode_batch releases it, and under load getting it
            # back from the inference threads cost more than the encoding itself (py-spy, 16
            # single-text clients: 14% of the event loop's samples on that line).
            encodings = [tok.encode(*t) if isinstance(t, tuple) else tok.encode(t) for t in capped]
        else:
            encodings = tok.encode_batch(capped)
        truncated = [c or bool(e.overflowing) for c, e in zip(cut, encodings, strict=True)]
        if not truncate and any(truncated):
            first = truncated.index(True)
            raise InvalidInput(
                f"input {first} is longer than the model's {self.max_length} tokens (truncate=false)",
                param=f"{param}.{first}",
                reason="too_long",
            )
        return Encoded(encodings, truncated, shifts)

    async def encode_async(
        self, texts: list[Text], truncate: bool = True, direction: Direction = "right", param: str = "inputs"
    ) -> Encoded:
        """encode(), off the event loop when the batch is big enough to block it."""
        if len(texts) < OFFLOAD_MIN_TEXTS:
            return self.encode(texts, truncate, direction, param)
        return await asyncio.to_thread(self.encode, texts, truncate, direction, param)
