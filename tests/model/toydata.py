"""Small learnable data sets in the tiny vocabulary (tests/tiny.py), written in berth's formats."""

from __future__ import annotations

import json
import random
from pathlib import Path

POSITIVE = ["good", "great"]
NEGATIVE = ["bad", "awful"]
SUBJECTS = ["the movie", "the film", "the plot", "the acting", "this movie", "that film"]


def sentiment_lines(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """(text, label): "the plot was great" is positive, "... bad" negative."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "positive" if i % 2 else "negative"
        word = rng.choice(POSITIVE if label == "positive" else NEGATIVE)
        rows.append((f"{rng.choice(SUBJECTS)} was {word}", label))
    return rows


def write_sst(path: Path, n: int, seed: int = 0) -> Path:
    """SST lines: 4 for positive, 0 or 1 for negative, plus neutral lines the SST-2 view drops."""
    lines = []
    for text, label in sentiment_lines(n, seed):
        lines.append(f"{4 if label == 'positive' else 1} ||| {text}")
    lines.append("2 ||| it was a film")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_multilabel(path: Path, n: int, seed: int = 0) -> Path:
    """Two independent labels: `city` when a city is named, `good` when the text says good."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        city = i % 2 == 0
        good = (i // 2) % 2 == 0
        words = ["john", "visited", rng.choice(["paris", "london"]) if city else "acme"]
        words += ["and", "it", "was", "good" if good else "bad"]
        labels = [f"__label__{x}" for x, on in (("city", city), ("good", good)) if on] or ["__label__none"]
        lines.append(" ".join(words + labels))
    path.write_text("\n".join(lines) + "\n")
    return path


def write_regression(path: Path, n: int, seed: int = 0) -> Path:
    """JSONL pairs scored by how many of the two texts are positive (0.0, 1.0 or 2.0)."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(n):
            a, b = rng.choice(POSITIVE + NEGATIVE), rng.choice(POSITIVE + NEGATIVE)
            score = float((a in POSITIVE) + (b in POSITIVE))
            f.write(json.dumps({"text": f"the movie was {a}", "text_pair": f"it was {b}",
                                "label": score}) + "\n")
    return path


NER_SENTENCES = [
    (["john", "smith", "visited", "paris"], ["B-PER", "I-PER", "O", "B-LOC"]),
    (["acme", "corp", "is", "in", "london"], ["B-ORG", "I-ORG", "O", "O", "B-LOC"]),
    (["john", "lives", "in", "berlin"], ["B-PER", "O", "O", "B-LOC"]),
    (["smith", "works", "for", "acme", "corp"], ["B-PER", "O", "O", "B-ORG", "I-ORG"]),
    (["the", "capital", "of", "france", "is", "paris"], ["O", "O", "O", "B-LOC", "O", "B-LOC"]),
    (["john", "went", "to", "new", "york"], ["B-PER", "O", "O", "B-LOC", "I-LOC"]),
]


def write_conll(path: Path, repeat: int = 4) -> Path:
    blocks = []
    for _ in range(repeat):
        for words, tags in NER_SENTENCES:
            blocks.append("\n".join(f"{w} {t}" for w, t in zip(words, tags, strict=True)))
    path.write_text("-DOCSTART- O\n\n" + "\n\n".join(blocks) + "\n")
    return path


QA_PARAGRAPHS = [
    ("john smith lives in paris . the river is by the bank .",
     [("who lives in paris ?", "john smith"), ("where does john smith live ?", "paris")]),
    ("acme corp is in london . the capital of france is paris .",
     [("what is in london ?", "acme corp"), ("what is the capital of france ?", "paris")]),
    ("berlin is the capital of germany . john visited berlin .",
     [("what is the capital of germany ?", "berlin"), ("who visited berlin ?", "john")]),
]


def write_squad(path: Path, repeat: int = 3, version: str = "1.1") -> Path:
    paragraphs = []
    for r in range(repeat):
        for p, (context, qas) in enumerate(QA_PARAGRAPHS):
            paragraphs.append({"context": context, "qas": [
                {"id": f"q{r}-{p}-{q}", "question": question,
                 "answers": [{"text": answer, "answer_start": context.index(answer)}]}
                for q, (question, answer) in enumerate(qas)
            ]})
    path.write_text(json.dumps({"version": version, "data": [{"title": "toy", "paragraphs": paragraphs}]}))
    return path
