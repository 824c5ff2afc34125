"""Settings, runtime choice, thread sharing and tokenization rules, without serving anything."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.errors import InvalidInput
from service.manifest import Manifest, Variant
from service.metrics import Metrics
from service.registry import Registry
from service.runtime import choose_runtime
from service.settings import Settings, SettingsError, load_settings
from service.tokenization import TextTokenizer
from tests.tiny import tiny_tokenizer


def test_settings_from_env_and_errors_name_the_variable(monkeypatch):
    monkeypatch.setenv("BERTH_MAX_BATCH_SIZE", "7")
    monkeypatch.setenv("BERTH_CORS_ORIGINS", '["https://a.example"]')
    settings = load_settings(port=9001)
    assert (
        settings.max_batch_size == 7
        and settings.port == 9001
        and settings.cors_origins == ["https://a.example"]
    )
    with pytest.raises(ValidationError):  # frozen: read once, passed down
        settings.port = 1  # type: ignore[misc]
    monkeypatch.setenv("BERTH_MAX_WAIT_MS", "soon")
    with pytest.raises(SettingsError, match="BERTH_MAX_WAIT_MS"):
        load_settings()
    monkeypatch.delenv("BERTH_MAX_WAIT_MS")
    with pytest.raises(SettingsError, match="BERTH_PRECISION"):
        load_settings(precision="int4")


@pytest.mark.parametrize(
    ("value", "origins"),
    [
        ("https://a.example", ["https://a.example"]),
        ("https://a.example, http://b.example:8080", ["https://a.example", "http://b.example:8080"]),
        ('["https://a.example"]', ["https://a.example"]),
        ("", []),
    ],
)
def test_cors_origins_as_a_json_list_or_comma_separated(monkeypatch, value, origins):
    monkeypatch.setenv("BERTH_CORS_ORIGINS", value)
    assert load_settings().cors_origins == origins


def test_a_broken_cors_list_names_the_variable_not_a_traceback(monkeypatch):
    monkeypatch.setenv("BERTH_CORS_ORIGINS", '["https://a.example"')
    with pytest.raises(SettingsError, match="BERTH_CORS_ORIGINS: .*JSON list"):
        load_settings()


def test_empty_api_key_means_no_key(monkeypatch):
    monkeypatch.setenv("BERTH_API_KEY", "")
    assert load_settings().api_key is None


def manifest_with(*variants: tuple[str, str, str, list[str]]) -> Manifest:
    return Manifest(
        name="m",
        task="embed",
        architecture="bert",
        num_layers=1,
        hidden_size=4,
        num_heads=1,
        max_length=8,
        inputs=["input_ids", "attention_mask"],
        outputs=["token_embeddings", "sentence_embedding"],
        pooling="mean",
        normalize=True,
        variants={k: Variant(file=f, precision=p, graph="plain", default_for=d) for k, f, p, d in variants},
    )


CPU = ["CPUExecutionProvider"]
GPU = ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_auto_precision_int8_on_cpu_fp16_on_gpu_with_fp32_fallback():
    full = manifest_with(
        ("fp32", "model.onnx", "fp32", ["cpu"]),
        ("fp32-fused", "model.fused.onnx", "fp32", ["cuda"]),
        ("int8", "model.int8.onnx", "int8", ["cpu"]),
        ("fp16", "model.fp16.onnx", "fp16", ["cuda"]),
    )
    cpu = choose_runtime(full, "auto", "auto", CPU)
    assert (cpu.file, cpu.provider, cpu.ort_providers) == (
        "model.int8.onnx",
        "cpu",
        ("CPUExecutionProvider",),
    )
    gpu = choose_runtime(full, "auto", "auto", GPU)
    assert (gpu.file, gpu.provider) == ("model.fp16.onnx", "cuda") and gpu.ort_providers[
        0
    ] == "CUDAExecutionProvider"
    assert (
        choose_runtime(full, "cuda", "fp32", GPU).file == "model.fused.onnx"
    )  # the variant declared for cuda
    assert choose_runtime(full, "cpu", "fp32", GPU).file == "model.onnx"
    only_fp32 = manifest_with(("fp32", "model.onnx", "fp32", ["cpu"]))
    assert choose_runtime(only_fp32, "auto", "auto", CPU).precision == "fp32"
    assert choose_runtime(only_fp32, "auto", "auto", GPU).precision == "fp32"
    with pytest.raises(ValueError, match="cuda"):
        choose_runtime(full, "cuda", "auto", CPU)


def test_threads_times_concurrent_batches_never_exceed_cores(monkeypatch, tmp_path):
    monkeypatch.setattr("service.registry.cpu_count", lambda: 4)
    auto = Registry(Settings(models_dir=tmp_path), Metrics())
    # Default: one ORT thread a batch, as many batches at once as cores, each model may use all.
    assert (auto.threads, auto.slots, auto.lanes_per_model()) == (1, 4, 4)
    two = Registry(Settings(models_dir=tmp_path, intra_op_threads=2), Metrics())
    assert (two.threads, two.slots, two.lanes_per_model()) == (2, 2, 2)
    capped = Registry(Settings(models_dir=tmp_path, intra_op_threads=8, concurrent_batches=3), Metrics())
    assert (capped.threads, capped.slots, capped.lanes_per_model()) == (4, 1, 1)
    one_lane = Registry(Settings(models_dir=tmp_path, concurrent_batches=1), Metrics())
    assert (one_lane.threads, one_lane.slots, one_lane.lanes_per_model()) == (1, 4, 1)


def test_padding_allowance_defaults_by_provider(tmp_path):
    auto = Registry(Settings(models_dir=tmp_path), Metrics())
    assert auto.pad_allowance("cpu") == 8 and auto.pad_allowance("cuda") is None
    fixed = Registry(Settings(models_dir=tmp_path, batch_pad_allowance=0), Metrics())
    assert fixed.pad_allowance("cpu") == 0 and fixed.pad_allowance("cuda") == 0


@pytest.fixture
def tokenizer(tmp_path) -> TextTokenizer:
    path = tmp_path / "tokenizer.json"
    tok = tiny_tokenizer()
    tok.enable_padding(length=64)  # baked-in padding must be switched off on load
    tok.save(str(path))
    return TextTokenizer(path, max_length=6, max_chars=40)


def test_pairs_get_token_types_and_specials(tokenizer):
    enc = tokenizer.encode([("the movie", "good")]).encodings[0]
    assert enc.tokens == ["[CLS]", "the", "movie", "[SEP]", "good", "[SEP]"]
    assert enc.type_ids == [0, 0, 0, 0, 1, 1]


def test_truncation_directions_and_reporting(tokenizer):
    text = "the movie was good and bad"
    right = tokenizer.encode([text, "the"], direction="right")
    assert right.encodings[0].tokens == ["[CLS]", "the", "movie", "was", "good", "[SEP]"]
    assert right.truncated == [True, False] and right.truncated_count == 1 and right.tokens == 6 + 3
    left = tokenizer.encode([text], direction="left")
    assert left.encodings[0].tokens == ["[CLS]", "was", "good", "and", "bad", "[SEP]"]
    with pytest.raises(InvalidInput) as info:
        tokenizer.encode(["the", text], truncate=False)
    assert info.value.param == "inputs.1" and info.value.reason == "too_long"
    pair = tokenizer.encode([("the movie was", "good and bad")])
    assert len(pair.encodings[0].ids) == 6 and pair.truncated == [True]


def test_character_cap_runs_before_tokenizing(tokenizer):
    huge = "the " * 1000
    capped = tokenizer.encode([huge])
    assert capped.truncated == [True] and len(capped.encodings[0].ids) == 6
    with pytest.raises(InvalidInput, match="characters"):
        tokenizer.encode([huge], truncate=False)
    with pytest.raises(InvalidInput, match="non-empty"):
        tokenizer.encode([""])


def test_cpu_quota_of_the_container_caps_the_cores(tmp_path):
    from service.settings import cgroup_cpu_quota

    assert cgroup_cpu_quota(tmp_path) is None  # nothing readable: no quota
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path) is None  # v2, unlimited
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(tmp_path) == 1.5  # v2: docker run --cpus 1.5
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(tmp_path) is None  # v1, unlimited
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    assert cgroup_cpu_quota(tmp_path) == 2.0


def test_cpu_count_takes_the_smaller_of_affinity_and_quota(monkeypatch):
    import service.settings as settings

    monkeypatch.setattr(settings.os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.setattr(settings, "cgroup_cpu_quota", lambda: 2.5)
    assert settings.cpu_count() == 2
    monkeypatch.setattr(settings, "cgroup_cpu_quota", lambda: 0.5)
    assert settings.cpu_count() == 1
    monkeypatch.setattr(settings, "cgroup_cpu_quota", lambda: None)
    assert settings.cpu_count() == 16


def _add_layernorm_graph():
    """x + residual -> LayerNormalization: the pattern ORT fuses into SkipLayerNormalization."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    hidden = 8
    shape = ["batch", "seq", hidden]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in ("x", "r")]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
    weights = [numpy_helper.from_array(np.ones(hidden, np.float32), "gamma"),
               numpy_helper.from_array(np.zeros(hidden, np.float32), "beta")]
    nodes = [helper.make_node("Add", ["x", "r"], ["s"]),
             helper.make_node("LayerNormalization", ["s", "gamma", "beta"], ["y"], axis=-1, epsilon=1e-12)]
    graph = helper.make_graph(nodes, "add_ln", inputs, [out], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_cpu_sessions_keep_add_and_layernorm_unfused(tmp_path, monkeypatch):
    """The served CPU session turns SkipLayerNormFusion off (its CPU kernel is the slower one);
    the optimizer name is checked against onnxruntime itself, where a wrong name would do nothing."""
    import onnx
    import onnxruntime as ort

    from service.ort_options import disabled_optimizers
    from service.runtime import OrtRuntime, RuntimeChoice

    path = tmp_path / "model.onnx"
    onnx.save(_add_layernorm_graph(), path)

    def optimized_ops(disabled: list[str]) -> set[str]:
        opts = ort.SessionOptions()
        opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
        ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"],
                             disabled_optimizers=disabled)
        return {n.op_type for n in onnx.load(tmp_path / "optimized.onnx").graph.node}

    assert "SkipLayerNormalization" in optimized_ops([])
    cpu_disabled = disabled_optimizers(("CPUExecutionProvider",))
    assert "SkipLayerNormalization" not in optimized_ops(cpu_disabled)
    assert disabled_optimizers(("CUDAExecutionProvider", "CPUExecutionProvider")) == []

    seen: list[list[str]] = []
    real = ort.InferenceSession

    def recording(*args, disabled_optimizers=None, **kwargs):
        seen.append(list(disabled_optimizers or []))
        return real(*args, disabled_optimizers=disabled_optimizers, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", recording)
    choice = RuntimeChoice("model.onnx", "fp32", "fp32", "cpu", ("CPUExecutionProvider",))
    OrtRuntime(path, choice, intra_op_threads=1)
    assert seen == [cpu_disabled]
