"""Checkpoints that cannot be exported, gate failures, int8 variants and the all-or-nothing bundle."""

from __future__ import annotations

import json

import pytest

from export.bundle import export_bundle
from export.checkpoint import ExportError, read_checkpoint
from export.parity import GateError
from service.manifest import load_manifest

# Tiny random models are not quantization-robust; these tests relax the int8 gates explicitly.
RELAXED = {"embed_cosine_mean": 0.0, "embed_cosine_min": 0.0, "classify_agreement": 0.0,
           "ner_agreement": 0.0, "qa_agreement": 0.0}


def _edit_config(checkpoint, **changes):
    path = checkpoint / "config.json"
    config = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    path.write_text(json.dumps(config))


def test_unknown_architecture_names_config_and_model_type(checkpoint_copy, tmp_path):
    ckpt = checkpoint_copy("bert", "classify")
    _edit_config(ckpt, model_type="gpt2")
    with pytest.raises(ExportError, match=r"config\.json: model_type 'gpt2' is not a supported architecture"):
        export_bundle(ckpt, "classify", "m", tmp_path / "out", precisions=("fp32",))
    assert not (tmp_path / "out" / "m").exists()


def test_missing_tokenizer_names_the_file(checkpoint_copy, tmp_path):
    ckpt = checkpoint_copy("bert", "classify")
    (ckpt / "tokenizer.json").unlink()
    with pytest.raises(ExportError, match=r"tokenizer\.json: missing"):
        export_bundle(ckpt, "classify", "m", tmp_path / "out", precisions=("fp32",))


@pytest.mark.parametrize("task", ["classify", "ner"])
def test_missing_labels_names_config_and_id2label(checkpoint_copy, tmp_path, task):
    ckpt = checkpoint_copy("bert", task)
    _edit_config(ckpt, id2label=None, label2id=None)
    with pytest.raises(ExportError, match=r"config\.json: id2label is missing"):
        read_checkpoint(ckpt, task)


def test_base_checkpoint_has_no_head_for_a_task(tiny_checkpoints):
    with pytest.raises(ExportError, match=r"config\.json: architectures .* no \*ForQuestionAnswering head"):
        read_checkpoint(tiny_checkpoints("bert", "base"), "qa")


def test_missing_weights_and_bad_task(checkpoint_copy, tiny_checkpoints):
    with pytest.raises(ExportError, match="unknown task 'summarize'"):
        read_checkpoint(tiny_checkpoints("bert", "classify"), "summarize")
    ckpt = checkpoint_copy("bert", "classify")
    (ckpt / "model.safetensors").unlink()
    with pytest.raises(ExportError, match="no model.safetensors"):
        read_checkpoint(ckpt, "classify")


def test_bad_gate_file_names_file_and_line(tmp_path):
    from export.gate_data import read_conll, read_sst

    sst = tmp_path / "dev.txt"
    sst.write_text("3 ||| fine\nno separator here\n")
    with pytest.raises(ExportError, match=r"dev\.txt:2: expected 'LABEL \|\|\| text'"):
        read_sst(sst)
    conll = tmp_path / "conll.txt"
    conll.write_text("EU B-ORG\n\nlonely\n")
    with pytest.raises(ExportError, match=r"conll\.txt:3: expected 'word TAG'"):
        read_conll(conll)


def test_int8_variants_pass_relaxed_gates_and_are_recorded(tiny_checkpoints, tmp_path):
    bundle = export_bundle(tiny_checkpoints("bert", "ner"), "ner", "m", tmp_path, precisions=("fp32", "int8"),
                           thresholds=RELAXED, gate_limit=40, quick_bench=False)
    manifest = load_manifest(bundle)
    for key in ("int8", "int8-fused"):
        variant = manifest.variants[key]
        assert variant.precision == "int8"
        assert 0.5 < variant.parity["agreement"] <= 1.0 and variant.parity["tokens"] > 100
        assert variant.details["ops"].get("MatMulInteger", 0) > 0
        assert variant.details["recipe"]["per_channel"] is True
    assert manifest.variants["int8-fused"].details["ops"].get("QAttention", 0) == manifest.num_layers
    # Exactly one CPU default per precision, and the service can pick it.
    assert manifest.variant_for("int8", "cpu")[0] == "int8"
    assert manifest.variant_for("fp32", "cuda")[0] == "fp32-fused"


