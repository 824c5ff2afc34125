"""Session options shared by the service and the exporter's gates and timings, so both measure the
session the service runs. onnxruntime is imported inside the functions; the exporter's Docker build
stage copies this file alone, so runtime changes do not invalidate that stage."""

from __future__ import annotations

# ORT's CPU kernel for SkipLayerNormalization (residual Add + LayerNorm in one op) is slower than
# the Add and LayerNormalization it replaces: with the fusion off, all-MiniLM-L6-v2 int8 on one
# thread runs 24% more tokens/s (geometric mean over 1x16, 8x64, 32x32, 32x128: 13,658 vs
# 11,015; fp32 within noise). The fusion stays on for CUDA, where the fused kernel is the fast one.
CPU_DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)


def disabled_optimizers(ort_providers: tuple[str, ...] | list[str]) -> list[str]:
    """The graph optimizers to turn off for a session whose first provider is `ort_providers[0]`."""
    return list(CPU_DISABLED_OPTIMIZERS) if ort_providers[0] == "CPUExecutionProvider" else []


def session_options(threads: int):
    """`onnxruntime.SessionOptions` as every berth session sets them."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    # Explicit threads: ORT's default ignores container CPU limits and oversubscribes.
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Spinning threads steal the cores the event loop and tokenizer need.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts
