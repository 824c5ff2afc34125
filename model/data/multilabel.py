"""Multi-label lines in the fastText style: `tok tok __label__a __label__b` (labels anywhere)."""

from __future__ import annotations

from pathlib import Path

from model.data.examples import DataFormatError, TextExample

PREFIX = "__label__"


def read_multilabel(path: Path) -> list[TextExample]:
    examples = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            words = line.split()
            labels = [w[len(PREFIX):] for w in words if w.startswith(PREFIX)]
            text = " ".join(w for w in words if not w.startswith(PREFIX))
            if not labels:
                raise DataFormatError(path, lineno, f"no `{PREFIX}NAME` label on the line")
            if any(not label for label in labels):
                raise DataFormatError(path, lineno, f"empty label name after `{PREFIX}`")
            if not text:
                raise DataFormatError(path, lineno, "labels but no text")
            # Keep first-seen order, drop repeats: a label is either on or off.
            unique = list(dict.fromkeys(labels))
            examples.append(TextExample(text=text, label=unique, source=f"{path}:{lineno}"))
    return examples
