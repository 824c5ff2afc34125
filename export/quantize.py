"""int8 (dynamic, CPU) and fp16 (fp32 I/O, GPU) variants of an exported graph."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx

from export.smoothing import smooth


@dataclass(frozen=True)
class Int8Recipe:
    """How weights are quantized. The default is the one that passed the gates at the best speed
    on all-MiniLM-L6-v2 (docs/export.md has the alternatives and their figures)."""

    # Per-channel weight scales: per-tensor loses too much (MiniLM cosine min 0.78).
    per_channel: bool = True
    # MatMul covers the dense layers of the plain graph; Attention is the fused graph's QAttention.
    op_types: tuple[str, ...] = ("MatMul", "Attention")
    # Only MatMuls with a constant weight: activation x activation products stay fp32.
    matmul_const_b_only: bool = True
    reduce_range: bool = False
    # Node-name patterns (fnmatch) that stay fp32.
    keep_fp32: tuple[str, ...] = field(default_factory=tuple)
    # SmoothQuant migration strength (export/smoothing.py); None: no smoothing. Needs calibration inputs.
    smooth_alpha: float | None = None

    def describe(self) -> dict[str, object]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


DEFAULT_INT8 = Int8Recipe()
# Tried in order when a gate fails, fastest first. Smoothing (export/smoothing.py) costs one
# elementwise Mul per smoothed input; alpha 0.9 was the best of 0.3-0.9 on the qa model
# (best-span agreement 0.85 -> 0.92; docs/export.md).
SMOOTH_INT8 = Int8Recipe(smooth_alpha=0.9)
# Keeping the output projections (attention output and FFN output, the MatMul after GELU whose
# inputs have the widest range) fp32 raised MiniLM's cosine min from 0.966 to 0.979 and, with
# smoothing, the qa model's span agreement to 0.96, for about 28% of the int8 speed.
FALLBACK_INT8 = Int8Recipe(keep_fp32=("*output/dense/MatMul",), smooth_alpha=0.9)
# The feed-forward block's two MatMuls (two thirds of an encoder layer's multiply-adds) in fp32,
# the attention projections in int8: the last resort, for a QA model whose flat start/end logits
# none of the above keeps (session 3, the bf16-trained qa model, best-span agreement: default
# 0.841, smoothed 0.914, smoothed + output projections fp32 0.923, no single layer kept fp32 above
# 0.933, this recipe 0.958 at 1.26x the fp32 graph's speed on one thread; docs/export.md).
# Node names of BERT/RoBERTa/ELECTRA (intermediate, output), DistilBERT (ffn.lin1/2), ALBERT
# (ffn, ffn_output; the tracer numbers the shared layer's later passes ffn_1, ffn_output_1, ...);
# "[0-9]/output" leaves the attention's own output projection in int8.
FEED_FORWARD_NODES = ("*/intermediate/dense/MatMul", "*layer.*[0-9]/output/dense/MatMul",
                      "*/ffn/lin1/MatMul", "*/ffn/lin2/MatMul",
                      "*/ffn/MatMul", "*/ffn_[0-9]*/MatMul", "*/ffn_output*/MatMul")
ATTENTION_ONLY_INT8 = Int8Recipe(keep_fp32=FEED_FORWARD_NODES)
INT8_RECIPES: tuple[Int8Recipe, ...] = (DEFAULT_INT8, SMOOTH_INT8, FALLBACK_INT8, ATTENTION_ONLY_INT8)


def quantize_int8(src: Path, dst: Path, recipe: Int8Recipe = DEFAULT_INT8,
                  calibration: Iterable[Mapping[str, np.ndarray]] | None = None) -> dict[str, object]:
    """Dynamic int8 quantization of `src` into `dst`; returns the recipe and what stayed fp32.

    calibration: graph feeds to measure activations on, needed by a smoothing recipe only."""
    graph = onnx.load(str(src), load_external_data=False).graph
    excluded = [n.name for n in graph.node if any(fnmatch.fnmatch(n.name, p) for p in recipe.keep_fp32)]
    smoothing: dict[str, object] = {}
    if recipe.smooth_alpha is not None:
        if calibration is None:
            raise ValueError("an int8 recipe with smoothing needs calibration inputs")
        smoothed = dst.with_name(dst.name + ".smoothed.onnx")
        smoothing = smooth(src, smoothed, calibration, recipe.smooth_alpha, exclude=excluded)
        src = smoothed
    try:
        _quantize(src, dst, recipe, excluded)
    finally:
        if recipe.smooth_alpha is not None:
            src.unlink(missing_ok=True)
    quantized = onnx.load(str(dst), load_external_data=False).graph
    ops: dict[str, int] = {}
    for node in quantized.node:
        if node.op_type in ("MatMulInteger", "QAttention", "DynamicQuantizeLinear", "MatMul", "Attention"):
            ops[node.op_type] = ops.get(node.op_type, 0) + 1
    details: dict[str, object] = {"recipe": recipe.describe(), "kept_fp32_nodes": excluded, "ops": ops}
    if smoothing:
        details["smoothing"] = smoothing
    return details


def _quantize(src: Path, dst: Path, recipe: Int8Recipe, excluded: list[str]) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(src),
        str(dst),
        op_types_to_quantize=list(recipe.op_types),
        per_channel=recipe.per_channel,
        reduce_range=recipe.reduce_range,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=excluded,
        extra_options={
            # The fused graph's contrib ops defeat ONNX shape inference; without a default type
            # quantize_dynamic stops on the first tensor it cannot type.
            "DefaultTensorType": onnx.TensorProto.FLOAT,
            "MatMulConstBOnly": recipe.matmul_const_b_only,
        },
    )


def convert_fp16(src: Path, dst: Path) -> dict[str, object]:
    """fp16 weights and compute with fp32 inputs and outputs (the GPU variant)."""
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(src)))
    # keep_io_types: callers feed int64 ids and read fp32 outputs whatever the precision inside.
    model.convert_float_to_float16(keep_io_types=True)
    model.save_model_to_file(str(dst))
    return {"keep_io_types": True}
