"""The bundle writer: checkpoint -> ONNX variants that passed their gates + tokenizer + berth.json."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from export.checkpoint import (
    CheckpointInfo,
    ExportError,
    bundle_tokenizer,
    check_bundle_name,
    check_max_length,
    read_checkpoint,
)
from export.gate_data import (
    CALIBRATION_FILES,
    DEFAULT_FILES,
    Example,
    calibration_examples,
    check_qa_fits,
    default_examples,
    encode,
    parity_batches,
)
from export.parity import (
    DEFAULT_THRESHOLDS,
    GateError,
    fp16_check,
    fp32_gate,
    int8_gate,
    run_all,
    session,
    session_runner,
    task_agreement,
)
from export.quantize import INT8_RECIPES, Int8Recipe, convert_fp16, quantize_int8
from service.manifest import TASK_OUTPUTS, TOKENIZER_NAME, Manifest, Pooling, Variant, write_manifest

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "int8", "fp16")
NO_FUSION = "not applicable: the architecture has no attention or BERT embedding for ORT to fuse"
FILES = {"fp32": "model.onnx", "fp32-fused": "model.fused.onnx", "int8": "model.int8.onnx",
         "int8-fused": "model.int8.fused.onnx", "fp16": "model.fp16.onnx"}


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__}


def _cuda_available() -> bool:
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def export_bundle(
    checkpoint: Path,
    task: str,
    name: str,
    out_dir: Path,
    precisions: Sequence[str] = ("fp32", "int8"),
    gate_texts: Sequence[Example] | None = None,
    *,
    thresholds: Mapping[str, float] | None = None,
    gate_limit: int | None = None,
    pooling: Pooling | None = None,
    normalize: bool | None = None,
    max_length: int | None = None,
    int8_recipes: Sequence[Int8Recipe] = INT8_RECIPES,
    quick_bench: bool = True,
    overwrite: bool = False,
    threads: int = 2,
) -> Path:
    """Export `checkpoint` for `task` as the bundle `out_dir/name` and return its path.

    gate_texts: the int8 gate's inputs (texts, (text, pair) tuples, word lists for ner,
    (question, context) tuples for qa); default: the repo's dev set for the task. thresholds
    override entries of `parity.DEFAULT_THRESHOLDS` (only for tiny test models). quick_bench:
    time plain vs fused per precision at two shapes to pick the CPU defaults (`berth bench-model`
    refines them); without it the plain graph is the CPU default, as measured in references.md.
    The bundle is built beside its destination and renamed into place only when every gate passed.
    """
    check_bundle_name(name)  # before any work: "a/b", "", "." or ".x" would escape or hide the bundle
    if max_length is not None:
        check_max_length(max_length)
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown or "fp32" not in precisions:
        raise ExportError(f"precisions must include fp32 and be among {PRECISIONS}, got {list(precisions)}")
    limits = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    info = read_checkpoint(Path(checkpoint), task, pooling=pooling, normalize=normalize,
                           max_length=max_length)
    out_dir = Path(out_dir)
    final = out_dir / name
    if final.exists() and not overwrite:
        raise ExportError(f"{final}: already exists (pass overwrite=True / --overwrite to replace it)")
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=out_dir))
    work.chmod(0o755)  # mkdtemp makes it owner-only; the service may run as another user
    try:
        manifest = _build(info, name, work, precisions, gate_texts, limits, gate_limit, int8_recipes,
                          quick_bench, threads)
        write_manifest(work, manifest)
        if final.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".old", dir=out_dir))
            final.rename(trash / name)
            shutil.rmtree(trash)
        work.rename(final)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    log.info("wrote bundle %s", final)
    return final


def _build(info: CheckpointInfo, name: str, work: Path, precisions: Sequence[str],
           gate_texts: Sequence[Example] | None, limits: Mapping[str, float], gate_limit: int | None,
           recipes: Sequence[Int8Recipe], quick_bench: bool, threads: int) -> Manifest:
    from export.fusion import fuse
    from export.onnx_export import export_onnx, load_torch_model, torch_outputs

    tokenizer = bundle_tokenizer(info.path)
    examples = list(gate_texts) if gate_texts is not None else default_examples(info.task)
    if gate_limit is not None:
        examples = examples[:gate_limit]
    if info.task == "qa":  # before any work: a question longer than max_length leaves no context
        check_qa_fits(tokenizer, info, examples,
                      "gate_texts" if gate_texts is not None else str(DEFAULT_FILES["qa"]))
    tokenizer.save(str(work / TOKENIZER_NAME))
    wrapper = load_torch_model(info)
    export_onnx(wrapper, info, work / FILES["fp32"])
    fusable = info.optimizer_type is not None
    if fusable:
        fused_ops, unfused = fuse(info, work / FILES["fp32"], work / FILES["fp32-fused"])
    else:
        fused_ops, unfused = {}, []
        log.info("%s: no offline fusion applies (no attention); the bundle has plain graphs only",
                 info.model_type)
    graphs = (("plain", ""), ("fused", "-fused")) if fusable else (("plain", ""),)

    def reference(batches):
        return [torch_outputs(wrapper, info, b.feeds) for b in batches]

    # fp32: both graphs against torch on small batches unlike the 2 x 12 dummy, with padding.
    small = parity_batches(tokenizer, info, examples)
    small_ref = reference(small)
    variants: dict[str, Variant] = {}
    for graph, suffix in graphs:
        key = f"fp32{suffix}"
        run = session_runner(session(work / FILES[key], threads))
        try:
            figures = fp32_gate(small_ref, run_all(run, small), limits)
        except GateError as exc:
            raise GateError(f"{FILES[key]}: {exc}") from exc
        ops = fused_ops if graph == "fused" else {}
        details: dict[str, object] = {"unfused": unfused} if graph == "fused" and unfused else {}
        if not fusable:
            details["fusion"] = NO_FUSION
        variants[key] = Variant(file=FILES[key], precision="fp32", graph=graph, parity=figures,
                                fused_ops=ops, details=details)

    full = encode(tokenizer, info, examples) if ("int8" in precisions or "fp16" in precisions) else []
    full_ref = reference(full) if full else []
    if "int8" in precisions:
        for graph, suffix in graphs:  # plain first: it is the CPU default, the fused one an extra
            key = f"int8{suffix}"
            try:
                ops = fused_ops if graph == "fused" else {}
                variants[key] = _int8_variant(info, work, key, f"fp32{suffix}", graph, recipes, full,
                                              full_ref, limits, threads, ops)
            except GateError as exc:
                if graph != "fused":
                    raise
                # The plain int8 graph passed: ship it without the fused one rather than refuse
                # the bundle (`berth models` would then fall back to fp32 only).
                (work / FILES[key]).unlink(missing_ok=True)
                plain = variants["int8"]
                variants["int8"] = plain.model_copy(update={"details": {
                    **plain.details,
                    "int8_fused": f"not shipped: {FILES[key]} failed its gate with every recipe "
                                  f"({exc}); the plain int8 graph passed",
                    "int8_fused_recipes_tried": getattr(exc, "tried", []),
                }})
                log.warning("%s: shipping int8 without %s: %s", info.path, FILES[key], exc)
    if "fp16" in precisions:
        variants["fp16"] = _fp16_variant(info, work, full, full_ref, limits, fused_ops, graphs[-1][0])

    variants = _initial_defaults(variants)
    manifest = Manifest(
        name=name, task=info.task, architecture=info.model_type, num_layers=info.num_layers,
        hidden_size=info.hidden_size, num_heads=info.num_heads, max_length=info.max_length,
        inputs=info.input_names, outputs=list(TASK_OUTPUTS[info.task]), labels=info.labels,
        problem_type=info.problem_type, pooling=info.pooling, normalize=info.normalize,
        variants=variants, versions=_versions(),
        source={"checkpoint": str(info.path.resolve()), "pad_token_id": info.pad_token_id,
                "gate_examples": len(examples), "thresholds": dict(limits)},
    )
    if quick_bench:
        from export.bench import QUICK_SHAPES, SERVICE_THREADS_PER_BATCH, bench_bundle, choose_cpu_defaults

        write_manifest(work, manifest)
        # Timed as the service runs a batch by default: on one thread (service/settings.py,
        # intra_op_threads), whatever threads the gates ran on.
        results = bench_bundle(work, QUICK_SHAPES, threads=SERVICE_THREADS_PER_BATCH, seconds=1.0,
                               with_torch=False, rounds=3)
        manifest = choose_cpu_defaults(manifest, results)
    return manifest


def _int8_variant(info: CheckpointInfo, work: Path, key: str, src: str, graph: str,
                  recipes: Sequence[Int8Recipe], batches, reference, limits: Mapping[str, float],
                  threads: int, fused_ops: dict[str, int]) -> Variant:
    """The first recipe (fastest first) whose int8 graph passes the task gate; GateError if none."""
    tried: list[dict[str, object]] = []
    error: GateError | None = None
    calibration: list[dict] | None = None
    for recipe in recipes:
        if recipe.smooth_alpha is not None and calibration is None:
            tokenizer = bundle_tokenizer(info.path)
            examples = calibration_examples(info.task)
            if info.task == "qa":
                check_qa_fits(tokenizer, info, examples, str(CALIBRATION_FILES["qa"]))
            calibration = [b.feeds for b in encode(tokenizer, info, examples)]
        details = quantize_int8(work / FILES[src], work / FILES[key], recipe, calibration)
        run = session_runner(session(work / FILES[key], threads))
        figures = task_agreement(info.task, info.problem_type, batches, reference, run_all(run, batches))
        tried.append({"keep_fp32": list(recipe.keep_fp32), "per_channel": recipe.per_channel,
                      "smooth_alpha": recipe.smooth_alpha, **figures})
        try:
            int8_gate(info.task, figures, limits, f"{FILES[key]} int8 vs torch fp32")
        except GateError as exc:
            error = exc
            log.warning("%s: recipe %s failed: %s", FILES[key], recipe.describe(), exc)
            continue
        return Variant(file=FILES[key], precision="int8", graph=graph, parity=figures, fused_ops=fused_ops,
                       details={**details, "recipes_tried": tried})
    assert error is not None, "no int8 recipe given"
    failure = GateError(f"{error} (after {len(tried)} recipe(s))")
    failure.tried = tried  # type: ignore[attr-defined]
    raise failure from error


def _fp16_variant(info: CheckpointInfo, work: Path, batches, reference, limits: Mapping[str, float],
                  fused_ops: dict[str, int], graph: str) -> Variant:
    """fp16 from the fused graph (the plain one where nothing fuses). Its gate needs a GPU: without
    one it is recorded as unverified."""
    details = convert_fp16(work / FILES["fp32-fused" if graph == "fused" else "fp32"], work / FILES["fp16"])
    parity: dict[str, float] = {}
    if _cuda_available():
        run = session_runner(session(work / FILES["fp16"], providers=["CUDAExecutionProvider"]))
        parity = fp16_check(reference, run_all(run, batches))
        if not parity["cosine_mean"] >= limits["fp16_cosine_mean"]:
            raise GateError(f"{FILES['fp16']} fp16 gate failed: cosine_mean {parity['cosine_mean']:.5f} "
                            f"< {limits['fp16_cosine_mean']} vs torch fp32 on CUDA")
        details["gpu_verified"] = True
    else:
        details["gpu_verified"] = False
        details["note"] = "no CUDA provider at export time: the fp16 cosine gate (>= 0.999) did not run"
        log.warning("%s: fp16 variant written unverified (no GPU here)", info.path)
    return Variant(file=FILES["fp16"], precision="fp16", graph=graph, parity=parity,
                   fused_ops=fused_ops, details=details)


def _initial_defaults(variants: dict[str, Variant]) -> dict[str, Variant]:
    """Defaults before any timing: plain on CPU (references.md: offline-fused fp32 is slower on
    this CPU, fused int8 wins only at batch 1), fused on CUDA (fused attention is the GPU path)."""
    defaults = {"fp32": ["cpu"], "fp32-fused": ["cuda"], "int8": ["cpu"], "int8-fused": [], "fp16": ["cuda"]}
    whys = {"fp32": "CPU default: plain graph (not timed at export; see references.md)",
            "fp32-fused": "CUDA default: fused attention is the GPU path",
            "int8": "CPU default: plain graph (not timed at export; see references.md)",
            "fp16": "CUDA default: fp16 fused graph with fp32 I/O"}
    if "fp32-fused" not in variants:  # nothing fused (TextCNN): the plain graphs serve every provider
        defaults["fp32"] = ["cpu", "cuda"]
        whys["fp32"] = "CPU and CUDA default: the only fp32 graph (no fusion applies to this architecture)"
        whys["fp16"] = "CUDA default: fp16 plain graph with fp32 I/O"
    return {k: Variant(**{**v.model_dump(), "default_for": defaults[k], "why": whys.get(k, "")})
            for k, v in variants.items()}
