"""sentence-transformers layouts, bench-model's CPU-default decision, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from export.bench import bench_bundle, choose_cpu_defaults, format_table, rewrite_defaults
from export.bundle import export_bundle
from service.cli import main
from service.manifest import load_manifest


def _as_sentence_transformers(ckpt, pooling_key: str, normalize: bool, max_seq_length: int) -> None:
    """Add the files sentence-transformers writes, and bake padding/truncation into tokenizer.json."""
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
    (ckpt / "modules.json").write_text(json.dumps(modules))
    (ckpt / "1_Pooling").mkdir()
    pooling = {"word_embedding_dimension": 32, "pooling_mode_cls_token": False,
               "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": False}
    pooling[pooling_key] = True
    (ckpt / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    (ckpt / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length}))
    tok = json.loads((ckpt / "tokenizer.json").read_text())
    tok["padding"] = {"strategy": {"Fixed": 128}, "direction": "Right", "pad_to_multiple_of": None,
                      "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"}
    tok["truncation"] = {"direction": "Right", "max_length": 128, "strategy": "LongestFirst", "stride": 0}
    (ckpt / "tokenizer.json").write_text(json.dumps(tok))


@pytest.mark.parametrize(("pooling_key", "pooling", "normalize"), [
    ("pooling_mode_cls_token", "cls", False),
    ("pooling_mode_max_tokens", "max", True),
])
def test_sentence_transformers_layout_is_honoured(checkpoint_copy, tmp_path, pooling_key, pooling, normalize):
    import onnxruntime as ort
    import torch
    import transformers

    ckpt = checkpoint_copy("bert", "base")
    _as_sentence_transformers(ckpt, pooling_key, normalize, max_seq_length=48)
    bundle = export_bundle(ckpt, "embed", "st", tmp_path / "out", precisions=("fp32",), quick_bench=False)
    manifest = load_manifest(bundle)
    assert (manifest.pooling, manifest.normalize, manifest.max_length) == (pooling, normalize, 48)
    tok = json.loads((bundle / "tokenizer.json").read_text())
    assert tok["padding"] is None and tok["truncation"] is None

    # Independent reference: transformers' hidden states pooled by hand.
    ids = np.array([[2, 60, 61, 62, 3], [2, 63, 3, 0, 0]], dtype=np.int64)
    mask = (ids != 0).astype(np.int64)
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    model = transformers.AutoModel.from_pretrained(str(ckpt)).eval()
    with torch.no_grad():
        hidden = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).last_hidden_state.numpy()
    masked = np.where(mask[..., None] == 1, hidden, -np.inf)
    expected = hidden[:, 0] if pooling == "cls" else masked.max(1)
    if normalize:
        expected = expected / np.linalg.norm(expected, axis=1, keepdims=True)
    sess = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(["sentence_embedding"], feeds)[0]
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.fixture(scope="module")
def tiny_int8_bundle(tiny_checkpoints, tmp_path_factory):
    from tests.export.test_errors_and_gates import RELAXED

    return export_bundle(tiny_checkpoints("bert", "classify"), "classify", "m", tmp_path_factory.mktemp("b"),
                         precisions=("fp32", "int8"), thresholds=RELAXED, gate_limit=20, quick_bench=False)


def test_bench_measures_every_engine_and_rewrites_defaults(tiny_int8_bundle):
    results = bench_bundle(tiny_int8_bundle, [(2, 8)], threads=1, seconds=0.05)
    assert set(results) == {"torch fp32", "ort fp32 plain", "ort fp32 fused", "ort int8 plain",
                            "ort int8 fused"}
    assert all(r["2x8"] > 0 for r in results.values())
    assert "ratios to torch fp32" in format_table(results)

    manifest = rewrite_defaults(tiny_int8_bundle, results)
    reloaded = load_manifest(tiny_int8_bundle)
    assert reloaded == manifest
    for precision in ("fp32", "int8"):
        cpu = [k for k, v in reloaded.variants.items() if v.precision == precision and "cpu" in v.default_for]
        assert len(cpu) == 1
        assert "tokens/s" in reloaded.variants[cpu[0]].why
    assert "cuda" in reloaded.variants["fp32-fused"].default_for  # the GPU path is untouched


def test_cpu_default_follows_the_faster_graph(tiny_int8_bundle):
    manifest = load_manifest(tiny_int8_bundle)
    fake = {"ort fp32 plain": {"1x16": 100.0, "8x64": 100.0},
            "ort fp32 fused": {"1x16": 300.0, "8x64": 90.0},
            "ort int8 plain": {"1x16": 100.0, "8x64": 400.0},
            "ort int8 fused": {"1x16": 120.0, "8x64": 200.0}}
    chosen = choose_cpu_defaults(manifest, fake)
    assert "cpu" in chosen.variants["fp32-fused"].default_for  # geometric mean 164 vs 100
    assert "cpu" not in chosen.variants["fp32"].default_for
    assert "cpu" in chosen.variants["int8"].default_for  # 200 vs 155
    assert chosen.variant_for("int8", "cpu")[0] == "int8"


def test_cli_export_and_bench(tiny_checkpoints, tmp_path, capsys):
    ckpt = tiny_checkpoints("albert", "classify")
    rc = main(["export", "--checkpoint", str(ckpt), "--task", "classify", "--name", "cli", "--out",
               str(tmp_path), "--precision", "fp32", "--no-bench"])
    assert rc == 0
    assert "fp32-fused" in capsys.readouterr().out
    assert load_manifest(tmp_path / "cli").architecture == "albert"
    rc = main(["bench-model", str(tmp_path / "cli"), "--shapes", "1x8", "--seconds", "0.05", "--dry-run"])
    assert rc == 0
    assert "ort fp32 fused" in capsys.readouterr().out


def test_cli_reports_unexportable_checkpoint(tiny_checkpoints, tmp_path, capsys):
    rc = main(["export", "--checkpoint", str(tiny_checkpoints("bert", "base")), "--task", "ner",
               "--name", "x", "--out", str(tmp_path)])
    assert rc == 2  # a refused checkpoint; 1 is a failed gate
    err = capsys.readouterr().err
    assert "config.json" in err and "ForTokenClassification" in err


def test_dev_metrics_through_onnx_equal_torch_for_fp32(tiny_checkpoints, tmp_path):
    """The ONNX adapter feeds model/'s own evaluation: fp32 must reproduce torch's figures."""
    from export.dev_metrics import compare

    ckpt = tiny_checkpoints("bert", "classify")
    bundle = export_bundle(ckpt, "classify", "m", tmp_path, precisions=("fp32",), quick_bench=False)
    data = tmp_path / "dev.txt"
    data.write_text("4 ||| the movie was great\n0 ||| an awful plot\n3 ||| good acting\n1 ||| a bad film\n"
                    "4 ||| great film , great acting\n0 ||| the plot was bad and the acting awful\n")
    result = compare(bundle, data, "sst2", precision="fp32", threads=1)
    assert result["metric"] == "accuracy" and result["file"] == "model.onnx"
    assert result["torch_all"]["examples"] == 6
    assert result["onnx_all"]["accuracy"] == result["torch_all"]["accuracy"]
    assert result["onnx_all"]["macro_f1"] == pytest.approx(result["torch_all"]["macro_f1"])