def test_failed_gate_writes_nothing_and_names_the_figure(tiny_checkpoints, tmp_path):
    with pytest.raises(GateError, match=r"model\.int8\.onnx int8 vs torch fp32 gate failed: agreement"):
        export_bundle(tiny_checkpoints("bert", "classify"), "classify", "m", tmp_path,
                      precisions=("fp32", "int8"), thresholds={"classify_agreement": 1.01},
                      gate_limit=20, quick_bench=False)
    assert list(tmp_path.iterdir()) == []  # no bundle, no partial directory left behind


def test_fp32_gate_failure_is_reported_per_file(tiny_checkpoints, tmp_path):
    with pytest.raises(GateError, match=r"model\.onnx: fp32 gate failed: max abs diff"):
        export_bundle(tiny_checkpoints("bert", "qa"), "qa", "m", tmp_path, precisions=("fp32",),
                      thresholds={"fp32_max_abs_diff": 0.0}, quick_bench=False)
    assert list(tmp_path.iterdir()) == []


def test_existing_bundle_is_kept_unless_overwrite(tiny_checkpoints, tmp_path):
    ckpt = tiny_checkpoints("distilbert", "classify")
    export_bundle(ckpt, "classify", "m", tmp_path, precisions=("fp32",), quick_bench=False)
    with pytest.raises(ExportError, match="already exists"):
        export_bundle(ckpt, "classify", "m", tmp_path, precisions=("fp32",), quick_bench=False)
    export_bundle(ckpt, "classify", "m", tmp_path, precisions=("fp32",), quick_bench=False, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_fp16_variant_is_written_and_marked_unverified_without_gpu(tiny_checkpoints, tmp_path):
    import onnx
    import onnxruntime

    bundle = export_bundle(tiny_checkpoints("bert", "base"), "embed", "m", tmp_path,
                           precisions=("fp32", "fp16"), gate_limit=20, quick_bench=False)
    variant = load_manifest(bundle).variants["fp16"]
    graph = onnx.load(str(bundle / variant.file)).graph
    # fp32 in and out, fp16 weights inside.
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in graph.output)
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.initializer)
    assert variant.default_for == ["cuda"]
    gpu = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    assert variant.details["gpu_verified"] is gpu


def test_int8_falls_back_to_the_next_recipe_when_a_gate_fails(tiny_checkpoints, tmp_path):
    from export.quantize import Int8Recipe

    # Per-tensor loses some token labels on this model; keeping every node fp32 loses none.
    recipes = (Int8Recipe(per_channel=False), Int8Recipe(keep_fp32=("*",)))
    bundle = export_bundle(tiny_checkpoints("bert", "ner"), "ner", "m", tmp_path, precisions=("fp32", "int8"),
                           thresholds={"ner_agreement": 1.0}, gate_limit=40, quick_bench=False,
                           int8_recipes=recipes)
    details = load_manifest(bundle).variants["int8"].details
    tried = details["recipes_tried"]
    assert [t["per_channel"] for t in tried] == [False, True]
    assert tried[0]["agreement"] < 1.0 <= tried[1]["agreement"]
    assert details["recipe"]["keep_fp32"] == ["*"]

    with pytest.raises(GateError, match=r"after 2 recipe\(s\)"):
        export_bundle(tiny_checkpoints("bert", "ner"), "ner", "m2", tmp_path, precisions=("fp32", "int8"),
                      thresholds={"ner_agreement": 1.01}, gate_limit=40, quick_bench=False,
                      int8_recipes=recipes)


def test_max_length_prefers_the_training_length_and_caps_at_positions(checkpoint_copy):
    ckpt = checkpoint_copy("roberta", "classify")
    # The tokenizer's model_max_length (128) by default.
    assert read_checkpoint(ckpt, "classify").max_length == 128
    (ckpt / "berth_train.json").write_text(json.dumps({"args": {"max_length": 40}}))
    assert read_checkpoint(ckpt, "classify").max_length == 40
    # RoBERTa numbers positions from padding_idx + 1 (pad id 0 here): 130 - 1 usable.
    assert read_checkpoint(ckpt, "classify", max_length=1000).max_length == 129
