"""Checkpoints the exporter used to refuse or mishandle, and arguments it used to crash on."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from export.bundle import export_bundle
from export.checkpoint import ExportError, read_checkpoint
from service.cli import main
from service.manifest import load_manifest
from tests.tiny import tiny_config, tiny_tokenizer, tiny_vocab

FAST = {"precisions": ("fp32",), "gate_limit": 9, "quick_bench": False}


def _save_tokenizer(out: Path, max_length: int = 128) -> None:
    from transformers import PreTrainedTokenizerFast

    PreTrainedTokenizerFast(tokenizer_object=tiny_tokenizer(), unk_token="[UNK]", pad_token="[PAD]",
                            cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                            model_max_length=max_length).save_pretrained(out)


def _mlm_checkpoint(out: Path, arch: str) -> Path:
    """A raw pretrained checkpoint as published (roberta-base, bert-base-uncased): *ForMaskedLM,
    no pooler weights."""
    import torch
    from transformers import AutoModelForMaskedLM

    torch.manual_seed(0)
    AutoModelForMaskedLM.from_config(tiny_config(arch), attn_implementation="eager").save_pretrained(out)
    _save_tokenizer(out, 126 if arch == "roberta" else 128)
    return out


def _electra_classifier(out: Path) -> Path:
    """tests/tiny.py has no ELECTRA: a 2-layer, hidden-32 ELECTRA sequence classifier."""
    import torch
    from transformers import AutoModelForSequenceClassification, ElectraConfig

    torch.manual_seed(0)
    cfg = ElectraConfig(vocab_size=len(tiny_vocab()), embedding_size=32, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=128,
                        pad_token_id=0, num_labels=2, id2label={0: "neg", 1: "pos"},
                        label2id={"neg": 0, "pos": 1})
    AutoModelForSequenceClassification.from_config(cfg, attn_implementation="eager").save_pretrained(out)
    _save_tokenizer(out)
    return out


def _edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def _cli_error(capsys) -> str:
    """The one stderr line of a refused command (no traceback)."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("berth export: ") or lines[0].startswith("berth bench-model: ")
    return lines[0]


# F1 ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["bert", "roberta", "albert"])
def test_embed_exports_a_masked_lm_checkpoint_without_pooler(tmp_path, arch):
    ckpt = _mlm_checkpoint(tmp_path / f"{arch}-mlm", arch)
    bundle = export_bundle(ckpt, "embed", "e", tmp_path / "out", **FAST)
    manifest = load_manifest(bundle)
    assert manifest.task == "embed" and manifest.architecture == arch
    assert manifest.variants["fp32"].parity["max_abs_diff"] <= 1e-4


def test_embed_exports_a_token_classification_checkpoint(tiny_checkpoints, tmp_path):
    # BertForTokenClassification (what `berth train ner` writes) has no pooler either.
    bundle = export_bundle(tiny_checkpoints("bert", "ner"), "embed", "e", tmp_path, **FAST)
    assert load_manifest(bundle).variants["fp32"].parity["max_abs_diff"] <= 1e-4


def test_classify_still_requires_its_head_weights(checkpoint_copy, tmp_path):
    from export.onnx_export import load_torch_model

    ckpt = _mlm_checkpoint(tmp_path / "bert-mlm", "bert")
    _edit_json(ckpt / "config.json", architectures=["BertForSequenceClassification"],
               id2label={"0": "a", "1": "b"}, label2id={"a": 0, "b": 1})
    with pytest.raises(ExportError,
                       match=r"model\.safetensors: weights missing for task 'classify': .*classifier"):
        load_torch_model(read_checkpoint(ckpt, "classify"))


# F2 / F3: sentence-transformers layouts ---------------------------------------------------------

