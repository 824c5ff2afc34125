"""Readers for the training-data formats, one module per format, all returning plain examples.

`read_examples(path, fmt)` is the one entry point; `FORMATS` lists what it understands and for
which task. Every reader raises `DataFormatError` naming the file and line of a malformed record.
"""

from __future__ import annotations

from pathlib import Path

from model.data.examples import (
    Answer,
    DataFormatError,
    QAExample,
    TextExample,
    TokenExample,
)

# format -> task it feeds
FORMATS: dict[str, str] = {
    "sst2": "classify",
    "sst5": "classify",
    "multilabel": "classify",
    "jsonl": "classify|ner",
    "conll": "ner",
    "wikiann": "ner",
    "squad": "qa",
}

__all__ = [
    "FORMATS", "Answer", "DataFormatError", "QAExample", "TextExample", "TokenExample",
    "guess_format", "label_order", "read_examples",
]


def label_order(fmt: str) -> tuple[str, ...] | None:
    """The natural order of a format's class names (an ordinal scale), or None: sort them."""
    if fmt in ("sst2", "sst5"):
        from model.data.sst import SST2_LABELS, SST5_LABELS

        return SST2_LABELS if fmt == "sst2" else SST5_LABELS
    return None


def guess_format(task: str, path: str | Path) -> str:
    """The format a file most likely has, from the task and its name/extension."""
    path = Path(path)
    name = str(path).lower()
    if name.endswith(".jsonl"):
        return "jsonl"
    if task == "qa":
        return "squad"
    if task == "ner":
        return "wikiann" if "wikiann" in name else "conll"
    if task == "classify":
        if "sst" in name:
            return "sst2"
        return "multilabel"
    raise ValueError(f"unknown task {task!r}")


def read_examples(path: str | Path, fmt: str, task: str) -> list:
    """Read `path` in format `fmt` for `task` (classify | ner | qa)."""
    path = Path(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown data format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if task not in FORMATS[fmt].split("|"):
        raise ValueError(f"format {fmt!r} holds {FORMATS[fmt]} data, not {task} data ({path})")
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    if fmt in ("sst2", "sst5"):
        from model.data.sst import read_sst

        return read_sst(path, view=fmt)
    if fmt == "multilabel":
        from model.data.multilabel import read_multilabel

        return read_multilabel(path)
    if fmt in ("conll", "wikiann"):
        from model.data.conll import read_conll

        return read_conll(path, language_prefix=fmt == "wikiann")
    if fmt == "squad":
        from model.data.squad import read_squad

        return read_squad(path)
    from model.data.jsonl import read_jsonl

    return read_jsonl(path, task=task)
