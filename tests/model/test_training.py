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
    (tmp_path / "out" / SUMMARY_NAME).write_text("{}")  # a previous berth checkpoint
    (tmp_path / "out" / "stale.bin").write_text("old run")
    _, out = _train(tmp_path, base, "classify", "sst2", tr, tr, epochs=1)
    assert not (out / "stale.bin").exists()
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()


def _models_for_layer_decay():
    """(name, classification model, encoder layers) for every architecture berth trains."""
    from transformers import AutoModelForSequenceClassification

    from model.heads import register_architectures
    from model.textcnn import TextCNNConfig
    from tests.tiny import tiny_config, tiny_vocab

    register_architectures()
    for arch in ARCHITECTURES:
        yield arch, AutoModelForSequenceClassification.from_config(tiny_config(arch)), 2
    textcnn = TextCNNConfig(vocab_size=len(tiny_vocab()), embedding_size=16, hidden_size=24,
                            num_hidden_layers=3)
    yield "textcnn", AutoModelForSequenceClassification.from_config(textcnn), 3


def test_layer_lr_decay_lowers_the_rate_from_the_head_down_to_the_embeddings():
    """adamw(layer_lr_decay=d): the head at the full rate, the top layer at lr*d, each layer below
    another factor d, the embeddings lowest; ALBERT's one shared layer group is a single depth."""
    from model.train import adamw, parameter_depths

    for arch, model, layers in _models_for_layer_decay():
        optimizer = adamw(model, 1e-3, 0.01, layer_lr_decay=0.5)
        lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
        depth = parameter_depths(model)
        top = 2 if arch == "albert" else layers + 1
        for name, param in model.named_parameters():
            if "embedding" in name:
                want = 0
            elif "classifier" in name or "pre_classifier" in name or "pooler" in name:
                want = top
            else:
                want = None  # an encoder layer: between the two
            assert want is None or depth[name] == want, (arch, name, depth[name])
            assert 0 < depth[name] <= top or want == 0, (arch, name)
            assert lr_of[id(param)] == pytest.approx(1e-3 * 0.5 ** (top - depth[name])), (arch, name)
        assert {depth[n] for n, _ in model.named_parameters()} == set(range(top + 1)), arch
        # Weight decay still skips biases and LayerNorm weights in every depth's group.
        for group in optimizer.param_groups:
            assert group["weight_decay"] == (0.01 if group["params"][0].ndim >= 2 else 0.0)
        one_rate = adamw(model, 1e-3, 0.01)
        assert {group["lr"] for group in one_rate.param_groups} == {1e-3}
    with pytest.raises(ValueError, match="layer_lr_decay"):
        adamw(model, 1e-3, 0.01, layer_lr_decay=0.0)
