"""Reading a checkpoint directory: what the bundle needs from it, and why it cannot be exported."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.heads import usable_positions
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


# sentence-transformers module types berth reproduces (matched on the class name, the last
# component of `type`: sentence-transformers 6 moved them, e.g. `...base.modules.normalize.Normalize`).
_ST_MODULES = ("Transformer", "Pooling", "Normalize")
# Pooling modes: sentence-transformers < 6 writes one boolean per mode, >= 6 `pooling_mode`.
_ST_LEGACY_POOLING = {
    "pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean", "pooling_mode_lasttoken": "lasttoken",
}
_POOLINGS = ("mean", "cls", "max")


def _st_pooling(cfg_path: Path) -> Pooling:
    """The pooling mode of a sentence-transformers Pooling config (either layout)."""
    cfg = _read_json(cfg_path)
    if "pooling_mode" in cfg:
        raw = cfg["pooling_mode"]
        modes = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else [repr(raw)]
    else:
        modes = [mode for key, mode in _ST_LEGACY_POOLING.items() if cfg.get(key)]
    if len(modes) != 1 or modes[0] not in _POOLINGS:
        raise ExportError(
            f"{cfg_path}: berth supports exactly one of mean, cls or max pooling, found "
            f"{', '.join(map(str, modes)) or 'none'} (pass --pooling to override)"
        )
    return modes[0]  # type: ignore[return-value]


def _sentence_transformers_layout(
    ckpt: Path, pooling_override: Pooling | None = None
) -> tuple[Pooling | None, bool | None, int | None]:
    """Pooling mode, normalize and max_seq_length from a sentence-transformers layout, if any.

    A module berth does not reproduce (Dense, WordEmbeddings, ...) is refused: dropping it would
    serve vectors that are not the model's. With `pooling_override` the Pooling config is not read.
    """
    modules_path = ckpt / "modules.json"
    if not modules_path.is_file():
        return None, None, None
    try:
        modules = json.loads(modules_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(f"{modules_path}: not readable JSON ({exc})") from exc
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise ExportError(f"{modules_path}: expected a JSON list of module objects")
    unsupported = [str(m.get("type", "")) for m in modules
                   if str(m.get("type", "")).rsplit(".", 1)[-1] not in _ST_MODULES]
    if unsupported:
        raise ExportError(
            f"{modules_path}: module {unsupported[0]!r} is not supported (berth reproduces only "
            f"{', '.join(_ST_MODULES)}); exporting without it would serve different vectors"
        )
    pooling: Pooling | None = None
    normalize = False
    for module in modules:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        if kind == "Pooling" and pooling_override is None:
            pooling = _st_pooling(ckpt / str(module.get("path", "")) / "config.json")
        elif kind == "Normalize":
            normalize = True
    max_len = None
    st_config = ckpt / "sentence_bert_config.json"
    if st_config.is_file():
        max_len = _read_json(st_config).get("max_seq_length")
    return pooling, normalize, max_len


def _pad_token_id(ckpt: Path, config: dict[str, Any]) -> int:
    """The pad id from the tokenizer's own pad token, falling back to config.json."""
    tok_config = ckpt / "tokenizer_config.json"
    pad = _read_json(tok_config).get("pad_token") if tok_config.is_file() else None
    if isinstance(pad, dict):
        pad = pad.get("content")
    if isinstance(pad, str):
        token_id = load_tokenizer(ckpt).token_to_id(pad)
        if token_id is not None:
            return token_id
    return int(config.get("pad_token_id") or 0)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] + (" ..." if len(text) > 200 else "")


def load_tokenizer(ckpt: Path):
    """The checkpoint's tokenizer.json; ExportError (naming the file) when it cannot be read."""
    from tokenizers import Tokenizer

    path = Path(ckpt) / "tokenizer.json"
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises plain Exception for a malformed file
        raise ExportError(f"{path}: not a readable tokenizer file ({_one_line(exc)})") from exc


# The shortest sequence that holds a token: [CLS] token [SEP] (the manifest requires > 2).
MIN_MAX_LENGTH = 3


