"""Each head trains on every tiny architecture, and its checkpoint reloads with labels intact."""

from __future__ import annotations

import json

import pytest

from model.train import SUMMARY_NAME, TrainConfig, train
from tests.model import toydata
from tests.tiny import ARCHITECTURES

# High learning rate and several epochs: the tiny random models must visibly learn in seconds.
FAST = dict(epochs=12, batch_size=8, lr=3e-3, warmup_ratio=0.0, eval_batch_size=16, threads=1)


def _train(tmp_path, base, task, fmt, train_file, dev_file, **overrides):
    cfg = TrainConfig(task=task, base=str(base), train=str(train_file), dev=str(dev_file),
                      out=str(tmp_path / "out"), format=fmt, **{**FAST, **overrides})
    return train(cfg, log=lambda msg: None), tmp_path / "out"


def _assert_learned(summary):
    losses = [e["train_loss"] for e in summary["epochs"]]
    assert losses[-1] < 0.7 * losses[0], losses


def _load(path, task):
    from model.heads import load_checkpoint

    return load_checkpoint(path, task)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_classify_trains_and_reloads(tmp_path, tiny_checkpoints, arch):
    base = tiny_checkpoints(arch, "base")
    tr = toydata.write_sst(tmp_path / "train.txt", 48)
    dev = toydata.write_sst(tmp_path / "dev.txt", 16, seed=1)
    summary, out = _train(tmp_path, base, "classify", "sst2", tr, dev)
    _assert_learned(summary)
    assert summary["best"] >= 0.9  # the sentiment word decides the label
    model, _ = _load(out, "classify")
    assert model.config.id2label == {0: "negative", 1: "positive"}
    assert model.config.problem_type == "single_label_classification"
    saved = json.loads((out / SUMMARY_NAME).read_text())
    assert saved["best"] == summary["best"] and len(saved["epochs"]) == FAST["epochs"]
    assert not list(tmp_path.glob(".out.*")), "temporary checkpoint directory left behind"
    tokenizer_json = json.loads((out / "tokenizer.json").read_text())
    assert tokenizer_json["padding"] is None and tokenizer_json["truncation"] is None


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_ner_trains_and_reloads(tmp_path, tiny_checkpoints, arch):
    base = tiny_checkpoints(arch, "base")
    tr = toydata.write_conll(tmp_path / "train.txt", repeat=4)
    dev = toydata.write_conll(tmp_path / "dev.txt", repeat=1)
    summary, out = _train(tmp_path, base, "ner", "conll", tr, dev, epochs=8)
    _assert_learned(summary)
    assert summary["best"] > 0.5
    model, _ = _load(out, "ner")
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    assert labels == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_qa_trains_and_reloads(tmp_path, tiny_checkpoints, arch):
    base = tiny_checkpoints(arch, "base")
    tr = toydata.write_squad(tmp_path / "train.json", repeat=4)
    dev = toydata.write_squad(tmp_path / "dev.json", repeat=1)
    summary, out = _train(tmp_path, base, "qa", "squad", tr, dev, epochs=8, max_length=24, doc_stride=8)
    _assert_learned(summary)
    model, _ = _load(out, "qa")
    assert model.config.model_type == arch


def test_multilabel_head(tmp_path, tiny_checkpoints):
    base = tiny_checkpoints("bert", "base")
    tr = toydata.write_multilabel(tmp_path / "train.txt", 48)
    dev = toydata.write_multilabel(tmp_path / "dev.txt", 16, seed=1)
    summary, out = _train(tmp_path, base, "classify", "multilabel", tr, dev)
    _assert_learned(summary)
    assert summary["problem_type"] == "multi_label_classification"
    assert summary["metric"] == "micro_f1" and summary["best"] > 0.8
    model, _ = _load(out, "classify")
    assert model.config.problem_type == "multi_label_classification"
    assert sorted(model.config.label2id) == ["city", "good", "none"]


def test_regression_head_on_pairs(tmp_path, tiny_checkpoints):
    base = tiny_checkpoints("bert", "base")
    tr = toydata.write_regression(tmp_path / "train.jsonl", 64)
    dev = toydata.write_regression(tmp_path / "dev.jsonl", 16, seed=1)
    summary, out = _train(tmp_path, base, "classify", "jsonl", tr, dev, epochs=8)
    _assert_learned(summary)
    assert summary["problem_type"] == "regression" and summary["metric"] == "pearson"
    model, _ = _load(out, "classify")
    assert model.config.problem_type == "regression" and model.config.num_labels == 1


def test_reload_gives_the_same_dev_metric(tmp_path, tiny_checkpoints, capsys):
    """Acceptance 3 in small: `berth eval` on the saved checkpoint repeats the best epoch's figures."""
    from service.cli import main

    base = tiny_checkpoints("bert", "base")
    tr = toydata.write_conll(tmp_path / "train.txt", repeat=4)
    dev = toydata.write_conll(tmp_path / "dev.txt", repeat=1)
    # Few epochs at a modest rate, so the metric is not trivially 1.0 and drift would show.
    summary, out = _train(tmp_path, base, "ner", "conll", tr, dev, epochs=3, lr=1e-3)
    best = next(e for e in summary["epochs"] if e["epoch"] == summary["best_epoch"])["dev"]
    capsys.readouterr()
    assert main(["eval", "ner", "--checkpoint", str(out), "--data", str(dev)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["f1"] == pytest.approx(best["f1"], abs=1e-9)
    assert printed["precision"] == pytest.approx(best["precision"], abs=1e-9)


def test_same_seed_same_run_other_seed_other_run(tmp_path, tiny_checkpoints):
    base = tiny_checkpoints("bert", "base")
    tr = toydata.write_sst(tmp_path / "train.txt", 24)
    runs = [_train(tmp_path / str(i), base, "classify", "sst2", tr, tr, epochs=2, seed=seed)[0]
            for i, seed in enumerate((7, 7, 8))]
    losses = [[e["train_loss"] for e in run["epochs"]] for run in runs]
    assert losses[0] == losses[1]
    assert losses[0] != losses[2]


def test_existing_output_is_replaced_whole(tmp_path, tiny_checkpoints):
    base = tiny_checkpoints("bert", "base")
    tr = toydata.write_sst(tmp_path / "train.txt", 16)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "stale.bin").write_text("old run")
    _, out = _train(tmp_path, base, "classify", "sst2", tr, tr, epochs=1)
    assert not (out / "stale.bin").exists()
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
