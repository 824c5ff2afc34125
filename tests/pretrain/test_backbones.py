"""The backbones: ALBERT shares one layer's weights and factorises its embedding; TextCNN is a
well-behaved transformers model (Auto classes, tied MLM decoder, padding-invariant outputs)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from model.pretrain.backbones import build_config, parameter_count  # noqa: E402


def test_albert_runs_one_shared_layer_at_every_depth():
    from transformers import AlbertModel

    config = build_config("albert", "tiny", vocab_size=500)
    config.num_hidden_layers = 5
    model = AlbertModel(config).eval()
    groups = model.encoder.albert_layer_groups
    assert len(groups) == 1 and len(groups[0].albert_layers) == 1
    layer = groups[0].albert_layers[0]
    calls = []
    layer.register_forward_hook(lambda module, args, out: calls.append(module))
    with torch.no_grad():
        model(input_ids=torch.tensor([[2, 7, 8, 9, 3]]))
    assert len(calls) == 5 and all(c is layer for c in calls)  # the same module, five times
    # One set of layer weights: depth adds no parameters.
    deep = build_config("albert", "tiny", vocab_size=500, overrides={"num_hidden_layers": 12})
    assert parameter_count(deep) == parameter_count(config)
    bert = [parameter_count(build_config("bert", "tiny", 500, overrides={"num_hidden_layers": n}))
            for n in (5, 12)]
    assert bert[1]["total"] > bert[0]["total"]


def test_albert_factorises_the_embedding():
    from transformers import AlbertModel

    config = build_config("albert", "small", vocab_size=800)
    assert config.embedding_size == 128 < config.hidden_size == 256
    model = AlbertModel(config)
    assert model.embeddings.word_embeddings.weight.shape == (800, 128)
    assert model.encoder.embedding_hidden_mapping_in.weight.shape == (256, 128)


def test_albert_base_is_more_than_8x_smaller_than_bert_base():
    """ALBERT-base (12 x 768, embedding 128) against BERT-base, same vocabulary: 8x at least."""
    bert = parameter_count(build_config("bert", "base", vocab_size=30000))
    albert = parameter_count(build_config("albert", "base", vocab_size=30000))
    assert bert["total"] / albert["total"] >= 8, (bert, albert)
    assert 105e6 < bert["total"] < 112e6 and 11e6 < albert["total"] < 13e6  # the papers' 108M / 12M


def _textcnn(task_class: str = "TextCNNForSequenceClassification", **overrides):
    import model.textcnn as textcnn

    config = textcnn.TextCNNConfig(vocab_size=300, embedding_size=16, hidden_size=24, kernel_sizes=[3, 5],
                                   num_hidden_layers=2, num_labels=3, **overrides)
    torch.manual_seed(0)
    return getattr(textcnn, task_class)(config).eval()


@pytest.mark.parametrize("head", ["TextCNNForSequenceClassification", "TextCNNForTokenClassification",
                                  "TextCNNForQuestionAnswering", "TextCNNForMaskedLM", "TextCNNModel"])
def test_textcnn_outputs_do_not_depend_on_padding(head):
    """A right-padded row computes exactly what it computes alone (the service batches rows)."""
    model = _textcnn(head)
    row = torch.tensor([[2, 17, 18, 19, 20, 3]])
    padded = torch.tensor([[2, 17, 18, 19, 20, 3, 0, 0, 0], [2, 5, 6, 7, 8, 9, 10, 11, 3]])
    mask = (padded != 0).long()
    mask[1] = 1
    with torch.no_grad():
        alone, batch = model(row, torch.ones_like(row)), model(padded, mask)
    for key, value in alone.items():
        other = batch[key]
        got = other[:1, : value.size(1)] if value.dim() > 2 or key.endswith("_logits") else other[:1]
        assert torch.allclose(value, got, atol=1e-5), key
    # Whatever sits in the padded positions, nothing changes.
    noisy = padded.clone()
    noisy[0, 6:] = 123
    with torch.no_grad():
        again = model(noisy, mask)
    for key in alone:
        assert torch.allclose(batch[key][:1], again[key][:1], atol=1e-6), key


def test_textcnn_pools_only_attended_positions():
    model = _textcnn("TextCNNModel")
    ids = torch.tensor([[2, 17, 18, 3, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    with torch.no_grad():
        out = model(ids, mask)
    assert torch.equal(out.pooler_output, out.last_hidden_state[:, :4].max(dim=1).values)
    assert torch.count_nonzero(out.last_hidden_state[:, 4:]) == 0


def test_textcnn_saves_and_loads_through_the_auto_classes(tmp_path):
    from transformers import AutoConfig, AutoModelForMaskedLM, AutoModelForSequenceClassification

    from model.heads import register_architectures

    register_architectures()
    mlm = _textcnn("TextCNNForMaskedLM")
    assert mlm.lm_head.decoder.weight is mlm.textcnn.embeddings.word_embeddings.weight  # tied
    mlm.save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).model_type == "textcnn"
    again = AutoModelForMaskedLM.from_pretrained(tmp_path).eval()
    assert again.lm_head.decoder.weight is again.textcnn.embeddings.word_embeddings.weight
    ids = torch.tensor([[2, 40, 41, 3]])
    with torch.no_grad():
        assert torch.allclose(mlm(ids).logits, again(ids).logits)
    # The encoder weights carry over into a task head (the classifier itself is new).
    cls = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=2)
    assert torch.equal(cls.textcnn.layers[1].convs[0].weight, mlm.textcnn.layers[1].convs[0].weight)


def test_textcnn_config_rejects_even_kernels_and_uneven_hidden():
    from huggingface_hub.errors import StrictDataclassClassValidationError

    from model.textcnn import TextCNNConfig

    with pytest.raises(StrictDataclassClassValidationError, match="odd widths"):
        TextCNNConfig(kernel_sizes=[2, 3], hidden_size=24)
    with pytest.raises(StrictDataclassClassValidationError, match="multiple of the number of kernel"):
        TextCNNConfig(kernel_sizes=[3, 5], hidden_size=25)