def check_max_length(max_length: object, source: str = "--max-length") -> int:
    """`max_length` as given by the user or a checkpoint file: an integer >= 3, else ExportError."""
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < MIN_MAX_LENGTH:
        raise ExportError(f"{source}: max_length {max_length!r} must be an integer >= {MIN_MAX_LENGTH} "
                          "(room for [CLS], one token and [SEP])")
    return max_length


def check_bundle_name(name: object) -> str:
    """A bundle name is one plain directory name: the service loads `models/<name>/` and skips
    dot-directories (the exporter's own `.<name>.*.partial` work directories among them)."""
    if (not isinstance(name, str) or not name or name.startswith(".") or "/" in name or "\\" in name
            or "\0" in name):
        raise ExportError(f"--name {name!r}: a bundle name must be a single directory name "
                          "(not empty, no '/', not starting with '.')")
    return name


def _safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape from a safetensors header, without loading any weights."""
    try:
        with path.open("rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if not 0 < size < 100_000_000:
                raise ValueError(f"header size {size}")
            header = json.loads(f.read(size))
        return {k: list(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ExportError(f"{path}: not a readable safetensors file ({_one_line(exc)})") from exc


def _check_head_size(path: Path, task: str, labels: list[str] | None) -> None:
    """The head's output size must match id2label (2 for qa), else transformers fails mid-load."""
    weights = path / "model.safetensors"
    if not weights.is_file():
        return  # pytorch_model.bin: load_torch_model reports a mismatch
    shapes = _safetensors_shapes(weights)
    keys = ("qa_outputs.weight",) if task == "qa" else ("classifier.out_proj.weight", "classifier.weight")
    key = next((k for k in keys if k in shapes), None)
    if key is None or not shapes[key]:
        return
    expected = 2 if task == "qa" else len(labels or [])
    found = shapes[key][0]
    if found != expected:
        what = "start/end logits" if task == "qa" else f"labels in {path / 'config.json'} id2label"
        raise ExportError(f"{weights}: the {task} head {key} has {found} outputs (shape {shapes[key]}), "
                          f"but there are {expected} {what}")


def read_checkpoint(
    path: Path,
    task: str,
    pooling: Pooling | None = None,
    normalize: bool | None = None,
    max_length: int | None = None,
) -> CheckpointInfo:
    """Validate a checkpoint directory for `task`; explicit arguments override what it declares."""
    path = Path(path)
    if max_length is not None:
        check_max_length(max_length)
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
    load_tokenizer(path)

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
    if task in _HEAD_SUFFIX:
        _check_head_size(path, task, labels)

    st_pooling, st_normalize, st_max = _sentence_transformers_layout(
        path, pooling if task == "embed" else None)
    if task == "embed":
        pooling = pooling or st_pooling or "mean"
        if normalize is None:
            normalize = st_normalize if st_normalize is not None else True
    else:
        pooling, normalize = None, None

    positions = usable_positions(config)
    if positions is None:
        raise ExportError(f"{config_path}: config.json has no max_position_embeddings")
    tok_config = path / "tokenizer_config.json"
    tok_max = _read_json(tok_config).get("model_max_length") if tok_config.is_file() else None
    # The length a `berth train` head was fine-tuned at, when the checkpoint says so.
    trained = path / "berth_train.json"
    train_max = _read_json(trained).get("args", {}).get("max_length") if trained.is_file() else None
    declared: object = None
    for value, source in ((max_length, "--max-length"), (st_max, path / "sentence_bert_config.json"),
                          (train_max, trained), (tok_max, tok_config)):
        if value is None or (source == tok_config and (not isinstance(value, int) or value >= 100_000)):
            continue  # tokenizers without a limit say so with a huge model_max_length
        declared = check_max_length(value, f"{source} (max length)" if source != "--max-length" else source)
        break
    resolved_max = min(int(declared or positions), positions)
    if resolved_max < MIN_MAX_LENGTH:
        raise ExportError(f"{config_path}: max_position_embeddings leaves {resolved_max} positions, "
                          f"fewer than {MIN_MAX_LENGTH}")

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
    tokenizer = load_tokenizer(Path(path))
    # sentence-transformers ships all-MiniLM-L6-v2 with padding to 128 and truncation baked in.
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer
