"""SmoothQuant-style smoothing of an fp32 graph before dynamic int8 quantization.

Dynamic int8 quantizes each MatMul's activation with one scale for the whole tensor. BERT-family
encoders carry a few hidden channels whose activations are tens of times larger than the rest,
so that one scale leaves the other channels a handful of int8 steps: this is what moves the argmax
span of a QA model whose start/end logits are flat. Smoothing divides each input channel j of the
activation by s_j and multiplies row j of the weight by s_j, an exact rewrite in fp32
(X W = (X / s)(s W)), with s_j = max|X_j|^alpha / max|W_j|^(1 - alpha) measured on calibration
inputs: the activation outliers move into the weights, which are quantized per output channel and
absorb them far better. In BERT the layer norm that feeds Q/K/V also feeds the residual branch,
so the division cannot be folded into it: a `Mul` by 1/s is inserted before each smoothed input
(one per distinct input tensor; Q, K and V share theirs).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

# Ops whose second input is a constant [in, out] weight that dynamic quantization turns into int8.
SMOOTHABLE_OPS = ("MatMul", "Attention")


def _targets(graph: onnx.GraphProto, exclude: Iterable[str]) -> dict[str, list[onnx.NodeProto]]:
    """Smoothable nodes grouped by their activation input; a weight used anywhere else is left alone."""
    inits = {i.name: i for i in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    excluded = set(exclude)
    groups: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        if node.op_type not in SMOOTHABLE_OPS or node.name in excluded or len(node.input) < 2:
            continue
        weight = inits.get(node.input[1])
        if weight is None or len(weight.dims) != 2 or uses[node.input[1]] != 1:
            continue
        groups.setdefault(node.input[0], []).append(node)
    return groups


def activation_absmax(model: onnx.ModelProto, tensors: Sequence[str],
                      calibration: Iterable[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-channel max |x| of `tensors` (last axis) over every position of the calibration feeds,
    padding included: the dynamic quantizer sees the padded positions too."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    present = {o.name for o in probe.graph.output}
    for name in tensors:
        if name not in present:
            probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    sess = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    wanted = {i.name for i in sess.get_inputs()}
    absmax: dict[str, np.ndarray] = {}
    batches = 0
    for feeds in calibration:
        values = sess.run(list(tensors), {k: v for k, v in feeds.items() if k in wanted})
        for name, value in zip(tensors, values, strict=True):
            m = np.abs(value.reshape(-1, value.shape[-1])).max(axis=0)
            absmax[name] = m if name not in absmax else np.maximum(absmax[name], m)
        batches += 1
    if not batches:
        raise ValueError("smoothing needs at least one calibration batch")
    return absmax


def smooth(src: Path, dst: Path, calibration: Iterable[Mapping[str, np.ndarray]], alpha: float,
           exclude: Iterable[str] = ()) -> dict[str, object]:
    """Write the smoothed fp32 graph of `src` to `dst`; returns what was smoothed."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"smoothing alpha must be within (0, 1), got {alpha}")
    model = onnx.load(str(src))
    graph = model.graph
    groups = _targets(graph, exclude)
    absmax = activation_absmax(model, sorted(groups), calibration)
    inits = {i.name: i for i in graph.initializer}
    order = {id(node): i for i, node in enumerate(graph.node)}
    inserts: list[tuple[int, onnx.NodeProto]] = []
    ratios = []
    for tensor, nodes in groups.items():
        weights = [numpy_helper.to_array(inits[n.input[1]]) for n in nodes]
        w_max = np.max([np.abs(w).max(axis=1) for w in weights], axis=0)
        a_max = absmax[tensor]
        scale = np.power(np.maximum(a_max, 1e-5), alpha) / np.power(np.maximum(w_max, 1e-5), 1.0 - alpha)
        scale = np.where(a_max > 0, np.clip(scale, 1e-5, 1e5), 1.0).astype(np.float32)
        ratios.append(float(a_max.max() / max(np.median(a_max), 1e-12)))
        for node, weight in zip(nodes, weights, strict=True):
            scaled = (weight * scale[:, None]).astype(np.float32)
            inits[node.input[1]].CopyFrom(numpy_helper.from_array(scaled, node.input[1]))
        smoothed = f"{tensor}/smoothed"
        inv_name = f"{tensor}/smooth_scale"
        graph.initializer.append(numpy_helper.from_array((1.0 / scale).astype(np.float32), inv_name))
        mul = onnx.helper.make_node("Mul", [tensor, inv_name], [smoothed], name=f"{tensor}/Smooth")
        for node in nodes:
            node.input[0] = smoothed
        inserts.append((min(order[id(n)] for n in nodes), mul))
    # Keep the graph topologically sorted: each Mul goes right before its first consumer.
    for index, mul in sorted(inserts, key=lambda item: item[0], reverse=True):
        graph.node.insert(index, mul)
    onnx.save(model, str(dst))
    return {"alpha": alpha, "smoothed_inputs": len(groups),
            "smoothed_nodes": sum(len(n) for n in groups.values()),
            "activation_outlier_ratio_max": round(max(ratios, default=0.0), 1)}
