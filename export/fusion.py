"""Offline fusion with onnxruntime's transformer optimizer, and the fused-operator count check."""

from __future__ import annotations

import logging
from pathlib import Path

from export.checkpoint import CheckpointInfo, ExportError

log = logging.getLogger(__name__)

GELU_OPS = ("BiasGelu", "FastGelu", "Gelu", "GemmFastGelu")
# Operators worth recording; zero counts are kept so a regression shows as a 0, not a gap.
COUNTED_OPS = ("Attention", "EmbedLayerNormalization", "SkipLayerNormalization", "LayerNormalization",
               *GELU_OPS)


def expected_counts(num_layers: int) -> dict[str, tuple[int, int | None]]:
    """(min, max) per fused op of a fully fused BERT-style encoder; max None = no upper bound.

    GELU has no upper bound: a head may add its own (ELECTRA's classification head is
    dense -> gelu -> out_proj, so its classifiers fuse layers + 1).
    """
    return {
        "Attention": (num_layers, num_layers),
        "SkipLayerNormalization": (2 * num_layers, None),
        "Gelu*": (num_layers, None),
        "EmbedLayerNormalization": (1, 1),
    }


def fusion_shortfalls(counts: dict[str, int], num_layers: int) -> list[str]:
    """What did not fuse, in words ("Attention 0, expected 6"); empty when fully fused."""
    problems = []
    for op, (low, high) in expected_counts(num_layers).items():
        found = sum(counts.get(g, 0) for g in GELU_OPS) if op == "Gelu*" else counts.get(op, 0)
        name = "GELU fusion (BiasGelu/FastGelu/Gelu)" if op == "Gelu*" else op
        if found < low or (high is not None and found > high):
            want = f"{low}" if high == low else f">= {low}"
            problems.append(f"{name} {found}, expected {want}")
    return problems


def fuse(info: CheckpointInfo, plain_path: Path, fused_path: Path) -> tuple[dict[str, int], list[str]]:
    """Write the fused graph; return its op counts and the warnings for what did not fuse.

    For BERT-style encoders a shortfall fails the export: an unfused graph silently loses the
    point of the fused (GPU) path. For other architectures it is recorded and warned about.
    """
    from onnxruntime.transformers import optimizer

    # opt_level 0: Python fusion only, so the file stays provider-neutral (ORT optimizes at load).
    model = optimizer.optimize_model(
        str(plain_path),
        model_type=info.optimizer_type,
        num_heads=info.num_heads,
        hidden_size=info.hidden_size,
        opt_level=0,
    )
    counts = {op: len(model.get_nodes_by_op_type(op)) for op in COUNTED_OPS}
    model.save_model_to_file(str(fused_path))
    problems = fusion_shortfalls(counts, info.num_layers)
    if problems and info.strict_fusion:
        # SDPA attention leaves no Attention pattern to fuse; the other shortfalls have other causes.
        hint = (" Was the model exported with eager attention?"
                if counts.get("Attention", 0) < info.num_layers else "")
        raise ExportError(
            f"fusion check failed for {info.model_type} ({info.path}): {'; '.join(problems)}.{hint}"
        )
    for problem in problems:
        log.warning("%s: partial fusion: %s", info.model_type, problem)
    return counts, problems
