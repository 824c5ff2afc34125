"""The raw-text pretraining corpus: one sentence or paragraph per line, from the data sets in
../shared/data (or any directory with the same layout).

By default only the training splits feed it: SST sentences, CoNLL-2003 and WikiANN sentences
(tokens joined by spaces), SQuAD contexts and questions. Dev splits stay out, so the fine-tuning
dev figures are measured on text the encoder never read. `--include-dev` adds the dev splits of
the named sources: the text of sets that are not the one evaluated on is fair pretraining text
(for an SST-2 study: conll2003, wikiann-en, squad; never sst). `--repeat sst=3` writes a source's
training lines that many times, to weight the downstream task's own domain. A small fraction of
the distinct lines, chosen by a seeded shuffle, is held out as the MLM dev file before any
repetition, so no dev line has a copy in train.

    python -m model.pretrain.corpus --data-dir ../shared/data --out runs/pretrain/corpus
    python -m model.pretrain.corpus --data-dir ../shared/data --out runs/pretrain/corpus-sst3 \
        --include-dev conll2003,wikiann-en,squad --repeat sst=3
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from model.data import read_examples

# (name, training file under the data dir, dev file, format)
SOURCES = (
    ("sst", "sst/train.txt", "sst/dev.txt", "sst5"),
    ("conll2003", "conll2003/train.txt", "conll2003/dev.txt", "conll"),
    ("wikiann-en", "wikiann-en/train.txt", "wikiann-en/dev.txt", "wikiann"),
    ("squad", "squad/train.json", "squad/dev.json", "squad"),
)
SOURCE_NAMES = tuple(name for name, *_ in SOURCES)


def corpus_lines(data_dir: Path, include_dev: frozenset[str] = frozenset()) -> dict[str, list[str]]:
    """Lines of raw text per source (duplicates removed within a source, order kept): the
    training split, then the dev split for the sources named in `include_dev`."""
    unknown = sorted(set(include_dev) - set(SOURCE_NAMES))
    if unknown:
        raise ValueError(
            f"--include-dev: unknown source(s) {', '.join(unknown)} (known: {', '.join(SOURCE_NAMES)})"
        )
    out: dict[str, list[str]] = {}
    for name, train_rel, dev_rel, fmt in SOURCES:
        lines = _source_lines(Path(data_dir) / train_rel, fmt)
        if name in include_dev:
            lines += _source_lines(Path(data_dir) / dev_rel, fmt)
        out[name] = list(dict.fromkeys(lines))
    return out


def _source_lines(path: Path, fmt: str) -> list[str]:
    if fmt == "sst5":
        lines = [ex.text for ex in read_examples(path, fmt, "classify")]
    elif fmt in ("conll", "wikiann"):
        lines = [" ".join(ex.tokens) for ex in read_examples(path, fmt, "ner")]
    else:
        examples = read_examples(path, fmt, "qa")
        contexts = list(dict.fromkeys(ex.context for ex in examples))
        lines = contexts + [ex.question.strip() for ex in examples]
    return [" ".join(line.split()) for line in lines if line.strip()]


def comma_list(spec: str) -> list[str]:
    """`" a, b,,c "` -> ["a", "b", "c"]: the items of a comma-separated option, blanks dropped."""
    return [part for part in (p.strip() for p in spec.split(",")) if part]


def parse_repeat(spec: str) -> dict[str, int]:
    """`sst=3,squad=2` -> {"sst": 3, "squad": 2}; names must be sources, counts whole and ≥ 1."""
    out: dict[str, int] = {}
    for part in comma_list(spec):
        name, sep, count = part.partition("=")
        if not sep or name not in SOURCE_NAMES or not count.isdigit() or int(count) < 1:
            raise ValueError(f"--repeat: {part!r} is not SOURCE=COUNT with SOURCE one of "
                             f"{', '.join(SOURCE_NAMES)} and COUNT a whole number >= 1")
        out[name] = int(count)
    return out


def write_corpus(data_dir: Path, out_dir: Path, dev_fraction: float = 0.02, seed: int = 0,
                 include_dev: frozenset[str] = frozenset(), repeat: dict[str, int] | None = None) -> dict:
    """Write out_dir/train.txt and out_dir/dev.txt; returns line and word counts per source."""
    repeat = repeat or {}
    sources = corpus_lines(data_dir, include_dev)
    tagged = [(name, line) for name in sources for line in sources[name]]
    rng = random.Random(seed)
    rng.shuffle(tagged)
    n_dev = int(len(tagged) * dev_fraction)
    dev = [line for _, line in tagged[:n_dev]]
    train = [line for name, line in tagged[n_dev:] for _ in range(repeat.get(name, 1))]
    if repeat:
        rng.shuffle(train)  # copies spread through the file, not side by side
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "dev.txt").write_text("\n".join(dev) + "\n", encoding="utf-8")
    (out_dir / "train.txt").write_text("\n".join(train) + "\n", encoding="utf-8")
    stats = {
        "sources": {name: {"lines": len(ls), "words": sum(len(x.split()) for x in ls),
                           "dev_split_included": name in include_dev, "repeat": repeat.get(name, 1)}
                    for name, ls in sources.items()},
        "train_lines": len(train), "dev_lines": n_dev,
        "words": sum(len(x.split()) for _, x in tagged), "seed": seed,
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
    parser.add_argument("--include-dev", default="", metavar="NAMES",
                        help=f"comma list of sources whose dev split joins ({', '.join(SOURCE_NAMES)})")
    parser.add_argument("--repeat", default="", metavar="SOURCE=COUNT,...",
                        help="write a source's training lines COUNT times (weights a domain)")
    args = parser.parse_args(argv)
    try:
        stats = write_corpus(args.data_dir, args.out, args.dev_fraction, args.seed,
                             include_dev=frozenset(comma_list(args.include_dev)),
                             repeat=parse_repeat(args.repeat))
    except (FileNotFoundError, ValueError) as exc:
        print(f"corpus: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(stats, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
