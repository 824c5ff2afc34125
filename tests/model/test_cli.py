"""`berth train` / `berth eval` from the command line: success path and clear failures."""

from __future__ import annotations

import json

from service.cli import main
from tests.model import toydata


def test_train_then_eval_from_the_cli(tmp_path, tiny_checkpoints, capsys):
    base = tiny_checkpoints("distilbert", "base")
    tr = toydata.write_sst(tmp_path / "sst_train.txt", 32)
    dev = toydata.write_sst(tmp_path / "sst_dev.txt", 8, seed=2)
    out = tmp_path / "model"
    rc = main(["train", "classify", "--base", str(base), "--train", str(tr), "--dev", str(dev),
               "--out", str(out), "--epochs", "2", "--batch-size", "8", "--lr", "1e-3", "--threads", "1"])
    assert rc == 0
    summary = json.loads((out / "berth_train.json").read_text())
    assert summary["args"]["format"] == "sst2"  # guessed from the file name
    assert summary["command"].startswith(f"berth train classify --base {base} --train {tr}")
    assert "--epochs 2 --batch-size 8 --lr 0.001" in summary["command"]
    assert [e["epoch"] for e in summary["epochs"]] == [1, 2]
    assert {"torch", "transformers"} <= set(summary["versions"])
    capsys.readouterr()
    assert main(["eval", "classify", "--checkpoint", str(out), "--data", str(dev)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    best = summary["epochs"][summary["best_epoch"] - 1]["dev"]
    assert metrics["accuracy"] == best["accuracy"] and metrics["examples"] == 8


def test_malformed_data_fails_with_file_and_line(tmp_path, tiny_checkpoints, capsys):
    base = tiny_checkpoints("bert", "base")
    tr = tmp_path / "train.txt"
    tr.write_text("1 ||| fine\n4 ||| good\n9 ||| broken\n")
    rc = main(["train", "classify", "--base", str(base), "--train", str(tr), "--dev", str(tr),
               "--out", str(tmp_path / "out"), "--format", "sst2"])
    assert rc == 2
    assert f"{tr}:3: label must be 0..4" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_eval_reports_unseen_labels(tmp_path, tiny_checkpoints, capsys):
    ckpt = tiny_checkpoints("bert", "classify")  # labels negative / positive
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "good", "label": "positive"}\n{"text": "meh", "label": "neutral"}\n')
    assert main(["eval", "classify", "--checkpoint", str(ckpt), "--data", str(data)]) == 2
    assert f"'neutral' (first at {data}:2)" in capsys.readouterr().err