def _st_layout(ckpt: Path, pooling: dict, extra: list[tuple[str, str]] = (), new_names: bool = True) -> None:
    prefix = "sentence_transformers.base.modules." if new_names else "sentence_transformers.models."
    pool_type = ("sentence_transformers.sentence_transformer.modules.pooling.Pooling" if new_names
                 else "sentence_transformers.models.Pooling")
    modules = [{"idx": 0, "name": "0", "path": "", "type": prefix + ("transformer.Transformer" if new_names
                                                                     else "Transformer")},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": pool_type}]
    for i, (path, kind) in enumerate(extra, 2):
        modules.append({"idx": i, "name": str(i), "path": path, "type": kind})
    (ckpt / "modules.json").write_text(json.dumps(modules))
    (ckpt / "1_Pooling").mkdir()
    (ckpt / "1_Pooling" / "config.json").write_text(json.dumps(pooling))


def test_dense_module_is_refused_naming_modules_json(checkpoint_copy):
    ckpt = checkpoint_copy("bert", "base")
    _st_layout(ckpt, {"pooling_mode": "mean"},
               [("2_Dense", "sentence_transformers.base.modules.dense.Dense"),
                ("3_Normalize", "sentence_transformers.base.modules.normalize.Normalize")])
    with pytest.raises(ExportError, match=r"modules\.json: module 'sentence_transformers\.base\.modules\."
                                          r"dense\.Dense' is not supported"):
        read_checkpoint(ckpt, "embed")
    with pytest.raises(ExportError, match=r"modules\.json: .*Dense"):  # --pooling does not help
        read_checkpoint(ckpt, "embed", pooling="mean")


def test_legacy_dense_module_is_refused(checkpoint_copy):
    ckpt = checkpoint_copy("bert", "base")
    _st_layout(ckpt, {"pooling_mode_mean_tokens": True}, [("2_Dense", "sentence_transformers.models.Dense")],
               new_names=False)
    with pytest.raises(ExportError, match=r"modules\.json: module 'sentence_transformers\.models\.Dense'"):
        read_checkpoint(ckpt, "embed")


@pytest.mark.parametrize(("pooling_config", "expected"), [
    ({"embedding_dimension": 32, "pooling_mode": "mean", "include_prompt": True}, "mean"),  # >= 6
    ({"embedding_dimension": 32, "pooling_mode": "cls"}, "cls"),
    ({"embedding_dimension": 32, "pooling_mode": ["max"]}, "max"),
    ({"pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True, "pooling_mode_max_tokens": False,
      "pooling_mode_mean_sqrt_len_tokens": False}, "cls"),  # < 6
])
def test_pooling_config_both_layouts(checkpoint_copy, pooling_config, expected):
    ckpt = checkpoint_copy("bert", "base")
    _st_layout(ckpt, pooling_config,
               [("2_Normalize", "sentence_transformers.base.modules.normalize.Normalize")])
    info = read_checkpoint(ckpt, "embed")
    assert (info.pooling, info.normalize) == (expected, True)


@pytest.mark.parametrize("pooling_config", [
    {"pooling_mode": "weightedmean"},
    {"pooling_mode": ["mean", "max"]},
    {"pooling_mode_mean_tokens": True, "pooling_mode_mean_sqrt_len_tokens": True},
    {"pooling_mode_lasttoken": True},
])
def test_unsupported_pooling_is_refused_unless_overridden(checkpoint_copy, pooling_config):
    ckpt = checkpoint_copy("bert", "base")
    _st_layout(ckpt, pooling_config)
    with pytest.raises(ExportError, match=r"1_Pooling/config\.json: berth supports exactly one of mean, cls "
                                          r"or max pooling.*--pooling"):
        read_checkpoint(ckpt, "embed")
    assert read_checkpoint(ckpt, "embed", pooling="max").pooling == "max"


def test_st6_layout_exports_end_to_end(checkpoint_copy, tmp_path):
    ckpt = checkpoint_copy("bert", "base")
    _st_layout(ckpt, {"embedding_dimension": 32, "pooling_mode": "cls"})
    manifest = load_manifest(export_bundle(ckpt, "embed", "st6", tmp_path / "out", **FAST))
    assert (manifest.pooling, manifest.normalize) == ("cls", False)


# F4: ELECTRA classifier -------------------------------------------------------------------------

def test_electra_classifier_passes_the_fusion_check(tmp_path):
    from export.fusion import GELU_OPS

    ckpt = _electra_classifier(tmp_path / "electra-classify")
    manifest = load_manifest(export_bundle(ckpt, "classify", "el", tmp_path / "out", **FAST))
    fused = manifest.variants["fp32-fused"]
    # Two encoder layers plus the head's dense -> gelu.
    assert sum(fused.fused_ops.get(op, 0) for op in GELU_OPS) == 3
    assert fused.fused_ops["Attention"] == 2
    assert fused.parity["max_abs_diff"] <= 1e-4


def test_gelu_count_has_no_upper_bound_but_a_lower_one():
    from export.fusion import fusion_shortfalls

    full = {"Attention": 2, "SkipLayerNormalization": 4, "EmbedLayerNormalization": 1}
    assert fusion_shortfalls({**full, "BiasGelu": 3}, 2) == []
    assert fusion_shortfalls({**full, "BiasGelu": 1}, 2) == [
        "GELU fusion (BiasGelu/FastGelu/Gelu) 1, expected >= 2"]


@pytest.mark.parametrize(("attention", "hint"), [(2, False), (0, True)])
def test_eager_attention_hint_only_when_attention_did_not_fuse(tiny_checkpoints, tmp_path, monkeypatch,
                                                               attention, hint):
    from onnxruntime.transformers import optimizer

    from export.fusion import fuse

    counts = {"Attention": attention, "SkipLayerNormalization": 4, "EmbedLayerNormalization": 0,
              "BiasGelu": 2}

    class Fake:
        def get_nodes_by_op_type(self, op):
            return [None] * counts.get(op, 0)

        def save_model_to_file(self, path):
            Path(path).write_bytes(b"")

    monkeypatch.setattr(optimizer, "optimize_model", lambda *a, **k: Fake())
    info = read_checkpoint(tiny_checkpoints("bert", "classify"), "classify")
    with pytest.raises(ExportError, match="EmbedLayerNormalization 0, expected 1") as caught:
        fuse(info, tmp_path / "plain.onnx", tmp_path / "fused.onnx")
    assert ("eager attention" in str(caught.value)) is hint


# F5: a failed int8-fused gate keeps the passing plain int8 --------------------------------------

def test_failed_fused_int8_ships_the_plain_int8(tiny_checkpoints, tmp_path, caplog):
    from export.quantize import Int8Recipe

    # Matches every MatMul of the plain graph (so it stays fp32 and agrees fully) but not the fused
    # graph's Attention nodes, which become QAttention and lose some token labels.
    recipe = Int8Recipe(keep_fp32=("/model/*",))
    with caplog.at_level(logging.WARNING, logger="export"):
        bundle = export_bundle(tiny_checkpoints("bert", "ner"), "ner", "m", tmp_path,
                               precisions=("fp32", "int8"), gate_limit=100, quick_bench=False,
                               int8_recipes=(recipe,), thresholds={"ner_agreement": 0.9999})
    manifest = load_manifest(bundle)
    assert "int8" in manifest.variants and "int8-fused" not in manifest.variants
    assert not (bundle / "model.int8.fused.onnx").exists()
    assert manifest.variant_for("int8", "cpu")[0] == "int8"
    details = manifest.variants["int8"].details
    assert details["int8_fused"].startswith("not shipped: model.int8.fused.onnx failed its gate")
    assert len(details["int8_fused_recipes_tried"]) == 1
    assert details["int8_fused_recipes_tried"][0]["agreement"] < 0.9999
    assert any("shipping int8 without model.int8.fused.onnx" in r.getMessage() for r in caplog.records)


# F6: clear errors instead of tracebacks ---------------------------------------------------------

def _export_cli(ckpt, out, task="classify", *extra):
    return main(["export", "--checkpoint", str(ckpt), "--task", task, "--name", "t", "--out", str(out),
                 "--precision", "fp32", "--gate-limit", "9", "--no-bench", *extra])


def test_unreadable_tokenizer_is_one_line(checkpoint_copy, tmp_path, capsys):
    ckpt = checkpoint_copy("bert", "classify")
    text = (ckpt / "tokenizer.json").read_text()
    (ckpt / "tokenizer.json").write_text(text[:300])
    with pytest.raises(ExportError, match=r"tokenizer\.json: not a readable tokenizer file"):
        read_checkpoint(ckpt, "classify")
    assert _export_cli(ckpt, tmp_path / "out") == 2
    assert "tokenizer.json: not a readable tokenizer file" in _cli_error(capsys)
    assert not (tmp_path / "out").exists()


def test_head_size_must_match_id2label(checkpoint_copy, tmp_path, capsys):
    ckpt = checkpoint_copy("bert", "classify")
    _edit_json(ckpt / "config.json", id2label={"0": "neg", "1": "neu", "2": "pos"},
               label2id={"neg": 0, "neu": 1, "pos": 2})
    with pytest.raises(ExportError, match=r"model\.safetensors: the classify head classifier\.weight has 2 "
                                          r"outputs .* but there are 3 labels in .*config\.json id2label"):
        read_checkpoint(ckpt, "classify")
    assert _export_cli(ckpt, tmp_path / "out") == 2
    assert "classifier.weight has 2 outputs" in _cli_error(capsys)


def test_roberta_head_size_is_checked_on_out_proj(checkpoint_copy):
    ckpt = checkpoint_copy("roberta", "ner")
    _edit_json(ckpt / "config.json", id2label={"0": "O", "1": "B-PER"}, label2id={"O": 0, "B-PER": 1})
    with pytest.raises(ExportError, match=r"the ner head classifier\.weight has 7 outputs"):
        read_checkpoint(ckpt, "ner")
    ckpt = checkpoint_copy("roberta", "classify")
    _edit_json(ckpt / "config.json", id2label={"0": "a", "1": "b", "2": "c"},
               label2id={"a": 0, "b": 1, "c": 2})
    with pytest.raises(ExportError, match=r"classifier\.out_proj\.weight has 2 outputs"):
        read_checkpoint(ckpt, "classify")


@pytest.mark.parametrize("value", ["0", "-1", "2"])
def test_max_length_is_validated_before_any_work(tiny_checkpoints, tmp_path, capsys, value):
    tiny_checkpoints("bert", "classify")
    capsys.readouterr()
    assert _export_cli(tiny_checkpoints("bert", "classify"), tmp_path / "out", "classify",
                       f"--max-length={value}") == 2
    assert f"--max-length: max_length {value} must be an integer >= 3" in _cli_error(capsys)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ExportError, match="must be an integer >= 3"):
        export_bundle(tiny_checkpoints("bert", "classify"), "classify", "m", tmp_path / "out",
                      max_length=int(value), **FAST)
    assert not (tmp_path / "out").exists()


