"""Gate inputs: the repo's dev sets (SST, CoNLL-2003, SQuAD) read and encoded into padded batches."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export.checkpoint import CheckpointInfo, ExportError

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
DEFAULT_FILES = {
    "embed": DATA_DIR / "sst" / "dev.txt",
    "classify": DATA_DIR / "sst" / "dev.txt",
    "ner": DATA_DIR / "conll2003" / "dev.txt",
    "qa": DATA_DIR / "squad" / "dev.json",
}

# Calibration inputs of the smoothing int8 recipe: the training splits, never the dev sets the
# gates measure on, so a recipe cannot be fitted to its own test.
CALIBRATION_FILES = {
    "embed": DATA_DIR / "sst" / "train.txt",
    "classify": DATA_DIR / "sst" / "train.txt",
    "ner": DATA_DIR / "conll2003" / "train.txt",
    "qa": DATA_DIR / "squad" / "train.json",
}
CALIBRATION_EXAMPLES = 128

# A gate example: a text, a (text, text_pair) pair, or a list of words (NER).
Example = str | tuple[str, str] | list[str]


def read_sst(path: Path) -> list[str]:
    """Sentences of an SST file (`LABEL ||| text` per line)."""
    texts = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        label, sep, text = line.partition(" ||| ")
        if not sep or not text.strip():
            raise ExportError(f"{path}:{number}: expected 'LABEL ||| text', got {line[:60]!r}")
        texts.append(text.strip())
    return texts


def read_conll(path: Path) -> list[list[str]]:
    """Sentences (word lists) of a CoNLL file (`word TAG` per line, blank line between sentences)."""
    sentences: list[list[str]] = []
    words: list[str] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            if words:
                sentences.append(words)
            words = []
            continue
        parts = line.split()
        if len(parts) < 2:
            raise ExportError(f"{path}:{number}: expected 'word TAG', got {line[:60]!r}")
        if parts[0] != "-DOCSTART-":
            words.append(parts[0])
    if words:
        sentences.append(words)
    return sentences


def read_squad(path: Path) -> list[tuple[str, str]]:
    """(question, context) pairs of a SQuAD JSON file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
        return [(qa["question"], paragraph["context"])
                for article in data for paragraph in article["paragraphs"] for qa in paragraph["qas"]]
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ExportError(f"{path}: not SQuAD JSON ({exc!r})") from exc


def default_examples(task: str) -> list[Example]:
    """The dev set a task's int8 gate runs on by default."""
    path = DEFAULT_FILES[task]
    if not path.is_file():
        raise ExportError(f"{path}: missing; pass gate_texts explicitly")
    return _read_examples(task, path)


def calibration_examples(task: str, count: int = CALIBRATION_EXAMPLES) -> list[Example]:
    """`count` examples spread evenly over the task's training split (every k-th one)."""
    path = CALIBRATION_FILES[task]
    if not path.is_file():
        raise ExportError(f"{path}: missing; the smoothing int8 recipe calibrates on it")
    examples = _read_examples(task, path)
    step = max(1, len(examples) // count)
    return examples[::step][:count]


def _read_examples(task: str, path: Path) -> list[Example]:
    if task == "ner":
        return list(read_conll(path))
    if task == "qa":
        return list(read_squad(path))
    return list(read_sst(path))


@dataclass
class Batch:
    """One padded batch: graph feeds plus, per row, which sequence each token belongs to."""

    feeds: dict[str, np.ndarray]
    sequence_ids: list[list[int | None]]


def _encoder(tokenizer, info: CheckpointInfo):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tokenizer.to_str())
    # Only the context of a QA pair is cut, as the service does with its windows.
    tok.enable_truncation(info.max_length, strategy="only_second" if info.task == "qa" else "longest_first")
    return tok


def check_qa_fits(tokenizer, info: CheckpointInfo, examples: Sequence[Example], source: str) -> None:
    """Every (question, context) pair must leave room for context within max_length: only the
    context is truncated, and the tokenizer fails on a question that fills the window by itself."""
    questions = [ex[0] for ex in examples if isinstance(ex, tuple) and ex]
    if not questions:
        return
    specials = tokenizer.num_special_tokens_to_add(True)
    lengths = [len(e.ids) for e in tokenizer.encode_batch(questions, add_special_tokens=False)]
    need = max(lengths) + specials + 1  # the longest question, the special tokens, one context token
    if need > info.max_length:
        index = next(i for i, n in enumerate(lengths) if n + specials + 1 > info.max_length)
        raise ExportError(
            f"{source}: question {index + 1} ({questions[index][:40]!r}) takes {lengths[index]} tokens "
            f"+ {specials} special tokens, leaving no room for its context in max_length "
            f"{info.max_length}; qa needs max_length >= {need} for these questions (--max-length)"
        )


def encode(tokenizer, info: CheckpointInfo, examples: Sequence[Example], batch_size: int = 32) -> list[Batch]:
    """Tokenize and right-pad `examples` into batches in their given order."""
    tok = _encoder(tokenizer, info)
    batches = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        if info.task == "ner" or (chunk and isinstance(chunk[0], list)):
            encodings = tok.encode_batch([list(words) for words in chunk], is_pretokenized=True)
        elif chunk and isinstance(chunk[0], tuple):
            encodings = tok.encode_batch([tuple(pair) for pair in chunk])
        else:
            encodings = tok.encode_batch(list(chunk))
        batches.append(pad(encodings, info))
    return batches


def pad(encodings, info: CheckpointInfo) -> Batch:
    """Right padding (the fused attention reads the mask as a mask index)."""
    width = max(len(e.ids) for e in encodings)
    ids = np.full((len(encodings), width), info.pad_token_id, dtype=np.int64)
    mask = np.zeros_like(ids)
    types = np.zeros_like(ids)
    for row, enc in enumerate(encodings):
        n = len(enc.ids)
        ids[row, :n] = enc.ids
        mask[row, :n] = 1
        types[row, :n] = enc.type_ids
    feeds = {"input_ids": ids, "attention_mask": mask}
    if info.uses_token_type_ids:
        feeds["token_type_ids"] = types
    return Batch(feeds, [list(e.sequence_ids) for e in encodings])


def parity_batches(tokenizer, info: CheckpointInfo, examples: Sequence[Example]) -> list[Batch]:
    """Small batches for the fp32 check: sizes 5, 1 and 3 (the dummy is 2 x 12) whose rows have
    unequal lengths, so padding is exercised even when every example fills max_length."""
    picked = list(examples[:9])
    if len(picked) < 2:
        raise ExportError("the fp32 parity check needs at least 2 gate examples")
    batches = [encode(tokenizer, info, part, batch_size=len(part))[0]
               for part in (picked[:5], picked[5:6], picked[6:9]) if part]
    for batch in batches:
        mask = batch.feeds["attention_mask"]
        if len(mask) > 1 and mask.all():
            # Cut the last row to a prefix: the same ids on both sides, now with padding.
            keep = max(2, mask.shape[1] * 2 // 3)
            batch.feeds["input_ids"][-1, keep:] = info.pad_token_id
            for name in ("attention_mask", "token_type_ids"):
                if name in batch.feeds:
                    batch.feeds[name][-1, keep:] = 0
            batch.sequence_ids[-1] = batch.sequence_ids[-1][:keep]
    return batches
