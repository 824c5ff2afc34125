"""The model bundle's manifest (`berth.json`): the contract between export/ and service/.

export/ writes it, service/ validates it on load. It is torch-free on purpose: the service
image imports it without the training stack. A bundle is a directory:

    models/<name>/
      berth.json          this manifest
      model.onnx          fp32, graph as exported (ORT optimizes at load time)
      model.fused.onnx    fp32, offline-fused by the ORT transformer optimizer (the GPU path)
      model.int8.onnx     dynamic int8 (CPU)                                   optional
      model.fp16.onnx     fp16 weights, fp32 inputs/outputs (GPU)              optional
      tokenizer.json      Hugging Face tokenizers file, no padding/truncation baked in

Graph outputs per task (names are part of the contract):
  embed     token_embeddings [batch, seq, hidden], sentence_embedding [batch, hidden]
            (pooled with `pooling`, L2-normalized when `normalize`)
  classify  logits [batch, num_labels]
  ner       logits [batch, seq, num_labels]
  qa        start_logits [batch, seq], end_logits [batch, seq]
Inputs are int64 [batch, seq]: input_ids, attention_mask and, when the architecture has them,
token_type_ids. Padding is on the right (the fused attention reads the mask as a mask index).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

MANIFEST_NAME = "berth.json"
TOKENIZER_NAME = "tokenizer.json"
FORMAT_VERSION = 1

Task = Literal["embed", "classify", "ner", "qa"]
Precision = Literal["fp32", "int8", "fp16"]
Provider = Literal["cpu", "cuda"]
ProblemType = Literal["single_label", "multi_label", "regression"]
Pooling = Literal["mean", "cls", "max"]

TASK_OUTPUTS: dict[str, tuple[str, ...]] = {
    "embed": ("token_embeddings", "sentence_embedding"),
    "classify": ("logits",),
    "ner": ("logits",),
    "qa": ("start_logits", "end_logits"),
}


class Variant(BaseModel):
    """One ONNX file of the bundle: a precision of a graph, with the checks it passed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str
    precision: Precision
    graph: Literal["plain", "fused"]
    # Providers for which this variant is the one to load for its precision.
    default_for: list[Provider] = Field(default_factory=list)
    # Why it is (or is not) the default: the measured figures, in words.
    why: str = ""
    # Parity gate results, e.g. {"max_abs_diff": 2e-6} or {"cosine_mean": 0.991, "cosine_min": 0.97}.
    parity: dict[str, float] = Field(default_factory=dict)
    # Fused-operator counts of the graph (Attention, SkipLayerNormalization, ...).
    fused_ops: dict[str, int] = Field(default_factory=dict)
    # Anything else the exporter wants to record (quantization recipe, bench figures).
    details: dict[str, object] = Field(default_factory=dict)


class Manifest(BaseModel):
    """`berth.json`. Unknown fields are refused so a typo cannot silently change behaviour."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: int = FORMAT_VERSION
    name: str
    task: Task
    architecture: str
    num_layers: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    num_heads: int = Field(ge=0)  # 0: an architecture without attention (TextCNN)
    max_length: int = Field(gt=2)
    inputs: list[str]
    outputs: list[str]
    labels: list[str] | None = None
    problem_type: ProblemType | None = None
    pooling: Pooling | None = None
    normalize: bool | None = None
    variants: dict[str, Variant]
    versions: dict[str, str] = Field(default_factory=dict)
    source: dict[str, object] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_task_fields(self) -> Manifest:
        if "input_ids" not in self.inputs or "attention_mask" not in self.inputs:
            raise ValueError("inputs must include input_ids and attention_mask")
        missing = [o for o in TASK_OUTPUTS[self.task] if o not in self.outputs]
        if missing:
            raise ValueError(f"outputs for task {self.task!r} must include {missing}")
        if self.task in ("classify", "ner") and not self.labels:
            raise ValueError(f"labels are required for task {self.task!r}")
        if self.task == "classify" and self.problem_type is None:
            raise ValueError("problem_type is required for task 'classify'")
        if self.task == "embed" and (self.pooling is None or self.normalize is None):
            raise ValueError("pooling and normalize are required for task 'embed'")
        if not self.variants:
            raise ValueError("variants must list at least one ONNX file")
        return self

    def variant_for(self, precision: Precision, provider: Provider) -> tuple[str, Variant] | None:
        """The variant to load for a precision on a provider: the declared default, else any."""
        candidates = [(k, v) for k, v in self.variants.items() if v.precision == precision]
        for key, variant in candidates:
            if provider in variant.default_for:
                return key, variant
        return candidates[0] if candidates else None


class ManifestError(ValueError):
    """A bundle's manifest is missing or invalid; the message names the file and the field."""


def load_manifest(bundle_dir: Path) -> Manifest:
    """Read and validate `bundle_dir/berth.json`, checking that every file it names exists."""
    path = Path(bundle_dir) / MANIFEST_NAME
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ManifestError(f"{path}: missing") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path}: not readable JSON ({exc})") from exc
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise ManifestError(f"{path}: field {field!r}: {first['msg']}") from exc
    for key, variant in manifest.variants.items():
        if not (path.parent / variant.file).is_file():
            raise ManifestError(f"{path}: field 'variants.{key}.file': {variant.file} does not exist")
    if not (path.parent / TOKENIZER_NAME).is_file():
        raise ManifestError(f"{path}: {TOKENIZER_NAME} is missing beside it")
    return manifest


def write_manifest(bundle_dir: Path, manifest: Manifest) -> Path:
    """Write `berth.json` (validated by construction)."""
    path = Path(bundle_dir) / MANIFEST_NAME
    path.write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return path
