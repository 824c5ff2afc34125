"""Realistic request texts for the load tests, read from the repository's data/ folder.

The scenarios need mixed-length inputs that look like real traffic, not a repeated constant:
SST sentences (short, 6-64 words) for embeddings and classification, CoNLL-2003 sentences
joined into paragraphs for NER, SQuAD question/context pairs for QA. Everything comes from
`data/` in the repository (users have no ../shared), and sampling is seeded so the benchmark
feeds the same texts to the ceiling, the service and the naive baseline. Stdlib only: the
locust workers and the benchmark client import this module without numpy or torch.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parents[1] / "data"

# Penn Treebank tokenization undone, so the texts look like what users send (and tokenize to
# realistic lengths): "It 's a film , really ." -> "It's a film, really."
_PTB_TOKENS = {
    "-LRB-": "(",
    "-RRB-": ")",
    "-LSB-": "[",
    "-RSB-": "]",
    "-LCB-": "{",
    "-RCB-": "}",
    "``": '"',
    "''": '"',
    "`": "'",
}
_SPACE_BEFORE = re.compile(r" (?=[,.;:!?%)\]}]|'s\b|'re\b|'ve\b|'m\b|'ll\b|'d\b|n't\b)")
_SPACE_AFTER = re.compile(r"(?<=[(\[{$]) ")


class DataFileError(ValueError):
    """A data file is missing or malformed; the message names the file and the line."""


def detokenize(tokens: list[str]) -> str:
    """Join PTB-style tokens into plain text."""
    text = " ".join(_PTB_TOKENS.get(t, t) for t in tokens)
    text = _SPACE_BEFORE.sub("", text)
    return _SPACE_AFTER.sub("", text)


def read_sst(path: Path) -> list[str]:
    """Sentences of an SST split (`LABEL ||| text` per line), detokenized."""
    sentences = []
    for lineno, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        label, sep, text = line.partition(" ||| ")
        if not sep or not label.strip().isdigit() or not text.strip():
            raise DataFileError(f"{path}:{lineno}: expected 'LABEL ||| text', got {line[:60]!r}")
        sentences.append(detokenize(text.split()))
    return sentences


def read_conll_sentences(path: Path) -> list[str]:
    """Sentences of a CoNLL-2003 file (`word TAG` per line, blank line between sentences)."""
    sentences: list[str] = []
    words: list[str] = []
    for lineno, line in enumerate(_read_lines(path), start=1):
        parts = line.split()
        if not parts:
            if words:
                sentences.append(detokenize(words))
            words = []
        elif parts[0] == "-DOCSTART-":
            continue
        elif len(parts) < 2:
            raise DataFileError(f"{path}:{lineno}: expected 'word TAG', got {line[:60]!r}")
        else:
            words.append(parts[0])
    if words:
        sentences.append(detokenize(words))
    return sentences


def read_squad(path: Path) -> list[tuple[str, str]]:
    """(question, context) pairs of a SQuAD v1.1 JSON file."""
    try:
        articles = json.loads(path.read_text(encoding="utf-8"))["data"]
        return [
            (qa["question"], paragraph["context"])
            for article in articles
            for paragraph in article["paragraphs"]
            for qa in paragraph["qas"]
        ]
    except FileNotFoundError as exc:
        raise DataFileError(f"{path}: missing") from exc
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataFileError(f"{path}: not a SQuAD v1.1 file ({exc!r})") from exc


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as exc:
        raise DataFileError(f"{path}: missing (the load tests read the repository's data/ folder)") from exc


def paragraphs(
    sentences: list[str], rng: random.Random, min_sentences: int = 3, max_sentences: int = 8
) -> list[str]:
    """Consecutive sentences joined into paragraphs of a random length (documents for NER)."""
    out, i = [], 0
    while i < len(sentences):
        n = rng.randint(min_sentences, max_sentences)
        chunk = [s for s in sentences[i : i + n] if len(s.split()) > 2] or sentences[i : i + n]
        out.append(" ".join(chunk))
        i += n
    return out


@dataclass(frozen=True)
class TextPools:
    """The texts every scenario draws from, built once per process."""

    short: list[str]  # 6-64 word sentences: embed and classify
    documents: list[str]  # paragraphs of 3-8 sentences: NER
    qa_pairs: list[tuple[str, str]]

    @classmethod
    def load(cls, data_dir: Path = DATA_DIR, seed: int = 0) -> TextPools:
        rng = random.Random(seed)
        short = [s for s in read_sst(data_dir / "sst" / "dev.txt") if 6 <= len(s.split()) <= 64]
        rng.shuffle(short)
        documents = paragraphs(read_conll_sentences(data_dir / "conll2003" / "dev.txt"), rng)
        rng.shuffle(documents)
        qa_pairs = read_squad(data_dir / "squad" / "dev.json")
        rng.shuffle(qa_pairs)
        if not short or not documents or not qa_pairs:
            raise DataFileError(f"{data_dir}: a data set gave no usable texts")
        return cls(short=short, documents=documents, qa_pairs=qa_pairs)


class Cycler:
    """Deterministic round-robin over a pool, from a per-worker offset (no two workers in step)."""

    def __init__(self, pool: list, offset: int = 0) -> None:
        self._pool = pool
        self._i = offset % len(pool)

    def take(self, k: int = 1) -> list:
        out = []
        for _ in range(k):
            out.append(self._pool[self._i])
            self._i = (self._i + 1) % len(self._pool)
        return out
