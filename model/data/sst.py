"""SST sentences, `LABEL ||| text` with LABEL 0..4, read as 5 classes or the binary SST-2 view."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from model.data.examples import DataFormatError, TextExample

SST5_LABELS = ("very negative", "negative", "neutral", "positive", "very positive")
SST2_LABELS = ("negative", "positive")


def read_sst(path: Path, view: Literal["sst2", "sst5"] = "sst2") -> list[TextExample]:
    """sst5 keeps the five classes; sst2 drops neutral (2) and maps 0-1 / 3-4 to negative / positive."""
    examples = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            label, sep, text = line.partition(" ||| ")
            if not sep:
                raise DataFormatError(path, lineno, "expected `LABEL ||| text`")
            label, text = label.strip(), text.strip()
            if label not in {"0", "1", "2", "3", "4"}:
                raise DataFormatError(path, lineno, f"label must be 0..4, got {label!r}")
            if not text:
                raise DataFormatError(path, lineno, "empty text")
            value = int(label)
            if view == "sst5":
                name = SST5_LABELS[value]
            elif value == 2:
                continue
            else:
                name = SST2_LABELS[value > 2]
            examples.append(TextExample(text=text, label=name, source=f"{path}:{lineno}"))
    return examples
