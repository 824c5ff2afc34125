"""`--augment typos` keeps NER tags and QA answer offsets aligned through tokenization, and
`berth eval --attack typos` reports clean and attacked figures side by side."""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("torch")

from model.data import read_examples  # noqa: E402
from model.features import encode_ner, encode_qa  # noqa: E402
from model.typos import attack_examples  # noqa: E402
from service.cli import main  # noqa: E402
from tests.model import toydata  # noqa: E402
from tests.tiny import NER_LABELS, minilm_tokenizer  # noqa: E402


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=minilm_tokenizer(), unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


def test_attacked_ner_features_label_each_word_with_its_own_tag(tmp_path, tokenizer):
    examples = read_examples(toydata.write_conll(tmp_path / "ner.txt", repeat=3), "conll", "ner")
    label2id = {t: i for i, t in enumerate(NER_LABELS)}
    noisy = attack_examples(examples, seed=1, rate=1.0)
    assert any(a.tokens != b.tokens for a, b in zip(examples, noisy, strict=True))
    for pieces in ("first", "all"):
        for ex, feature in zip(noisy, encode_ner(tokenizer, noisy, label2id, 64, pieces), strict=True):
            words = feature["word_ids"]
            assert max(words) == len(ex.tokens) - 1  # every word still there, none split off or merged
            firsts = [i for i, w in enumerate(words) if w >= 0 and (i == 0 or words[i - 1] != w)]
            assert [feature["labels"][i] for i in firsts] == [label2id[t] for t in ex.tags]


def test_attacked_qa_features_point_at_the_attacked_answer(tmp_path, tokenizer):
    examples = read_examples(toydata.write_squad(tmp_path / "qa.json", repeat=2), "squad", "qa")
    noisy = attack_examples(examples, seed=2, rate=1.0)
    assert any(a.context != b.context for a, b in zip(examples, noisy, strict=True))
    features, windows = encode_qa(tokenizer, noisy, max_length=48, doc_stride=8)
    located = 0
    for feature, window in zip(features, windows, strict=True):
        ex = noisy[window.example_index]
        s, e = feature["start_positions"], feature["end_positions"]
        if s == 0:
            continue
        located += 1
        span = ex.context[window.offsets[s][0] : window.offsets[e][1]]
        assert span == ex.answers[0].text, (span, ex.answers[0])
    assert located >= len(examples)


def test_training_with_augmentation_draws_fresh_typos_each_epoch(tmp_path, tiny_checkpoints):
    from model.train import TrainConfig, train

    tr = toydata.write_conll(tmp_path / "train.txt", repeat=4)
    dev = toydata.write_conll(tmp_path / "dev.txt", repeat=1)
    cfg = TrainConfig(task="ner", base=str(tiny_checkpoints("bert", "base")), train=str(tr), dev=str(dev),
                      out=str(tmp_path / "out"), format="conll", epochs=8, batch_size=8, lr=3e-3,
                      warmup_ratio=0.0, threads=1, label_pieces="all", augment="typos=0.5")
    summary = train(cfg, log=lambda msg: None)
    noise = [e["augment"] for e in summary["epochs"]]
    assert all(n["rate"] == 0.5 and n["eligible_words"] == noise[0]["eligible_words"] for n in noise)
    assert all(0.35 < n["perturbed_words"] / n["eligible_words"] < 0.65 for n in noise)
    assert len({json.dumps(n["kinds"], sort_keys=True) for n in noise}) > 1  # a new draw per epoch
    assert "--augment typos=0.5" in summary["command"]
    # Still learns through the noise.
    assert summary["epochs"][-1]["train_loss"] < 0.8 * summary["epochs"][0]["train_loss"]


def test_keep_clean_trains_on_the_clean_set_plus_an_attacked_copy(tmp_path, tiny_checkpoints):
    from model.train import TrainConfig, train

    tr = toydata.write_sst(tmp_path / "train.txt", 24)
    common = dict(task="classify", base=str(tiny_checkpoints("bert", "base")), train=str(tr), dev=str(tr),
                  format="sst2", epochs=2, batch_size=8, threads=1)
    plain = train(TrainConfig(**common, out=str(tmp_path / "a"), augment="typos=1"), log=lambda m: None)
    both = train(TrainConfig(**common, out=str(tmp_path / "b"), augment="typos=1,keep-clean"),
                 log=lambda m: None)
    for run, expected in ((plain, 24), (both, 48)):
        assert [epoch["texts"] for epoch in run["epochs"]] == [expected, expected]
    assert both["epochs"][0]["augment"]["keep_clean"] is True
    # The attacked copy is the same draw either way: the clean half is added, not substituted.
    assert both["epochs"][0]["augment"]["kinds"] == plain["epochs"][0]["augment"]["kinds"]


