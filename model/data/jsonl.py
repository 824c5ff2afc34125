"""JSON lines for users' own data.

classify: `{"text": str, "text_pair"?: str, "label": str | number}` or `{..., "labels": [str]}`
ner:      `{"tokens": [str], "tags": [str]}` (IOB2)
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from model.data.examples import DataFormatError, TextExample, TokenExample


def read_jsonl(path: Path, task: str) -> list[TextExample] | list[TokenExample]:
    examples: list = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFormatError(path, lineno, f"invalid JSON: {exc.msg}") from None
            if not isinstance(record, dict):
                raise DataFormatError(path, lineno, "expected a JSON object")
            source = f"{path}:{lineno}"
            parse = _token_record if task == "ner" else _text_record
            examples.append(parse(record, path, lineno, source))
    return examples


def _text_record(record: dict, path: Path, lineno: int, source: str) -> TextExample:
    text = record.get("text")
    if not isinstance(text, str) or not text.strip():
        raise DataFormatError(path, lineno, '"text" must be a non-empty string')
    pair = record.get("text_pair")
    if pair is not None and not isinstance(pair, str):
        raise DataFormatError(path, lineno, '"text_pair" must be a string')
    if ("label" in record) == ("labels" in record):
        raise DataFormatError(path, lineno, 'give exactly one of "label" or "labels"')
    if "labels" in record:
        labels = record["labels"]
        if not isinstance(labels, list) or not all(isinstance(x, str) and x for x in labels):
            raise DataFormatError(path, lineno, '"labels" must be a list of non-empty strings')
        label: str | list[str] | float = list(dict.fromkeys(labels))
    else:
        label = record["label"]
        # bool is an int in Python; a true/false label is almost surely a mistake.
        if isinstance(label, bool) or not isinstance(label, str | int | float) or label == "":
            raise DataFormatError(path, lineno, '"label" must be a non-empty string or a number')
        if isinstance(label, float) and not math.isfinite(label):
            # json.loads accepts NaN and Infinity: a regression target the loss cannot use.
            raise DataFormatError(path, lineno, f'"label" must be a finite number, not {label}')
        if isinstance(label, int):
            label = str(label)  # integer class ids are class names, not regression targets
    return TextExample(text=text, text_pair=pair, label=label, source=source)


def _token_record(record: dict, path: Path, lineno: int, source: str) -> TokenExample:
    tokens, tags = record.get("tokens"), record.get("tags")
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) and t for t in tokens):
        raise DataFormatError(path, lineno, '"tokens" must be a non-empty list of non-empty strings')
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise DataFormatError(path, lineno, '"tags" must be a list of strings')
    if len(tags) != len(tokens):
        raise DataFormatError(path, lineno, f"{len(tokens)} tokens but {len(tags)} tags")
    for tag in tags:
        if tag != "O" and not (tag[:2] in ("B-", "I-") and len(tag) > 2):
            raise DataFormatError(path, lineno, f"tag {tag!r} is not IOB2 (O, B-TYPE or I-TYPE)")
    return TokenExample(tokens=tokens, tags=tags, source=source)
