"""A WordPiece vocabulary trained on the corpus with `tokenizers`, in BERT's uncased layout
(BertNormalizer lower-casing, BertPreTokenizer, [CLS] a [SEP] b [SEP] post-processor), saved as
the tokenizer.json that training, export and the service all load."""

from __future__ import annotations

from collections.abc import Iterable

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # [PAD] = 0, as the model configs assume
CONTINUATION = "##"


def _continuation_pieces(lines: list[str], normalizer, pre_tokenizer) -> list[str]:
    """`##c` for every character c that occurs after the first letter of a pre-tokenized word,
    sorted: the trainer's initial continuation pieces, named up front so their ids are fixed."""
    chars: set[str] = set()
    for line in lines:
        for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(line)):
            chars.update(word[1:])
    return [CONTINUATION + c for c in sorted(chars)]


def train_wordpiece(lines: Iterable[str], vocab_size: int, max_length: int = 512, min_frequency: int = 2):
    """A PreTrainedTokenizerFast with a vocabulary of at most `vocab_size` trained on `lines`;
    the same lines give the same vocabulary, ids included, on every run."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    lines = list(lines)
    normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True, clean_text=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    # tokenizers' trainer (BPE underneath) gives the `##c` pieces ids in hash-map order, which
    # differs per run, and breaks ties between equally frequent merges by those ids: the same
    # corpus gave another vocabulary each run (huggingface/tokenizers#1794). Passing the pieces in
    # as special tokens fixes their ids, so every merge is decided the same way; the tokenizer is
    # then rebuilt from the vocabulary with only the real special tokens.
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, continuing_subword_prefix=CONTINUATION,
        special_tokens=SPECIAL_TOKENS + _continuation_pieces(lines, normalizer, pre_tokenizer),
        show_progress=False,
    )
    scratch = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    scratch.normalizer, scratch.pre_tokenizer = normalizer, pre_tokenizer
    scratch.train_from_iterator(lines, trainer)

    tok = Tokenizer(models.WordPiece(vocab=scratch.get_vocab(), unk_token="[UNK]",
                                     max_input_chars_per_word=100, continuing_subword_prefix=CONTINUATION))
    tok.normalizer, tok.pre_tokenizer = normalizer, pre_tokenizer
    tok.add_special_tokens(SPECIAL_TOKENS)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    tok.decoder = decoders.WordPiece(prefix=CONTINUATION)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=max_length,
    )
