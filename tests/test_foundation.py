"""The contracts every package relies on: the CLI entry point, tiny checkpoints, the manifest."""

from __future__ import annotations

import json

import pytest

from service.cli import build_parser
from service.manifest import ManifestError, load_manifest


def test_cli_lists_subcommands():
    parser = build_parser()
    assert parser.prog == "berth"


@pytest.mark.parametrize("arch", ["bert", "albert", "distilbert", "roberta"])
def test_tiny_checkpoint_loads_with_labels(tiny_checkpoints, arch):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    path = tiny_checkpoints(arch, "ner")
    model = AutoModelForTokenClassification.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    assert model.config.id2label[1] == "B-PER"
    enc = tok("John visited Paris", return_tensors="pt")
    out = model(**{k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")})
    assert out.logits.shape[-1] == 7


def test_manifest_errors_name_file_and_field(tmp_path):
    with pytest.raises(ManifestError, match="berth.json: missing"):
        load_manifest(tmp_path)
    (tmp_path / "berth.json").write_text(json.dumps({"name": "x", "task": "classify"}))
    with pytest.raises(ManifestError, match=r"berth.json: field 'architecture'"):
        load_manifest(tmp_path)
