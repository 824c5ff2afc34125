"""Task models on top of a base encoder: transformers' Auto*For* heads, with labels and
problem_type stored in config.json so the exporter, the pipelines and `berth eval` read them back.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from model.batching import SEQUENCE_KEYS

TASKS = ("classify", "ner", "qa")
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")


def register_architectures() -> None:
    """Teach transformers' Auto classes berth's own architectures (TextCNN); idempotent."""
    from model.textcnn import register

    register()


def attention_kwargs(model_type: str, implementation: str) -> dict[str, str]:
    """`attn_implementation` for from_pretrained/from_config: attention-free models refuse sdpa."""
    from model.textcnn import MODEL_TYPE

    return {} if model_type == MODEL_TYPE else {"attn_implementation": implementation}


def auto_class(task: str):
    register_architectures()
    from transformers import (
        AutoModelForQuestionAnswering,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
    )

    try:
        return {
            "classify": AutoModelForSequenceClassification,
            "ner": AutoModelForTokenClassification,
            "qa": AutoModelForQuestionAnswering,
        }[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}") from None


def build_task_model(
    base: str | Path,
    task: str,
    labels: list[str] | None = None,
    problem_type: str | None = None,
    attn_implementation: str = "sdpa",
):
    """A fresh task head on the encoder in `base` (any BERT-family checkpoint directory).

    sdpa trains fastest; the exporter reloads with eager attention so the ORT fuser can match it.
    A head already in `base` is replaced when its shape differs (e.g. other labels).
    """
    from transformers import AutoConfig

    register_architectures()
    config = AutoConfig.from_pretrained(base)
    if task in ("classify", "ner"):
        if not labels:
            raise ValueError(f"a {task} head needs labels")
        config.num_labels = len(labels)
        config.id2label = dict(enumerate(labels))
        config.label2id = {name: i for i, name in enumerate(labels)}
    if task == "classify":
        if problem_type not in PROBLEM_TYPES:
            raise ValueError(f"problem_type must be one of {PROBLEM_TYPES}, got {problem_type!r}")
        config.problem_type = problem_type
    return auto_class(task).from_pretrained(
        base, config=config, ignore_mismatched_sizes=True,
        **attention_kwargs(config.model_type, attn_implementation),
    )


def input_names(model) -> tuple[str, ...]:
    """The sequence inputs the model takes: DistilBERT has no token_type_ids, and RoBERTa has
    a single token type, so feeding it the tokenizer's 0/1 pair ids would index out of range."""
    params = inspect.signature(model.forward).parameters
    names = [name for name in SEQUENCE_KEYS if name in params]
    if "token_type_ids" in names and getattr(model.config, "type_vocab_size", 2) < 2:
        names.remove("token_type_ids")
    return tuple(names)


def load_tokenizer(path: str | Path):
    """The checkpoint's fast tokenizer with any padding/truncation baked into tokenizer.json
    turned off (all-MiniLM-L6-v2 ships padding to 128): berth pads per batch, and a clean
    tokenizer.json is what gets saved with the checkpoint and copied into bundles."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if not tokenizer.is_fast:
        raise ValueError(f"{path}: berth needs a fast tokenizer (tokenizer.json)")
    tokenizer.backend_tokenizer.no_padding()
    tokenizer.backend_tokenizer.no_truncation()
    return tokenizer


def save_checkpoint(model, tokenizer, path: str | Path) -> None:
    """Write model and tokenizer in the Hugging Face layout. Calls with `truncation=True` leave
    truncation switched on inside the Rust tokenizer, so clear it (and padding) first: the saved
    tokenizer.json must carry neither, as bundles copy it verbatim."""
    tokenizer.backend_tokenizer.no_padding()
    tokenizer.backend_tokenizer.no_truncation()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


def load_checkpoint(path: str | Path, task: str):
    """(model, tokenizer) from a checkpoint written by `berth train`, in eval mode."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: not a checkpoint directory (no config.json)")
    model = auto_class(task).from_pretrained(path)
    model.eval()
    return model, load_tokenizer(path)


def labels_of(model) -> list[str]:
    """Labels in index order from the model's config."""
    id2label = model.config.id2label
    return [id2label[i] for i in range(len(id2label))]


def usable_positions(config: dict) -> int | None:
    """The longest input a checkpoint's config.json allows: max_position_embeddings, less
    padding_idx + 1 for RoBERTa-style models (they number positions from padding_idx + 1, so
    those are never usable); None when the config has no position table (TextCNN)."""
    positions = config.get("max_position_embeddings")
    if not isinstance(positions, int):
        return None
    if config.get("model_type") in ("roberta", "xlm-roberta"):
        positions -= int(config.get("pad_token_id", 1)) + 1
    return positions
