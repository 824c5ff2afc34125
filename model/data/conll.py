"""Token-per-line NER files: CoNLL `word [POS CHUNK] TAG` and WikiANN `en:word<TAB>TAG`.

Sentences are separated by blank lines; `-DOCSTART-` lines are skipped. Tags must be IOB2
(`O`, `B-TYPE`, `I-TYPE`).
"""

from __future__ import annotations

import re
from pathlib import Path

from model.data.examples import DataFormatError, TokenExample

_TAG = re.compile(r"^(O|[BI]-\S+)$")
# WikiANN prefixes each word with its language code, e.g. `en:Paris`.
_LANG_PREFIX = re.compile(r"^[a-z]{2,3}:(?=.)")


def read_conll(path: Path, language_prefix: bool = False) -> list[TokenExample]:
    """`language_prefix`: the words carry WikiANN's `en:` (stripped); CoNLL words are verbatim,
    so a CoNLL-2003 token such as `ftp://host` or `de:Berlin` keeps its letters."""
    examples: list[TokenExample] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 0

    def flush() -> None:
        if tokens:
            examples.append(TokenExample(tokens=list(tokens), tags=list(tags), source=f"{path}:{start}"))
            tokens.clear()
            tags.clear()

    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.rstrip("\n").rstrip("\r")
            if not line.strip():
                flush()
                continue
            if line.startswith("-DOCSTART-"):
                flush()
                continue
            fields = line.split("\t") if "\t" in line else line.split()
            fields = [x.strip() for x in fields]
            if len(fields) < 2 or not fields[0]:
                raise DataFormatError(path, lineno, f"expected `word TAG`, got {line!r}")
            word, tag = fields[0], fields[-1]
            if not _TAG.match(tag):
                raise DataFormatError(path, lineno, f"tag {tag!r} is not IOB2 (O, B-TYPE or I-TYPE)")
            if not tokens:
                start = lineno
            tokens.append(_LANG_PREFIX.sub("", word) if language_prefix else word)
            tags.append(tag)
    flush()
    return examples
