"""`berth models`: selection, reuse of complete bundles, and failures that name their step."""

from __future__ import annotations

import pytest

from export.defaults import StepFailed, build_defaults, selected_models
from service.cli import main


def test_selection_from_flag_env_and_default(monkeypatch):
    monkeypatch.delenv("BERTH_DEFAULT_MODELS", raising=False)
    assert selected_models(None) == ["minilm", "sentiment", "ner", "qa"]
    monkeypatch.setenv("BERTH_DEFAULT_MODELS", "ner, qa")
    assert selected_models(None) == ["ner", "qa"]
    assert selected_models("sentiment") == ["sentiment"]
    with pytest.raises(StepFailed, match=r"unknown default model\(s\) \['nope'\]"):
        selected_models("nope")


def test_complete_bundle_is_reused_without_work(tmp_path, tiny_checkpoints):
    from export.bundle import export_bundle

    export_bundle(tiny_checkpoints("bert", "classify"), "classify", "sentiment", tmp_path / "models",
                  precisions=("fp32",), quick_bench=False)
    said: list[str] = []
    # data dir does not exist: any attempt to train would fail, so success proves reuse.
    built = build_defaults(tmp_path / "models", tmp_path / "runs", tmp_path / "nodata", ["sentiment"],
                           say=said.append)
    assert built == []
    assert any("sentiment: reusing" in line for line in said)


def test_failed_step_is_named_and_leaves_nothing(tmp_path, capsys):
    models = tmp_path / "models"
    code = main(["models", "--only", "sentiment", "--models-dir", str(models),
                 "--runs-dir", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "nodata")])
    assert code == 1
    err = capsys.readouterr().err
    assert "step failed: train sentiment: data file" in err
    assert not (models / "sentiment").exists()
    assert not (tmp_path / "runs" / "sentiment").exists()


def test_int8_gate_failure_ships_fp32_only(tmp_path, tiny_checkpoints, monkeypatch):
    import shutil

    import export.bundle
    from export.parity import GateError
    from model.train import SUMMARY_NAME
    from service.manifest import load_manifest

    real_export = export.bundle.export_bundle
    calls = []

    def export_failing_int8(checkpoint, task, name, out_dir, precisions, **kwargs):
        calls.append(tuple(precisions))
        if "int8" in precisions:
            raise GateError("model.int8.onnx int8 vs torch fp32 gate failed: agreement 0.88 < 0.95")
        return real_export(checkpoint, task, name, out_dir, precisions, quick_bench=False, **kwargs)

    monkeypatch.setattr(export.bundle, "export_bundle", export_failing_int8)
    # A complete checkpoint in runs/ means no training happens.
    shutil.copytree(tiny_checkpoints("bert", "classify"), tmp_path / "runs" / "sentiment")
    (tmp_path / "runs" / "sentiment" / SUMMARY_NAME).write_text("{}")
    said: list[str] = []
    built = build_defaults(tmp_path / "models", tmp_path / "runs", tmp_path / "nodata", ["sentiment"],
                           say=said.append)
    assert calls == [("fp32", "int8"), ("fp32",)]
    manifest = load_manifest(built[0])
    assert {v.precision for v in manifest.variants.values()} == {"fp32"}
    assert any("int8 failed its gate" in line for line in said)
