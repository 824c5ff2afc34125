"""Reading a checkpoint directory: what the bundle needs from it, and why it cannot be exported."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.manifest import Pooling, ProblemType

# model_type (config.json) -> the ORT transformer optimizer's model type and whether the fused-op
# counts are a hard requirement. BERT-style encoders (BERT, MiniLM, ELECTRA) fuse fully on this
# ORT; RoBERTa fuses attention but not its embedding; ALBERT and DistilBERT fusion is partial.
# None: nothing to fuse (TextCNN has no attention, no GELU-after-MatMul, no BERT embedding), so
# the bundle has plain graphs only.
ARCHITECTURES: dict[str, tuple[str | None, bool]] = {
    "bert": ("bert", True),
    "electra": ("bert", True),
    "roberta": ("bert", False),
    "xlm-roberta": ("bert", False),
    "albert": ("bert", False),
    "distilbert": ("bert", False),
    "textcnn": (None, False),
}

TASKS = ("embed", "classify", "ner", "qa")

# transformers' problem_type -> the manifest's.
_PROBLEM_TYPES: dict[str, ProblemType] = {
    "single_label_classification": "single_label",
    "multi_label_classification": "multi_label",
    "regression": "regression",
}

# The head class name suffix a checkpoint's `architectures` must carry for each task.
_HEAD_SUFFIX = {
    "classify": "ForSequenceClassification",
    "ner": "ForTokenClassification",
    "qa": "ForQuestionAnswering",
}


class ExportError(ValueError):
    """A checkpoint cannot be exported, or an export failed a check; the message says which and why."""


@dataclass(frozen=True)
class CheckpointInfo:
    """What the exporter needs to know about a checkpoint, read without loading any weights."""

    path: Path
    task: str
    model_type: str
    optimizer_type: str | None  # None: no offline fusion applies to this architecture
    strict_fusion: bool
    num_layers: int
    hidden_size: int
    num_heads: int
    max_length: int
    uses_token_type_ids: bool
    labels: list[str] | None
    problem_type: ProblemType | None
    pooling: Pooling | None
    normalize: bool | None
    pad_token_id: int

    @property
    def input_names(self) -> list[str]:
        names = ["input_ids", "attention_mask"]
        return names + ["token_type_ids"] if self.uses_token_type_ids else names


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ExportError(f"{path}: missing") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(f"{path}: not readable JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ExportError(f"{path}: expected a JSON object")
    return data


def _first(config: dict[str, Any], *keys: str) -> int:
    for key in keys:
        if isinstance(config.get(key), int):
            return config[key]
    raise ExportError(f"config.json has none of {list(keys)}")


def _sentence_transformers_layout(ckpt: Path) -> tuple[Pooling | None, bool | None, int | None]:
    """Pooling mode, normalize and max_seq_length from a sentence-transformers layout, if any."""
    modules_path = ckpt / "modules.json"
    if not modules_path.is_file():
        return None, None, None
    try:
        modules = json.loads(modules_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ExportError(f"{modules_path}: not readable JSON ({exc})") from exc
    pooling: Pooling | None = None
    normalize = False
    for module in modules:
        kind = str(module.get("type", ""))
        if kind.endswith(".Pooling"):
            cfg = _read_json(ckpt / module.get("path", "") / "config.json")
            modes = [m for m, key in (("mean", "pooling_mode_mean_tokens"), ("cls", "pooling_mode_cls_token"),
                                      ("max", "pooling_mode_max_tokens")) if cfg.get(key)]
            if len(modes) != 1:
                raise ExportError(
                    f"{ckpt / module.get('path', '') / 'config.json'}: berth supports exactly one of "
                    f"mean, cls or max pooling, found {modes or 'none'}"
                )
            pooling = modes[0]  # type: ignore[assignment]
        elif kind.endswith(".Normalize"):
            normalize = True
    max_len = None
    st_config = ckpt / "sentence_bert_config.json"
    if st_config.is_file():
        max_len = _read_json(st_config).get("max_seq_length")
    return pooling, normalize, max_len


def _pad_token_id(ckpt: Path, config: dict[str, Any]) -> int:
    """The pad id from the tokenizer's own pad token, falling back to config.json."""
    from tokenizers import Tokenizer

    tok_config = ckpt / "tokenizer_config.json"
    pad = _read_json(tok_config).get("pad_token") if tok_config.is_file() else None
    if isinstance(pad, dict):
        pad = pad.get("content")
    if isinstance(pad, str):
        token_id = Tokenizer.from_file(str(ckpt / "tokenizer.json")).token_to_id(pad)
        if token_id is not None:
            return token_id
    return int(config.get("pad_token_id") or 0)


