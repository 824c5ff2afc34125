"""`berth train` / `berth eval` refuse bad settings up front, leave no debris, and evaluate a
checkpoint with the settings it was trained with."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from model.train import SUMMARY_NAME, TrainConfig, train
from service.cli import main
from tests.model import toydata

FAST = dict(epochs=1, batch_size=8, lr=3e-3, warmup_ratio=0.0, eval_batch_size=16, threads=1)


def _cfg(tmp_path, base, out, **overrides):
    tr = toydata.write_sst(tmp_path / "train.sst", 16)
    return TrainConfig(task="classify", base=str(base), train=str(tr), dev=str(tr), out=str(out),
                       format="sst2", **{**FAST, **overrides})


def _cli_train(base, out, *extra, train_file="missing-train.sst", task="classify"):
    return main(["train", task, "--base", str(base), "--train", str(train_file), "--dev", str(train_file),
                 "--out", str(out), "--format", "sst2" if task == "classify" else "squad", *extra])


# 1. --out that holds something else is refused before training, not deleted.

def test_out_holding_other_files_is_refused_and_kept(tmp_path, tiny_checkpoints, capsys):
    base = tiny_checkpoints("bert", "base")
    data = tmp_path / "data"
    data.mkdir()
    tr = toydata.write_sst(data / "train.sst", 16)
    (data / "NOTES.txt").write_text("my notes")
    capsys.readouterr()
    rc = main(["train", "classify", "--base", str(base), "--train", str(tr), "--dev", str(tr),
               "--out", str(data), "--epochs", "1", "--threads", "1"])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("berth train classify: --out ") and str(data) in err and "\n" not in err
    assert sorted(p.name for p in data.iterdir()) == ["NOTES.txt", "train.sst"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_out_that_is_a_file_is_refused(tmp_path, tiny_checkpoints):
    out = tmp_path / "out"
    out.write_text("not a directory")
    with pytest.raises(ValueError, match="--out"):
        train(_cfg(tmp_path, tiny_checkpoints("bert", "base"), out), log=lambda msg: None)
    assert out.read_text() == "not a directory"


def test_empty_out_directory_is_fine(tmp_path, tiny_checkpoints):
    out = tmp_path / "out"
    out.mkdir()
    train(_cfg(tmp_path, tiny_checkpoints("bert", "base"), out), log=lambda msg: None)
    assert (out / SUMMARY_NAME).is_file()


# 2. --max-minutes is an mlm option only.

def test_max_minutes_is_refused_for_fine_tuning(tmp_path, tiny_checkpoints, capsys):
    base = tiny_checkpoints("bert", "base")
    capsys.readouterr()
    rc = _cli_train(base, tmp_path / "out", "--max-minutes", "0.05")
    assert rc == 2
    assert capsys.readouterr().err.strip() == "berth train classify: --max-minutes is only for mlm"


# 4. Bad numbers fail at once (before the data is read: the train file here does not exist).

@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--epochs", "-1"], "--epochs must be at least 1"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--eval-batch-size", "0"], "--eval-batch-size must be at least 1"),
    (["--threads", "-1"], "--threads must be at least 1"),
    (["--lr", "0"], "--lr must be above 0"),
    (["--lr", "-1"], "--lr must be above 0"),
    (["--max-length", "1"], "--max-length must be at least 3"),
    (["--max-length", "2"], "--max-length must be at least 3"),
    (["--max-length", "400"], "--max-length must be at most 128"),
    (["--layer-lr-decay", "0"], "--layer-lr-decay must be in (0, 1]"),
])
def test_bad_numbers_fail_up_front(tmp_path, tiny_checkpoints, capsys, args, message):
    base = tiny_checkpoints("bert", "base")
    capsys.readouterr()
    assert _cli_train(base, tmp_path / "out", *args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"berth train classify: {message}") and "\n" not in err


@pytest.mark.parametrize("args, message", [
    (["--max-length", "4"], "--max-length must be at least 8 for qa"),
    (["--max-length", "64", "--doc-stride", "32"], "--doc-stride must be at least 0 and under half"),
])
def test_qa_needs_more_room(tmp_path, tiny_checkpoints, capsys, args, message):
    base = tiny_checkpoints("bert", "base")
    capsys.readouterr()
    assert _cli_train(base, tmp_path / "out", *args, task="qa") == 2
    assert capsys.readouterr().err.strip().startswith(f"berth train qa: {message}")


def test_base_must_be_a_checkpoint(tmp_path, capsys):
    for base in (tmp_path / "nonexistent", tmp_path):
        assert _cli_train(base, tmp_path / "out") == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("berth train classify: --base must be a checkpoint directory with a "
                              "config.json")


def test_usable_positions_follow_the_exporter():
    from model.heads import usable_positions

    assert usable_positions({"model_type": "bert", "max_position_embeddings": 512}) == 512
    roberta = {"model_type": "roberta", "max_position_embeddings": 514, "pad_token_id": 1}
    assert usable_positions(roberta) == 512
    assert usable_positions({"model_type": "textcnn"}) is None


def test_roberta_base_allows_its_usable_maximum_only(tmp_path, tiny_checkpoints):
    from model.heads import usable_positions

    base = tiny_checkpoints("roberta", "base")
    usable = usable_positions(json.loads((base / "config.json").read_text()))
    with pytest.raises(ValueError, match=f"--max-length must be at most {usable}"):
        train(_cfg(tmp_path, base, tmp_path / "out", max_length=usable + 1), log=lambda msg: None)
    train(_cfg(tmp_path, base, tmp_path / "out", max_length=usable), log=lambda msg: None)


# 6. SIGTERM cleans up like Ctrl-C; partials of dead runs are swept.

class _Unhandled(Exception):
    pass


def _unhandled(signum, frame):
    raise _Unhandled("train() did not handle SIGTERM")


def test_sigterm_removes_the_partial_checkpoint(tmp_path, tiny_checkpoints):
    # A handler of the test's own, so that a regression fails here instead of killing pytest.
    before = signal.signal(signal.SIGTERM, _unhandled)

    def log(msg):
        if msg.startswith("epoch 1:"):
            os.kill(os.getpid(), signal.SIGTERM)

    out = tmp_path / "runs" / "mine"
    out.parent.mkdir()
    try:
        with pytest.raises(SystemExit) as exc:
            train(_cfg(tmp_path, tiny_checkpoints("bert", "base"), out, epochs=3), log=log)
        assert exc.value.code == 128 + signal.SIGTERM
        assert list(out.parent.iterdir()) == []
        assert signal.getsignal(signal.SIGTERM) is _unhandled  # restored afterwards
    finally:
        signal.signal(signal.SIGTERM, before)


def test_stale_partials_of_dead_runs_are_removed(tmp_path, tiny_checkpoints):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".out.partial-{dead.pid}"
    stale.mkdir()
    (stale / "model.safetensors").write_text("half written")
    live = tmp_path / f".out.partial-{os.getppid()}"  # a process that is alive: left alone
    live.mkdir()
    train(_cfg(tmp_path, tiny_checkpoints("bert", "base"), tmp_path / "out"), log=lambda msg: None)
    assert not stale.exists() and live.exists()


# 3. `berth eval` defaults to the checkpoint's trained settings, and to the data file's format.

@pytest.fixture
def trained_checkpoint(tmp_path, tiny_checkpoints):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoints("bert", "classify"), ckpt)  # labels negative / positive
    (ckpt / SUMMARY_NAME).write_text(json.dumps(
        {"args": {"format": "sst2", "threshold": 0.2, "max_length": 32, "doc_stride": 16}}))
    return ckpt


def _capture_eval(monkeypatch):
    import model.evaluate

    seen = {}

    def fake(task, model, tokenizer, examples, **options):
        seen.update(options, examples=len(examples))
        return {"metric": "accuracy", "main": 1.0}

    monkeypatch.setattr(model.evaluate, "evaluate", fake)
    return seen


def test_eval_uses_trained_threshold_and_the_jsonl_extension(tmp_path, trained_checkpoint, monkeypatch):
    seen = _capture_eval(monkeypatch)
    data = tmp_path / "dev2.jsonl"
    data.write_text('{"text": "good", "label": "positive"}\n{"text": "bad", "label": "negative"}\n')
    assert main(["eval", "classify", "--checkpoint", str(trained_checkpoint), "--data", str(data)]) == 0
    assert seen == {"threshold": 0.2, "max_length": 32, "doc_stride": 16, "batch_size": 64, "examples": 2}
    assert main(["eval", "classify", "--checkpoint", str(trained_checkpoint), "--data", str(data),
                 "--threshold", "0.7", "--doc-stride", "0"]) == 0
    assert seen["threshold"] == 0.7 and seen["doc_stride"] == 0


def test_eval_keeps_trained_format_for_generic_names(tmp_path, trained_checkpoint, monkeypatch):
    seen = _capture_eval(monkeypatch)
    data = toydata.write_sst(tmp_path / "dev.txt", 8)  # no "sst" in the name: guess would be multilabel
    assert main(["eval", "classify", "--checkpoint", str(trained_checkpoint), "--data", str(data)]) == 0
    assert seen["examples"] > 0


def test_eval_format_choice():
    from model.cli import _eval_format
    from model.data import guess_format

    assert _eval_format("classify", "dev2.jsonl", "sst2", guess_format) == "jsonl"
    assert _eval_format("classify", "dev.txt", "sst5", guess_format) == "sst5"
    assert _eval_format("classify", "sst_dev.txt", "sst5", guess_format) == "sst5"
    assert _eval_format("classify", "sst_dev.txt", "multilabel", guess_format) == "sst2"
    assert _eval_format("ner", "dev.txt", "jsonl", guess_format) == "jsonl"
    assert _eval_format("ner", "wikiann_dev.txt", "conll", guess_format) == "wikiann"
    assert _eval_format("qa", "dev.json", None, guess_format) == "squad"