def test_max_length_3_is_the_smallest_that_exports(tiny_checkpoints, tmp_path):
    bundle = export_bundle(tiny_checkpoints("bert", "classify"), "classify", "m", tmp_path, max_length=3,
                           **FAST)
    assert load_manifest(bundle).max_length == 3


def test_a_checkpoint_file_with_a_tiny_max_length_is_named(checkpoint_copy):
    ckpt = checkpoint_copy("bert", "classify")
    (ckpt / "berth_train.json").write_text(json.dumps({"args": {"max_length": 0}}))
    with pytest.raises(ExportError, match=r"berth_train\.json \(max length\): max_length 0 must be"):
        read_checkpoint(ckpt, "classify")


def test_qa_max_length_too_short_for_the_questions(tiny_checkpoints, tmp_path, capsys):
    ckpt = tiny_checkpoints("bert", "qa")
    capsys.readouterr()  # the fixture's own output, if it built the checkpoint just now
    assert _export_cli(ckpt, tmp_path / "out", "qa", "--max-length", "16") == 2
    line = _cli_error(capsys)
    assert "squad/dev.json: question" in line and "qa needs max_length >=" in line
    assert list((tmp_path / "out").iterdir()) == []  # no partial directory left behind
    # Explicit gate pairs: named as such; a length that fits them exports.
    pairs = [("who went", "john smith went to paris"), ("where", "the river bank in london")]
    with pytest.raises(ExportError,
                       match=r"gate_texts: question 1 \('who went'\) takes 2 tokens \+ 3 special"):
        export_bundle(ckpt, "qa", "q", tmp_path / "out2", gate_texts=pairs, max_length=5, **FAST)
    bundle = export_bundle(ckpt, "qa", "q", tmp_path / "out2", gate_texts=pairs, max_length=6, **FAST)
    assert load_manifest(bundle).max_length == 6


