"""Backbones for pretraining from scratch, chosen by name and size: BERT, ALBERT and TextCNN.

ALBERT differs from BERT in two ways (Lan et al. 2020), both kept here: the vocabulary embeds
into `embedding_size` (< hidden) and is projected up, and every layer runs the same weights
(one layer group, `num_hidden_groups=1`). The presets give each architecture the same hidden
size and depth per size name, so parameter counts compare like for like.
"""

from __future__ import annotations

ARCHS = ("bert", "albert", "textcnn")
SIZES = ("tiny", "small", "base")

_ENCODER = {
    "tiny": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512),
    "small": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}
PRESETS: dict[str, dict[str, dict]] = {
    "bert": _ENCODER,
    # ALBERT-base's factorised embedding is 128 wide; the small ones scale it down with the hidden size.
    "albert": {"tiny": {**_ENCODER["tiny"], "embedding_size": 64},
               "small": {**_ENCODER["small"], "embedding_size": 128},
               "base": {**_ENCODER["base"], "embedding_size": 128}},
    "textcnn": {"tiny": dict(embedding_size=64, hidden_size=192, num_hidden_layers=1),
                "small": dict(embedding_size=128, hidden_size=384, num_hidden_layers=2),
                "base": dict(embedding_size=256, hidden_size=768, num_hidden_layers=3)},
}


def parse_overrides(text: str) -> dict[str, object]:
    """`key=value,key=value` -> dict, values read as int, float, bool or a list of ints (a:b:c)."""
    out: dict[str, object] = {}
    for item in filter(None, (x.strip() for x in (text or "").split(","))):
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"config override {item!r} is not key=value")
        value: object
        if ":" in raw:
            value = [int(x) for x in raw.split(":")]
        elif raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        else:
            try:
                value = int(raw)
            except ValueError:
                try:
                    value = float(raw)
                except ValueError:
                    value = raw
        out[key.strip()] = value
    return out


def build_config(arch: str, size: str, vocab_size: int, pad_token_id: int = 0,
                 max_position_embeddings: int = 512, overrides: dict | None = None):
    """A from-scratch config of `arch` at preset `size`, with `overrides` applied last."""
    from transformers import AlbertConfig, BertConfig

    from model.textcnn import TextCNNConfig

    if arch not in PRESETS:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {', '.join(ARCHS)}")
    if size not in PRESETS[arch]:
        raise ValueError(f"unknown size {size!r}; expected one of {', '.join(SIZES)}")
    common = dict(vocab_size=vocab_size, pad_token_id=pad_token_id,
                  max_position_embeddings=max_position_embeddings)
    settings = {**PRESETS[arch][size], **common, **(overrides or {})}
    if arch == "bert":
        return BertConfig(**settings)
    if arch == "albert":
        # One shared layer group; the same dropout as the BERT preset (ALBERT-v2 sets it to 0 for
        # its 16 GB corpus, but on a corpus of 0.6 M words dropout is what keeps it from memorising).
        defaults = dict(num_hidden_groups=1, inner_group_num=1, hidden_dropout_prob=0.1,
                        attention_probs_dropout_prob=0.1, hidden_act="gelu")
        return AlbertConfig(**{**defaults, **settings})
    return TextCNNConfig(**settings)


def parameter_count(config) -> dict[str, int]:
    """Parameters of the bare encoder (AutoModel: embeddings + layers + pooler, no task head),
    counted on the meta device so even BERT-base costs no memory."""
    import torch
    from transformers import AutoModel

    from model.heads import register_architectures

    register_architectures()
    with torch.device("meta"):
        model = AutoModel.from_config(config)
    total = sum(p.numel() for p in model.parameters())
    embeddings = sum(p.numel() for name, p in model.named_parameters() if name.startswith("embeddings."))
    return {"total": total, "embeddings": embeddings, "rest": total - embeddings}


def mlm_parts(model):
    """(encoder, MLM head) of a *ForMaskedLM model, so the head runs on the masked positions only
    (about 15% of the tokens: the vocabulary projection is the costliest matrix of a small model);
    None when the architecture is not one of these, and the full forward computes the loss."""
    for encoder_name, head_name in (("bert", "cls"), ("albert", "predictions"), ("textcnn", "lm_head"),
                                    ("roberta", "lm_head")):
        encoder, head = getattr(model, encoder_name, None), getattr(model, head_name, None)
        if encoder is not None and head is not None:
            return encoder, head
    return None
