"""int8 (dynamic, CPU) and fp16 (fp32 I/O, GPU) variants of an exported graph."""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, field
from pathlib import Path

import onnx


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

    def describe(self) -> dict[str, object]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


DEFAULT_INT8 = Int8Recipe()
# Tried in order when a gate fails: fastest first. Keeping the FFN output projections (the
# MatMul after GELU, whose inputs have the widest range) in fp32 raised MiniLM's cosine min from
# 0.966 to 0.979 for about 28% of the int8 speed (docs/export.md).
FALLBACK_INT8 = Int8Recipe(keep_fp32=("*output/dense/MatMul",))
INT8_RECIPES: tuple[Int8Recipe, ...] = (DEFAULT_INT8, FALLBACK_INT8)


def quantize_int8(src: Path, dst: Path, recipe: Int8Recipe = DEFAULT_INT8) -> dict[str, object]:
    """Dynamic int8 quantization of `src` into `dst`; returns the recipe and what stayed fp32."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(src), load_external_data=False).graph
    excluded = [n.name for n in graph.node if any(fnmatch.fnmatch(n.name, p) for p in recipe.keep_fp32)]
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
    quantized = onnx.load(str(dst), load_external_data=False).graph
    ops: dict[str, int] = {}
    for node in quantized.node:
        if node.op_type in ("MatMulInteger", "QAttention", "DynamicQuantizeLinear", "MatMul", "Attention"):
            ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return {"recipe": recipe.describe(), "kept_fp32_nodes": excluded, "ops": ops}


def convert_fp16(src: Path, dst: Path) -> dict[str, object]:
    """fp16 weights and compute with fp32 inputs and outputs (the GPU variant)."""
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(src)))
    # keep_io_types: callers feed int64 ids and read fp32 outputs whatever the precision inside.
    model.convert_float_to_float16(keep_io_types=True)
    model.save_model_to_file(str(dst))
    return {"keep_io_types": True}
