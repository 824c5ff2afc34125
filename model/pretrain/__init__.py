"""Masked-LM pretraining (`berth train mlm`): the raw-text corpus, a WordPiece vocabulary trained
on it, BERT's 80/10/10 masking (token or whole-word, re-drawn every epoch), backbones built from
presets (BERT, ALBERT, TextCNN), the pretraining loop, and the study that compares pretrained and
randomly initialised encoders on SST-2 (docs/pretraining.md).
"""
