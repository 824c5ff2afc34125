"""Training precision: `auto` follows the hardware, bf16 trains, and weights stay fp32."""

from __future__ import annotations

import pytest

from model import precision
from model.train import TrainConfig, train
from tests.model import toydata


def test_auto_follows_the_hardware(monkeypatch):
    monkeypatch.setattr(precision, "hardware_bf16", lambda: True)
    assert precision.resolve_precision("auto") == "bf16"
    assert precision.resolve_precision(None) == "bf16"
    monkeypatch.setattr(precision, "hardware_bf16", lambda: False)
    assert precision.resolve_precision("auto") == "fp32"
    # An explicit choice is honoured either way.
    assert precision.resolve_precision("bf16") == "bf16"
    assert precision.resolve_precision("fp32") == "fp32"


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision must be one of"):
        precision.resolve_precision("fp8")


def test_bf16_uses_eager_attention_and_autocasts_matmuls():
    import torch

    assert precision.attention_for("bf16") == "eager"
    assert precision.attention_for("fp32") == "sdpa"
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with precision.autocast("bf16"):
        assert (a @ b).dtype == torch.bfloat16
    with precision.autocast("fp32"):
        assert (a @ b).dtype == torch.float32


@pytest.mark.parametrize("mode", ["fp32", "bf16"])
def test_both_precisions_train_and_save_fp32_weights(tmp_path, tiny_checkpoints, mode):
    from model.heads import load_checkpoint

    base = tiny_checkpoints("bert", "base")
    tr = toydata.write_sst(tmp_path / "train.txt", 48)
    dev = toydata.write_sst(tmp_path / "dev.txt", 16, seed=1)
    cfg = TrainConfig(task="classify", base=str(base), train=str(tr), dev=str(dev), out=str(tmp_path / "out"),
                      format="sst2", epochs=12, batch_size=8, lr=3e-3, warmup_ratio=0.0, threads=1,
                      precision=mode)
    summary = train(cfg, log=lambda msg: None)
    losses = [e["train_loss"] for e in summary["epochs"]]
    assert losses[-1] < 0.7 * losses[0], losses
    assert summary["best"] >= 0.9
    assert summary["training_precision"] == mode
    model, _ = load_checkpoint(tmp_path / "out", "classify")
    assert {p.dtype for p in model.parameters()} == {__import__("torch").float32}
