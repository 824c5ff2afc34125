"""The plain example records every reader produces, and the one error they raise."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


class DataFormatError(ValueError):
    """A record in a data file is malformed; the message starts with `file:line:`."""

    def __init__(self, path: str | Path, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.line = line


@dataclass(frozen=True)
class TextExample:
    """A text (or text pair) with its label: a class name, a list of names, or a number."""

    text: str
    label: str | list[str] | float
    text_pair: str | None = None
    source: str = ""  # "file:line", for messages about this record


@dataclass(frozen=True)
class TokenExample:
    """A pre-split sentence with one IOB2 tag per word."""

    tokens: list[str]
    tags: list[str]
    source: str = ""


@dataclass(frozen=True)
class Answer:
    text: str
    start: int  # character offset into the context


@dataclass(frozen=True)
class QAExample:
    """A question over a context; no answers means unanswerable (SQuAD v2)."""

    id: str
    question: str
    context: str
    answers: list[Answer] = field(default_factory=list)
    source: str = ""

    @property
    def is_impossible(self) -> bool:
        return not self.answers
