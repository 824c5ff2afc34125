"""The smoothing int8 recipe: an exact fp32 rewrite that moves activation outliers into the weights."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.bundle import export_bundle
from export.gate_data import calibration_examples, default_examples
from export.parity import session, session_runner
from export.quantize import Int8Recipe, quantize_int8
from export.smoothing import smooth
from service.manifest import load_manifest

from .test_errors_and_gates import RELAXED


def _run(path, feeds):
    return session_runner(session(path, threads=1))(feeds)


def _token_feeds(rng, batch, length, vocab=100):
    ids = rng.integers(5, vocab, size=(batch, length)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[0, length // 2:] = 0  # one padded row
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def test_smoothing_is_exact_in_fp32_and_shares_one_scale_per_input(tiny_checkpoints, tmp_path):
    bundle = export_bundle(tiny_checkpoints("bert", "classify"), "classify", "m", tmp_path,
                           precisions=("fp32",), quick_bench=False)
    rng = np.random.default_rng(0)
    calibration = [_token_feeds(rng, 4, 12) for _ in range(3)]
    report = smooth(bundle / "model.onnx", tmp_path / "smoothed.onnx", calibration, alpha=0.9)

    graph = onnx.load(str(tmp_path / "smoothed.onnx")).graph
    muls = [n for n in graph.node if n.name.endswith("/Smooth")]
    layers = load_manifest(bundle).num_layers
    # Q, K and V read one input, so each layer has two fewer scales than smoothed MatMuls.
    assert report["smoothed_nodes"] - report["smoothed_inputs"] == 2 * layers
    assert len(muls) == report["smoothed_inputs"]
    qkv = [n for n in graph.node if n.name.endswith(("query/MatMul", "key/MatMul", "value/MatMul"))]
    assert len({n.input[0] for n in qkv}) == layers and all(n.input[0].endswith("/smoothed") for n in qkv)

    unseen = _token_feeds(rng, 3, 17)  # other shapes than the calibration
    before, after = _run(bundle / "model.onnx", unseen), _run(tmp_path / "smoothed.onnx", unseen)
    assert np.abs(before["logits"] - after["logits"]).max() <= 1e-4
    plain = onnx.load(str(bundle / "model.onnx")).graph
    original = {i.name: numpy_helper.to_array(i) for i in plain.initializer}
    changed = [i.name for i in graph.initializer
               if i.name in original and not np.array_equal(numpy_helper.to_array(i), original[i.name])]
    assert len(changed) == report["smoothed_nodes"]  # only the smoothed weights were rescaled


def _outlier_model(path, weights):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", weights.shape[0]])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", weights.shape[1]])
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="dense/MatMul")
    graph = helper.make_graph([node], "outlier", [x], [y], [numpy_helper.from_array(weights, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what onnxruntime reads everywhere; onnx would stamp its newest
    onnx.save(model, str(path))


def test_smoothing_rescues_channels_crushed_by_an_activation_outlier(tmp_path):
    rng = np.random.default_rng(1)
    weights = rng.normal(0, 0.1, (32, 16)).astype(np.float32)
    _outlier_model(tmp_path / "fp32.onnx", weights)

    def inputs(n):
        x = rng.normal(0, 1, (n, 32)).astype(np.float32)
        x[:, 3] *= 80.0  # one outlier channel, as BERT's residual stream has
        return x

    calibration, test = inputs(64), inputs(256)
    exact = test @ weights
    errors = {}
    for name, recipe in (("plain", Int8Recipe()), ("smoothed", Int8Recipe(smooth_alpha=0.9))):
        quantize_int8(tmp_path / "fp32.onnx", tmp_path / f"{name}.onnx", recipe, [{"x": calibration}])
        y = _run(tmp_path / f"{name}.onnx", {"x": test})["y"]
        errors[name] = float(np.abs(y - exact).mean())
    assert errors["smoothed"] < 0.5 * errors["plain"], errors
    assert not (tmp_path / "smoothed.onnx.smoothed.onnx").exists()  # the intermediate graph is removed


def test_a_smoothing_recipe_without_calibration_is_refused(tmp_path):
    _outlier_model(tmp_path / "fp32.onnx", np.ones((4, 2), np.float32))
    with pytest.raises(ValueError, match="calibration"):
        quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", Int8Recipe(smooth_alpha=0.9))
    with pytest.raises(ValueError, match="alpha"):
        smooth(tmp_path / "fp32.onnx", tmp_path / "s.onnx", [{"x": np.ones((2, 4), np.float32)}], alpha=1.5)


@pytest.mark.parametrize("task", ["classify", "ner", "qa"])
def test_calibration_comes_from_the_training_split_not_the_gate_set(task):
    calibration = calibration_examples(task, count=50)
    assert len(calibration) == 50
    gate = default_examples(task)
    assert not {repr(e) for e in calibration} & {repr(e) for e in gate}


def test_bundle_records_the_smoothing_recipe(tiny_checkpoints, tmp_path):
    bundle = export_bundle(tiny_checkpoints("bert", "qa"), "qa", "m", tmp_path, precisions=("fp32", "int8"),
                           thresholds=RELAXED, gate_limit=20, quick_bench=False,
                           int8_recipes=(Int8Recipe(smooth_alpha=0.9),))
    details = load_manifest(bundle).variants["int8"].details
    assert details["recipe"]["smooth_alpha"] == 0.9
    assert details["smoothing"]["smoothed_inputs"] > 0
    assert details["recipes_tried"][0]["smooth_alpha"] == 0.9
    assert details["ops"]["MatMulInteger"] > 0
    assert not list(bundle.glob("*.smoothed.onnx"))


@pytest.mark.parametrize("arch", ["bert", "albert", "distilbert", "roberta"])
def test_attention_only_recipe_keeps_exactly_the_feed_forward_matmuls(tiny_checkpoints, tmp_path, arch):
    """The last-resort recipe: both feed-forward MatMuls of every layer stay fp32, while Q/K/V and
    the attention output projection are quantized, whatever the architecture names them."""
    import fnmatch

    from export.quantize import ATTENTION_ONLY_INT8, FEED_FORWARD_NODES

    bundle = export_bundle(tiny_checkpoints(arch, "classify"), "classify", "m", tmp_path,
                           precisions=("fp32",), quick_bench=False)
    graph = onnx.load(str(bundle / "model.onnx")).graph
    matmuls = [n.name for n in graph.node if n.op_type == "MatMul"]
    kept = [n for n in matmuls if any(fnmatch.fnmatch(n, p) for p in FEED_FORWARD_NODES)]
    layers = load_manifest(bundle).num_layers
    # ALBERT runs one shared layer `layers` times: its graph repeats the same two MatMuls per pass.
    assert len(kept) == 2 * layers, kept
    assert not any("attention" in n or "query" in n or "q_lin" in n for n in kept), kept
    details = quantize_int8(bundle / "model.onnx", tmp_path / "int8.onnx", ATTENTION_ONLY_INT8)
    assert sorted(details["kept_fp32_nodes"]) == sorted(kept)
    quantized = onnx.load(str(tmp_path / "int8.onnx")).graph
    weights = {i.name for i in quantized.initializer}
    float_weighted = {n.name for n in quantized.node if n.op_type == "MatMul" and n.input[1] in weights}
    # Every other weighted MatMul (Q, K, V, attention output) became int8. (ALBERT's later passes
    # reach the shared weights through the graph rather than as initializers: subset, not equal.)
    assert float_weighted <= set(kept) and float_weighted
    assert details["ops"]["MatMulInteger"] >= 4
