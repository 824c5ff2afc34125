"""The raw-text pretraining corpus: one sentence or paragraph per line, from the data sets in
../shared/data (or any directory with the same layout).

Only the training splits feed it: SST sentences, CoNLL-2003 and WikiANN sentences (tokens joined
by spaces), SQuAD contexts and questions. Dev splits stay out, so the fine-tuning dev figures are
measured on text the encoder never read. A small fraction of the lines, chosen by a seeded
shuffle, is held out as the MLM dev file.

    python -m model.pretrain.corpus --data-dir ../shared/data --out runs/pretrain/corpus
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from model.data import read_examples

# (name, file under the data dir, format)
SOURCES = (
    ("sst", "sst/train.txt", "sst5"),
    ("conll2003", "conll2003/train.txt", "conll"),
    ("wikiann-en", "wikiann-en/train.txt", "wikiann"),
    ("squad", "squad/train.json", "squad"),
)


def corpus_lines(data_dir: Path) -> dict[str, list[str]]:
    """Lines of raw text per source (duplicates removed within a source, order kept)."""
    out: dict[str, list[str]] = {}
    for name, rel, fmt in SOURCES:
        path = Path(data_dir) / rel
        if fmt in ("sst5",):
            lines = [ex.text for ex in read_examples(path, fmt, "classify")]
        elif fmt in ("conll", "wikiann"):
            lines = [" ".join(ex.tokens) for ex in read_examples(path, fmt, "ner")]
        else:
            examples = read_examples(path, fmt, "qa")
            contexts = list(dict.fromkeys(ex.context for ex in examples))
            lines = contexts + [ex.question.strip() for ex in examples]
        out[name] = list(dict.fromkeys(" ".join(line.split()) for line in lines if line.strip()))
    return out


def write_corpus(data_dir: Path, out_dir: Path, dev_fraction: float = 0.02, seed: int = 0) -> dict:
    """Write out_dir/train.txt and out_dir/dev.txt; returns line and word counts per source."""
    sources = corpus_lines(data_dir)
    lines = [line for name in sources for line in sources[name]]
    random.Random(seed).shuffle(lines)
    n_dev = int(len(lines) * dev_fraction)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "dev.txt").write_text("\n".join(lines[:n_dev]) + "\n", encoding="utf-8")
    (out_dir / "train.txt").write_text("\n".join(lines[n_dev:]) + "\n", encoding="utf-8")
    stats = {
        "sources": {name: {"lines": len(ls), "words": sum(len(x.split()) for x in ls)}
                    for name, ls in sources.items()},
        "train_lines": len(lines) - n_dev, "dev_lines": n_dev,
        "words": sum(len(x.split()) for x in lines), "seed": seed,
    }
    (out_dir / "corpus.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.pretrain.corpus",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="directory with sst/, conll2003/, ...")
    parser.add_argument("--out", type=Path, required=True, help="output directory (train.txt, dev.txt)")
    parser.add_argument("--dev-fraction", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        stats = write_corpus(args.data_dir, args.out, args.dev_fraction, args.seed)
    except (FileNotFoundError, ValueError) as exc:
        print(f"corpus: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(stats, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
