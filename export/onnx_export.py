"""torch -> ONNX: one wrapper module per task around the transformers model, traced with dynamic axes."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from export.checkpoint import CheckpointInfo, ExportError
from model.heads import attention_kwargs, register_architectures
from service.manifest import TASK_OUTPUTS

OPSET = 17


def _auto_class(task: str):
    import transformers

    register_architectures()  # berth's own architectures (TextCNN) resolve like transformers' own
    return {
        "embed": transformers.AutoModel,
        "classify": transformers.AutoModelForSequenceClassification,
        "ner": transformers.AutoModelForTokenClassification,
        "qa": transformers.AutoModelForQuestionAnswering,
    }[task]


class _Encoder(nn.Module):
    """Calls the transformers model by keyword: transformers 5 reorders positional arguments."""

    def __init__(self, model: nn.Module, uses_token_type_ids: bool) -> None:
        super().__init__()
        self.model = model
        self.uses_token_type_ids = uses_token_type_ids

    def run(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor | None):
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, "return_dict": True}
        if self.uses_token_type_ids:
            kwargs["token_type_ids"] = token_type_ids
        return self.model(**kwargs)


class EmbedModel(_Encoder):
    """Token states plus pooled (and optionally L2-normalized) sentence vectors."""

    def __init__(self, model: nn.Module, uses_token_type_ids: bool, pooling: str, normalize: bool) -> None:
        super().__init__(model, uses_token_type_ids)
        self.pooling = pooling
        self.normalize = normalize

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        tokens = self.run(input_ids, attention_mask, token_type_ids).last_hidden_state  # [b, s, h]
        mask = attention_mask.unsqueeze(-1).to(tokens.dtype)  # [b, s, 1]
        if self.pooling == "mean":
            # Mean over attended tokens, special tokens included (sentence-transformers' Pooling).
            pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        elif self.pooling == "cls":
            pooled = tokens[:, 0]
        else:  # max: padding must never win, so push it far below any real activation
            pooled = (tokens * mask + (1.0 - mask) * -1e9).max(dim=1).values
        if self.normalize:
            pooled = nn.functional.normalize(pooled, p=2.0, dim=-1)
        return tokens, pooled


class LogitsModel(_Encoder):
    """Sequence or token classification: the head's logits."""

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        return self.run(input_ids, attention_mask, token_type_ids).logits


class SpanModel(_Encoder):
    """Extractive QA: start and end logits per token."""

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        out = self.run(input_ids, attention_mask, token_type_ids)
        return out.start_logits, out.end_logits


def _unused_weight(key: str, task: str) -> bool:
    """Weights the exported graph never uses, so a checkpoint may lack them: position_ids (a
    buffer), and for embed the pooler that AutoModel builds but EmbedModel never calls (raw
    RoBERTa, *ForMaskedLM and berth's ner/qa checkpoints are saved without one)."""
    return "position_ids" in key or (task == "embed" and key.split(".")[0] == "pooler")


def load_torch_model(info: CheckpointInfo) -> nn.Module:
    """The task wrapper around the checkpoint, in eval mode, with eager attention.

    With transformers >= 5 the default SDPA attention leaves the ORT optimizer nothing to fuse
    (0 of 6 Attention on MiniLM), so the export always loads the eager implementation.
    """
    weights = info.path / ("model.safetensors" if (info.path / "model.safetensors").is_file()
                           else "pytorch_model.bin")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model, loading = _auto_class(info.task).from_pretrained(
                str(info.path), output_loading_info=True, **attention_kwargs(info.model_type, "eager")
            )
    except (RuntimeError, ValueError, OSError) as exc:  # e.g. a head whose size is not id2label's
        text = " ".join(str(exc).split())
        raise ExportError(f"{weights}: transformers could not load the checkpoint for task "
                          f"{info.task!r}: {text[:300]}") from exc
    missing = [k for k in loading.get("missing_keys", []) if not _unused_weight(k, info.task)]
    if missing:
        raise ExportError(
            f"{weights}: weights missing for task {info.task!r}: "
            f"{', '.join(sorted(missing)[:5])}{' ...' if len(missing) > 5 else ''}"
        )
    model.eval()
    if info.task == "embed":
        wrapper: nn.Module = EmbedModel(model, info.uses_token_type_ids, info.pooling or "mean",
                                        bool(info.normalize))
    elif info.task == "qa":
        wrapper = SpanModel(model, info.uses_token_type_ids)
    else:
        wrapper = LogitsModel(model, info.uses_token_type_ids)
    return wrapper.eval()


def dummy_batch(info: CheckpointInfo) -> dict[str, torch.Tensor]:
    """Two rows of different length: the mask must contain real padding, or newer masking code
    may drop the mask as all-ones and bake that shortcut into the traced graph."""
    seq = 12
    ids = torch.full((2, seq), 7, dtype=torch.long)
    ids[1, 8:] = info.pad_token_id
    mask = torch.ones((2, seq), dtype=torch.long)
    mask[1, 8:] = 0
    batch = {"input_ids": ids, "attention_mask": mask}
    if info.uses_token_type_ids:
        types = torch.zeros((2, seq), dtype=torch.long)
        types[0, 6:] = 1
        batch["token_type_ids"] = types
    return batch


def export_onnx(wrapper: nn.Module, info: CheckpointInfo, out_path: Path) -> Path:
    """Trace `wrapper` to `out_path` with dynamic batch and sequence axes."""
    outputs = list(TASK_OUTPUTS[info.task])
    axes: dict[str, dict[int, str]] = {name: {0: "batch", 1: "sequence"} for name in info.input_names}
    for name in outputs:
        pooled = name in ("sentence_embedding",) or (info.task == "classify")
        axes[name] = {0: "batch"} if pooled else {0: "batch", 1: "sequence"}
    batch = dummy_batch(info)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # dynamo=False: the dynamo exporter (default since torch 2.9) ignores dynamic_axes and its
        # graphs are not what the ORT transformer optimizer pattern-matches.
        torch.onnx.export(
            wrapper,
            tuple(batch[name] for name in info.input_names),
            str(out_path),
            input_names=info.input_names,
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    return out_path


def torch_outputs(wrapper: nn.Module, info: CheckpointInfo, feeds: dict) -> dict:
    """Run the torch wrapper on numpy feeds; returns numpy outputs named as in the graph."""
    names = TASK_OUTPUTS[info.task]
    with torch.no_grad():
        args = [torch.from_numpy(feeds[name]) for name in info.input_names]
        result = wrapper(*args)
    if isinstance(result, torch.Tensor):
        result = (result,)
    return {name: tensor.numpy() for name, tensor in zip(names, result, strict=True)}
