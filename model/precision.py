"""Training precision: fp32, or bf16 autocast where the CPU multiplies bf16 in hardware.

On a CPU with AMX tiles (Intel Sapphire Rapids and later) a bf16 matmul measured 4x the fp32 one
(1.06 TFLOPS vs 0.26 on 2 cores), and a MiniLM fine-tuning step (32 x 40 tokens) 0.37 s instead
of 0.67 s. Without AMX, bf16 is emulated or converted and buys nothing, so `auto` keeps fp32.

bf16 runs with eager attention: torch's CPU flash-attention backward in bf16 measured 60 ms
per layer, 10x its fp32 time, which cancelled the matmul gain. Weights, optimizer state and
gradients stay fp32 (autocast only lowers the operands of matmuls), and evaluation runs in fp32,
so the dev figures are those of the weights that get exported.
"""

from __future__ import annotations

import contextlib

PRECISIONS = ("auto", "fp32", "bf16")


def hardware_bf16() -> bool:
    """True when torch reports AMX tiles on this CPU (bf16 matmuls in hardware)."""
    import torch

    try:
        return bool(torch.cpu._is_amx_tile_supported())
    except AttributeError:  # an older torch without the probe: assume not
        return False


def resolve_precision(name: str | None) -> str:
    """'fp32' or 'bf16' for a requested precision ('auto': bf16 only with hardware support)."""
    name = name or "auto"
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {name!r}")
    if name == "auto":
        return "bf16" if hardware_bf16() else "fp32"
    return name


def attention_for(precision: str) -> str:
    """The attention implementation that trains fastest at this (resolved) precision."""
    return "eager" if precision == "bf16" else "sdpa"


def autocast(precision: str):
    """Context for a training forward pass: bf16 autocast, or nothing for fp32."""
    import torch

    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()
