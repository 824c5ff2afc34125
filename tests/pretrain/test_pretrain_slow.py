"""Slow: the pretraining corpus from ../shared/data, a short real pretraining run on it, and the
typo attack on the fine-tuned CoNLL-2003 models (runs/ner, and runs/pretrain/ner-typos when the
augmented model of docs/pretraining.md has been trained)."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus(shared_data, tmp_path_factory) -> Path:
    from model.pretrain.corpus import write_corpus

    out = tmp_path_factory.mktemp("corpus")
    write_corpus(shared_data, out)
    return out


def test_corpus_holds_every_training_split_and_no_dev_text(corpus, shared_data):
    from model.data import read_examples

    stats = json.loads((corpus / "corpus.json").read_text())
    assert set(stats["sources"]) == {"sst", "conll2003", "wikiann-en", "squad"}
    assert all(s["lines"] > 3000 for s in stats["sources"].values())
    train, dev = ((corpus / f"{name}.txt").read_text().splitlines() for name in ("train", "dev"))
    assert (len(train), len(dev)) == (stats["train_lines"], stats["dev_lines"])
    lines = set(train) | set(dev)
    for name, fmt, task in (("sst", "sst5", "classify"), ("conll2003", "conll", "ner"),
                            ("wikiann-en", "wikiann", "ner")):
        dev_texts, train_texts = ({ex.text if task == "classify" else " ".join(ex.tokens)
                                   for ex in read_examples(shared_data / name / f"{split}.txt", fmt, task)}
                                  for split in ("dev", "train"))
        # Only what the source itself repeats in its training split ("Hey Arnold !", score tables).
        assert lines & dev_texts <= train_texts, f"{name} dev text leaked into the pretraining corpus"


def test_half_a_minute_of_pretraining_beats_the_unigram_guess(corpus, tmp_path):
    """TextCNN (fastest per step) on the real corpus: dev MLM accuracy well above always guessing the
    most frequent token, and the run stops at its time budget."""
    from model.pretrain.mlm import MLMConfig, encode_lines, pretrain, read_lines

    cfg = MLMConfig(train=str(corpus / "train.txt"), dev=str(corpus / "dev.txt"), out=str(tmp_path / "m"),
                    arch="textcnn", size="tiny", vocab_size=4000, epochs=50, max_minutes=0.5, lr=2e-3,
                    threads=2)
    summary = pretrain(cfg, log=lambda msg: None)
    assert summary["stopped_by"] == "time budget" and summary["train_seconds"] < 45
    from model.heads import load_tokenizer

    tokenizer = load_tokenizer(tmp_path / "m")
    counts = Counter(i for f in encode_lines(tokenizer, read_lines(corpus / "dev.txt"), 128)
                     for i, w in zip(f["input_ids"], f["word_ids"], strict=True) if w >= 0)
    unigram = counts.most_common(1)[0][1] / sum(counts.values())
    accuracy = summary["epochs"][-1]["dev"]["accuracy"]
    assert accuracy > unigram + 0.05, (accuracy, unigram)


def _checkpoint(env: str, default: Path) -> Path:
    path = Path(os.environ.get(env, default))
    if not (path / "model.safetensors").is_file():
        pytest.skip(f"no checkpoint at {path} (train it as docs/pretraining.md says, or set {env})")
    return path


def _attack(checkpoint: Path, data: Path) -> dict:
    """`berth eval ner --attack typos` (the CLI's JSON, parsed)."""
    import contextlib
    import io

    from service.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["eval", "ner", "--checkpoint", str(checkpoint), "--data", str(data), "--attack", "typos",
                   "--threads", "2"])
    assert rc == 0
    return json.loads(out.getvalue())


@pytest.fixture(scope="module")
def default_ner_attack(shared_data) -> dict:
    """The default CoNLL-2003 model (runs/ner) scored clean and under the typo attack (~2 min)."""
    return _attack(_checkpoint("BERTH_NER_CHECKPOINT", REPO_ROOT / "runs" / "ner"),
                   shared_data / "conll2003" / "dev.txt")


def test_typos_cost_the_default_ner_model_a_large_share_of_its_f1(default_ner_attack):
    report = default_ner_attack
    assert report["clean"]["f1"] > 0.85
    # CharBERT's BERT loses a third (91.2 -> 60.8); a subword model here loses at least a tenth.
    assert report["relative_drop"] > 0.10, report
    assert report["attack"]["perturbed_words"] > 20_000


def test_typo_augmented_ner_model_loses_at_most_half_as_much(shared_data, default_ner_attack):
    """Acceptance 3: the same recipe with --augment typos halves the drop, clean F1 within 1 point."""
    augmented = _checkpoint("BERTH_NER_TYPOS_CHECKPOINT", REPO_ROOT / "runs" / "pretrain" / "ner-typos")
    report = _attack(augmented, shared_data / "conll2003" / "dev.txt")
    base = default_ner_attack
    assert report["absolute_drop"] <= base["absolute_drop"] / 2, (report, base)
    assert report["clean"]["f1"] >= base["clean"]["f1"] - 0.01, (report["clean"], base["clean"])