def test_keep_clean_epochs_hold_each_clean_sentence_and_its_attacked_twin(tmp_path, tiny_checkpoints,
                                                                          monkeypatch):
    """What each keep-clean epoch trains on: every clean NER sentence untouched, then an attacked
    copy of each with the same tags, drawn afresh per epoch."""
    import model.train as training

    encoded = []  # the examples behind every _encode call, in order
    real_encode = training._encode

    def recording_encode(cfg, tokenizer, examples, *rest):
        encoded.append(list(examples))
        return real_encode(cfg, tokenizer, examples, *rest)

    monkeypatch.setattr(training, "_encode", recording_encode)
    tr = toydata.write_conll(tmp_path / "train.txt", repeat=2)
    clean = read_examples(tr, "conll", "ner")
    cfg = training.TrainConfig(task="ner", base=str(tiny_checkpoints("bert", "base")), train=str(tr),
                               dev=str(tr), out=str(tmp_path / "out"), format="conll", epochs=2,
                               batch_size=8, threads=1, seed=7, augment="typos=1,keep-clean")
    summary = training.train(cfg, log=lambda m: None)

    assert encoded[0] == clean  # the initial encoding, before any epoch
    per_epoch = encoded[1:]
    assert len(per_epoch) == 2
    n = len(clean)
    for epoch, examples in enumerate(per_epoch, start=1):
        assert len(examples) == 2 * n
        assert examples[:n] == clean  # the clean half is exactly the training set
        twins = examples[n:]
        assert twins == attack_examples(clean, seed=7, rate=1.0, epoch=epoch)
        for twin, original in zip(twins, clean, strict=True):
            assert twin.tags == original.tags and len(twin.tokens) == len(original.tokens)
            for noisy, word in zip(twin.tokens, original.tokens, strict=True):
                longest_letter_run = max((len(run) for run in re.findall(r"[^\W\d_]+", word)), default=0)
                if longest_letter_run >= 4:
                    assert noisy != word  # rate 1: every eligible word is misspelt
                else:
                    assert noisy == word  # too short to attack: left alone
    assert per_epoch[0][n:] != per_epoch[1][n:]  # fresh typos each epoch
    assert [e["texts"] for e in summary["epochs"]] == [2 * n, 2 * n]
    assert all(e["augment"]["keep_clean"] for e in summary["epochs"])


def test_train_refuses_an_unknown_augmentation(tmp_path, tiny_checkpoints, capsys):
    tr = toydata.write_sst(tmp_path / "sst_train.txt", 8)
    rc = main(["train", "classify", "--base", str(tiny_checkpoints("bert", "base")), "--train", str(tr),
               "--dev", str(tr), "--out", str(tmp_path / "out"), "--augment", "typos=2"])
    assert rc == 2 and "--augment" in capsys.readouterr().err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("task", ["ner", "classify", "qa"])
def test_eval_attack_reports_clean_attacked_and_drop(task, tmp_path, tiny_checkpoints, capsys):
    data = {"ner": lambda: toydata.write_conll(tmp_path / "dev.txt", repeat=1),
            "classify": lambda: toydata.write_sst(tmp_path / "sst_dev.txt", 16),
            "qa": lambda: toydata.write_squad(tmp_path / "dev.json", repeat=1)}[task]()
    args = ["eval", task, "--checkpoint", str(tiny_checkpoints("bert", task)), "--data", str(data),
            "--threads", "1"]
    assert main(args) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main([*args, "--attack", "typos", "--attack-seed", "3"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["clean"] == plain  # the clean half is the ordinary evaluation
    assert report["attacked"]["examples"] == plain["examples"]
    clean, attacked = report["clean"]["main"], report["attacked"]["main"]
    assert report["absolute_drop"] == pytest.approx(clean - attacked, abs=1e-4)
    if clean:
        assert report["relative_drop"] == pytest.approx((clean - attacked) / clean, abs=1e-4)
    attack = report["attack"]
    assert attack["kind"] == "typos" and attack["seed"] == 3 and attack["rate"] == 1.0
    assert attack["perturbed_words"] == attack["eligible_words"] > 0
    assert sum(attack["kinds"].values()) == attack["perturbed_words"]
    assert main([*args, "--attack", "typos", "--attack-seed", "3"]) == 0
    assert json.loads(capsys.readouterr().out) == report  # deterministic under the seed