def read_checkpoint(
    path: Path,
    task: str,
    pooling: Pooling | None = None,
    normalize: bool | None = None,
    max_length: int | None = None,
) -> CheckpointInfo:
    """Validate a checkpoint directory for `task`; explicit arguments override what it declares."""
    path = Path(path)
    if task not in TASKS:
        raise ExportError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    if not path.is_dir():
        raise ExportError(f"{path}: not a checkpoint directory")
    config_path = path / "config.json"
    config = _read_json(config_path)
    model_type = config.get("model_type")
    if model_type not in ARCHITECTURES:
        raise ExportError(
            f"{config_path}: model_type {model_type!r} is not a supported architecture "
            f"(supported: {', '.join(sorted(ARCHITECTURES))})"
        )
    if not (path / "tokenizer.json").is_file():
        raise ExportError(
            f"{path / 'tokenizer.json'}: missing; the bundle needs a fast-tokenizer file "
            "(save the tokenizer with a PreTrainedTokenizerFast)"
        )
    if not any((path / name).is_file() for name in ("model.safetensors", "pytorch_model.bin")):
        raise ExportError(f"{path}: no model.safetensors (or pytorch_model.bin) with the weights")

    labels: list[str] | None = None
    problem_type: ProblemType | None = None
    if task in _HEAD_SUFFIX:
        heads = config.get("architectures") or []
        if not any(str(h).endswith(_HEAD_SUFFIX[task]) for h in heads):
            raise ExportError(
                f"{config_path}: architectures {heads} has no *{_HEAD_SUFFIX[task]} head, "
                f"so there are no trained weights for task {task!r}"
            )
    if task in ("classify", "ner"):
        id2label = config.get("id2label")
        if not isinstance(id2label, dict) or not id2label:
            raise ExportError(f"{config_path}: id2label is missing; task {task!r} needs its label names")
        try:
            ordered = sorted((int(k), str(v)) for k, v in id2label.items())
        except ValueError as exc:
            raise ExportError(f"{config_path}: id2label keys must be integers ({exc})") from exc
        if [i for i, _ in ordered] != list(range(len(ordered))):
            raise ExportError(f"{config_path}: id2label keys must be 0..{len(ordered) - 1}")
        labels = [name for _, name in ordered]
    if task == "classify":
        raw = config.get("problem_type") or "single_label_classification"
        if raw not in _PROBLEM_TYPES:
            raise ExportError(f"{config_path}: problem_type {raw!r} is not one of {sorted(_PROBLEM_TYPES)}")
        problem_type = _PROBLEM_TYPES[raw]

    st_pooling, st_normalize, st_max = _sentence_transformers_layout(path)
    if task == "embed":
        pooling = pooling or st_pooling or "mean"
        if normalize is None:
            normalize = st_normalize if st_normalize is not None else True
    else:
        pooling, normalize = None, None

    positions = _first(config, "max_position_embeddings")
    if model_type in ("roberta", "xlm-roberta"):
        # RoBERTa numbers positions from padding_idx + 1, so two positions are never usable.
        positions -= int(config.get("pad_token_id", 1)) + 1
    tok_config = path / "tokenizer_config.json"
    tok_max = _read_json(tok_config).get("model_max_length") if tok_config.is_file() else None
    # The length a `berth train` head was fine-tuned at, when the checkpoint says so.
    trained = path / "berth_train.json"
    train_max = _read_json(trained).get("args", {}).get("max_length") if trained.is_file() else None
    declared = (max_length or st_max or train_max
                or (tok_max if isinstance(tok_max, int) and tok_max < 100_000 else None))
    resolved_max = min(int(declared or positions), positions)

    return CheckpointInfo(
        path=path,
        task=task,
        model_type=model_type,
        optimizer_type=ARCHITECTURES[model_type][0],
        strict_fusion=ARCHITECTURES[model_type][1],
        num_layers=_first(config, "num_hidden_layers", "n_layers"),
        hidden_size=_first(config, "hidden_size", "dim"),
        # 0: no attention (the manifest's convention for TextCNN).
        num_heads=_first(config, "num_attention_heads", "n_heads") if ARCHITECTURES[model_type][0] else 0,
        max_length=resolved_max,
        # DistilBERT has no segment embeddings; RoBERTa has a single one (type_vocab_size 1).
        uses_token_type_ids=model_type != "distilbert" and int(config.get("type_vocab_size", 0)) > 1,
        labels=labels,
        problem_type=problem_type,
        pooling=pooling,
        normalize=normalize,
        pad_token_id=_pad_token_id(path, config),
    )


def bundle_tokenizer(path: Path):
    """The checkpoint's tokenizer with padding and truncation turned off (the service pads per batch)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(path) / "tokenizer.json"))
    # sentence-transformers ships all-MiniLM-L6-v2 with padding to 128 and truncation baked in.
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer
