"""`berth train mlm` end to end on a toy corpus: from scratch (vocabulary trained) and continued
from a checkpoint; then fine-tuned with the model/ heads, exported and served by /classify."""

from __future__ import annotations

import json
import random

import pytest

pytest.importorskip("torch")

from service.cli import main  # noqa: E402
from tests.model import toydata  # noqa: E402


def _corpus(path, n: int, seed: int = 0):
    """Short sentences in the toy vocabulary: sentiment lines and NER sentences, shuffled."""
    rng = random.Random(seed)
    lines = [text for text, _ in toydata.sentiment_lines(n, seed)]
    lines += [" ".join(words) for words, _ in toydata.NER_SENTENCES] * (n // 12)
    rng.shuffle(lines)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return _corpus(root / "train.txt", 400), _corpus(root / "dev.txt", 60, seed=1)


def _mlm(out, corpus, *extra: str) -> dict:
    train, dev = corpus
    rc = main(["train", "mlm", "--train", str(train), "--dev", str(dev), "--out", str(out),
               "--batch-size", "32", "--threads", "1", "--max-length", "32", *extra])
    assert rc == 0
    return json.loads((out / "berth_pretrain.json").read_text())


@pytest.fixture(scope="module")
def pretrained(corpus, tmp_path_factory):
    """Tiny BERT, ALBERT and TextCNN pretrained from scratch (the vocabulary trained once, by BERT)."""
    root = tmp_path_factory.mktemp("pretrained")
    out = {"bert": (root / "bert", _mlm(root / "bert", corpus, "--arch", "bert", "--size", "tiny",
                                        "--vocab-size", "120", "--epochs", "6", "--lr", "2e-3"))}
    for arch in ("albert", "textcnn"):
        out[arch] = (root / arch, _mlm(root / arch, corpus, "--arch", arch, "--size", "tiny", "--epochs", "6",
                                       "--tokenizer", str(root / "bert"), "--lr", "2e-3", "--whole-word"))
    return out


@pytest.mark.parametrize("arch", ["bert", "albert", "textcnn"])
def test_pretraining_from_scratch_learns_the_corpus(pretrained, arch):
    path, summary = pretrained[arch]
    assert summary["model_type"] == arch and summary["origin"]["from"] == "scratch"
    epochs = summary["epochs"]
    assert len(epochs) == 6 and summary["stopped_by"] == "epochs"
    # Far below the uniform guess over the vocabulary (ln 120 = 4.8) and still falling.
    assert epochs[-1]["dev"]["loss"] < 0.7 * epochs[0]["dev"]["loss"], epochs
    assert epochs[-1]["dev"]["accuracy"] > 0.2
    tokenizer = json.loads((path / "tokenizer.json").read_text())
    assert tokenizer["model"]["type"] == "WordPiece" and tokenizer["padding"] is None
    assert tokenizer["normalizer"]["type"] == "BertNormalizer" and tokenizer["normalizer"]["lowercase"]
    assert summary["command"].startswith("berth train mlm --train ")
    assert summary["vocab_size"] <= 120


def test_trained_vocabulary_is_shared_when_reused(pretrained):
    bert = json.loads((pretrained["bert"][0] / "tokenizer.json").read_text())["model"]["vocab"]
    textcnn = json.loads((pretrained["textcnn"][0] / "tokenizer.json").read_text())["model"]["vocab"]
    assert bert == textcnn and list(bert)[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def test_continued_pretraining_from_a_checkpoint(tiny_checkpoints, corpus, tmp_path):
    """Domain adaptation: the checkpoint's tokenizer and encoder weights are the starting point."""
    from safetensors.torch import load_file

    base = tiny_checkpoints("bert", "base")
    summary = _mlm(tmp_path / "adapted", corpus, "--base", str(base), "--epochs", "2", "--lr", "1e-3")
    assert summary["origin"] == {"from": "checkpoint", "base": str(base)}
    assert (tmp_path / "adapted" / "tokenizer.json").read_text() == (base / "tokenizer.json").read_text()
    before = load_file(base / "model.safetensors")["embeddings.word_embeddings.weight"]
    after = load_file(tmp_path / "adapted" / "model.safetensors")["bert.embeddings.word_embeddings.weight"]
    assert before.shape == after.shape and 0 < (after - before).abs().max() < 0.1  # moved, not replaced
    assert summary["epochs"][-1]["dev"]["loss"] < summary["epochs"][0]["dev"]["loss"]


def test_zero_epochs_writes_the_random_initialisation(pretrained, corpus, tmp_path):
    summary = _mlm(tmp_path / "random", corpus, "--arch", "textcnn", "--size", "tiny", "--epochs", "0",
                   "--tokenizer", str(pretrained["bert"][0]))
    assert summary["steps"] == 0 and summary["epochs"] == [] and "random" in summary["stopped_by"]
    assert (tmp_path / "random" / "model.safetensors").is_file()


def test_time_budget_stops_the_run(pretrained, corpus, tmp_path):
    summary = _mlm(tmp_path / "budget", corpus, "--arch", "textcnn", "--size", "tiny", "--epochs", "1000",
                   "--max-minutes", "0.03", "--tokenizer", str(pretrained["bert"][0]))
    assert summary["stopped_by"] == "time budget"
    assert summary["train_seconds"] < 0.03 * 60 + 2
    assert summary["steps"] < 1000 * 13


@pytest.mark.parametrize("arch", ["bert", "albert", "textcnn"])
def test_set_dropout_makes_training_mode_deterministic(arch):
    """Every dropout of the backbone, attention's included, follows the rate set for pretraining."""
    import torch
    from transformers import AutoModelForMaskedLM

    from model.heads import register_architectures
    from model.pretrain.backbones import build_config
    from model.pretrain.mlm import set_dropout

    register_architectures()
    config = build_config(arch, "tiny", vocab_size=50, overrides={"hidden_dropout_prob": 0.5})
    attention = {} if arch == "textcnn" else {"attn_implementation": "eager"}  # dropout on the probabilities
    model = AutoModelForMaskedLM.from_config(config, **attention)
    model.train()
    ids = torch.randint(5, 50, (2, 12))
    assert not torch.equal(model(input_ids=ids).logits, model(input_ids=ids).logits)
    assert set_dropout(model, 0.0) >= config.num_hidden_layers
    assert torch.equal(model(input_ids=ids).logits, model(input_ids=ids).logits)
    assert model.config.hidden_dropout_prob == 0.5  # the config, hence fine-tuning, keeps its rate


def test_pretraining_without_dropout_keeps_the_configured_rates(pretrained, corpus, tmp_path):
    summary = _mlm(tmp_path / "nodrop", corpus, "--arch", "textcnn", "--size", "tiny", "--epochs", "1",
                   "--dropout", "0", "--tokenizer", str(pretrained["bert"][0]))
    assert summary["args"]["dropout"] == 0.0 and summary["origin"]["dropout_modules_set"] >= 2
    assert "--dropout 0.0" in summary["command"]
    config = json.loads((tmp_path / "nodrop" / "config.json").read_text())
    assert config["hidden_dropout_prob"] == 0.1
    with pytest.raises(ValueError, match="--dropout must be in"):
        from model.pretrain.mlm import MLMConfig, pretrain

        pretrain(MLMConfig(train=str(corpus[0]), out=str(tmp_path / "bad"), dropout=1.0))


def _torch_scores(checkpoint, texts: list[str]) -> list[dict[str, float]]:
    import torch

    from model.heads import labels_of, load_checkpoint

    model, tokenizer = load_checkpoint(checkpoint, "classify")
    with torch.no_grad():
        probs = [model(**tokenizer(t, return_tensors="pt")).logits.softmax(-1)[0].tolist() for t in texts]
    return [dict(zip(labels_of(model), row, strict=True)) for row in probs]


@pytest.mark.parametrize("arch", ["textcnn", "albert"])
async def test_pretrained_backbone_fine_tunes_exports_and_serves(pretrained, arch, tmp_path):
    """Acceptance 2 and the TextCNN bundle in small: pretrain -> fine-tune -> bundle -> /classify."""
    from export.bundle import export_bundle
    from model.train import TrainConfig, train
    from service.manifest import load_manifest
    from service.registry import ort_runtime_factory
    from service.settings import Settings
    from tests.service.conftest import serve_in_process

    tr = toydata.write_sst(tmp_path / "train.txt", 64)
    dev = toydata.write_sst(tmp_path / "dev.txt", 16, seed=1)
    cfg = TrainConfig(task="classify", base=str(pretrained[arch][0]), train=str(tr), dev=str(dev),
                      out=str(tmp_path / "ckpt"), format="sst2", epochs=8, batch_size=8, lr=3e-3,
                      warmup_ratio=0.0, threads=1, max_length=32)
    summary = train(cfg, log=lambda msg: None)
    if arch == "textcnn":
        # The sentiment word decides the label. (The toy corpus puts good/great/bad/awful in the
        # same contexts, so MLM makes them near-synonyms and ALBERT cannot tell them apart again
        # in 8 epochs: its figure is not a measure of anything, the real one is in the docs.)
        assert summary["best"] >= 0.9, summary["epochs"]

    models = tmp_path / "models"
    gate = [text for text, _ in toydata.sentiment_lines(32, seed=5)]
    bundle = export_bundle(tmp_path / "ckpt", "classify", "sent", models, precisions=("fp32", "int8"),
                           gate_texts=gate, quick_bench=False)
    manifest = load_manifest(bundle)
    assert manifest.architecture == arch and manifest.inputs[:2] == ["input_ids", "attention_mask"]
    if arch == "textcnn":
        assert manifest.num_heads == 0 and set(manifest.variants) == {"fp32", "int8"}
        assert not (bundle / "model.fused.onnx").exists()
        assert manifest.variants["fp32"].default_for == ["cpu", "cuda"]
        assert "not applicable" in manifest.variants["fp32"].details["fusion"]
    else:
        assert manifest.num_heads == 2 and "fp32-fused" in manifest.variants
    assert manifest.variants["fp32"].parity["max_abs_diff"] <= 1e-4

    texts = ["the movie was great", "the plot was awful", "a bad film"]
    settings = Settings(models_dir=models, precision="fp32", provider="cpu")
    async with serve_in_process(settings, ort_runtime_factory) as (_, client):
        reply = await client.post("/classify", json={"inputs": texts})
        alone = await client.post("/classify", json={"inputs": texts[1]})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model"] == "sent"
    for got, want in zip(body["results"], _torch_scores(tmp_path / "ckpt", texts), strict=True):
        assert {r["label"]: r["score"] for r in got} == pytest.approx(want, abs=1e-5)
    if arch == "textcnn":
        assert [r[0]["label"] for r in body["results"]] == ["positive", "negative", "negative"], body
    # Batched and alone agree.
    for a, b in zip(alone.json()["results"][0], body["results"][1], strict=True):
        assert a["label"] == b["label"] and a["score"] == pytest.approx(b["score"], abs=1e-5)


def test_sst2_study_scores_each_arm_at_its_own_best_recipe(pretrained, tmp_path):
    """model.pretrain.study sst2: every (seed, lr, layer decay, arm) run happens once, and each
    arm's figure is its own best recipe's mean, not a recipe chosen for the other arm."""
    import argparse

    from model.pretrain.study import sst2_study

    train = toydata.write_sst(tmp_path / "train.txt", 48)
    dev = toydata.write_sst(tmp_path / "dev.txt", 16, seed=1)
    args = argparse.Namespace(pretrained=str(pretrained["bert"][0]), train=str(train), dev=str(dev),
                              out=str(tmp_path / "study"), seeds=[1, 2], lrs=[1e-4, 3e-3], epochs=2,
                              layer_lr_decays=[1.0, 0.5], batch_size=8, max_length=32, threads=1,
                              keep_checkpoints=False)
    result = sst2_study(args, log=lambda msg: None)
    recipes = [(lr, d) for lr in (1e-4, 3e-3) for d in (1.0, 0.5)]
    assert sorted((r["seed"], r["lr"], r["layer_lr_decay"], r["arm"]) for r in result["runs"]) == sorted(
        (s, lr, d, arm) for s in (1, 2) for lr, d in recipes for arm in ("pretrained", "random"))
    assert set(result["grid"]["random"]) == {"0.0001", "0.0001 decay 0.5", "0.003", "0.003 decay 0.5"}
    for arm, figures in result["arms"].items():
        means = {(cell["lr"], cell["layer_lr_decay"]): cell["mean"] for cell in result["grid"][arm].values()}
        assert (figures["lr"], figures["layer_lr_decay"]) == max(means, key=means.get)
        assert figures["mean"] == max(means.values())
        at_best = [r["best_dev_accuracy"] for r in result["runs"] if r["arm"] == arm
                   and (r["lr"], r["layer_lr_decay"]) == (figures["lr"], figures["layer_lr_decay"])]
        assert figures["mean"] == pytest.approx(sum(at_best) / 2)
    # The decay reached training: its runs' commands carry it.
    for run in result["runs"]:
        assert ("--layer-lr-decay 0.5" in run["command"]) == (run["layer_lr_decay"] == 0.5)
    assert result["gain_points"] == round(100 * (result["arms"]["pretrained"]["mean"]
                                                 - result["arms"]["random"]["mean"]), 2)
    assert json.loads((tmp_path / "study" / "study.json").read_text())["arms"] == result["arms"]
    assert not [p.name for p in (tmp_path / "study").iterdir() if p.is_dir()]  # checkpoints removed


def test_mlm_refuses_an_out_directory_that_is_not_a_checkpoint(tmp_path):
    from model.pretrain.mlm import MLMConfig, pretrain

    data = tmp_path / "data"
    data.mkdir()
    (data / "train.txt").write_text("a line of text\nanother line\n")
    with pytest.raises(ValueError, match="--out must be a new or empty directory"):
        pretrain(MLMConfig(train=str(data / "train.txt"), out=str(data), epochs=0), log=lambda m: None)
    assert (data / "train.txt").read_text().startswith("a line")  # nothing was touched