# F7: bundle names -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["a/b", "", ".", "..", ".hidden", "../up", "a\\b"])
def test_bad_bundle_names_are_refused_before_any_work(tiny_checkpoints, tmp_path, capsys, name):
    tiny_checkpoints("bert", "classify")
    capsys.readouterr()
    out = tmp_path / "models"
    (out / "keep").mkdir(parents=True)  # an existing bundle that "." with --overwrite must not move
    (out / "keep" / "berth.json").write_text("{}")
    with pytest.raises(ExportError, match=r"--name .*: a bundle name must be a single directory name"):
        export_bundle(tiny_checkpoints("bert", "classify"), "classify", name, out, overwrite=True, **FAST)
    rc = main(["export", "--checkpoint", str(tiny_checkpoints("bert", "classify")), "--task", "classify",
               "--name", name, "--out", str(out), "--precision", "fp32", "--no-bench", "--overwrite"])
    assert rc == 2
    assert "a bundle name must be a single directory name" in _cli_error(capsys)
    assert sorted(p.name for p in out.iterdir()) == ["keep"]  # nothing renamed, no .old left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]
    assert (out / "keep" / "berth.json").read_text() == "{}"


# F8: bench-model shapes -------------------------------------------------------------------------

@pytest.mark.parametrize("shapes", ["0x16", "-1x16", "8x0", "1x16,0x8", ""])
def test_bench_model_refuses_non_positive_shapes(tmp_path, capsys, shapes):
    assert main(["bench-model", str(tmp_path), f"--shapes={shapes}", "--seconds", "0.01"]) == 2
    assert "--shapes must look like 1x16,8x64" in _cli_error(capsys)
