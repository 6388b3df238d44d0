"""onnxruntime plumbing: which providers, how sessions are made, binding and the profile."""

from __future__ import annotations

import onnxruntime
import pytest
import torch

from harness.backends import ort
from harness.backends.onnx_export import GraphSpec, export_cached
from harness.errors import UserError
from workloads.models import Encoder, EncoderConfig

EVERYTHING = [
    "AzureExecutionProvider",
    "XnnpackExecutionProvider",  # one gapbench does not know: run only when named
    "DmlExecutionProvider",
    "CPUExecutionProvider",
    "OpenVINOExecutionProvider",
    "CUDAExecutionProvider",
    "TensorrtExecutionProvider",
]


def test_available_providers_are_ranked_and_leave_out_remote_ones(monkeypatch):
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: EVERYTHING)
    assert ort.available_providers() == [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "OpenVINOExecutionProvider",
        "DmlExecutionProvider",
        "CPUExecutionProvider",
        "XnnpackExecutionProvider",
    ]


@pytest.mark.parametrize(
    ("device", "requested", "chosen"),
    [
        ("cpu", (), ("OpenVINOExecutionProvider", "CPUExecutionProvider")),
        ("cuda", (), ("CUDAExecutionProvider", "CPUExecutionProvider")),
        ("cpu", ("CPUExecutionProvider",), ("CPUExecutionProvider",)),
        (
            "cuda",
            ("TensorrtExecutionProvider", "CPUExecutionProvider"),
            ("TensorrtExecutionProvider", "CPUExecutionProvider"),
        ),
    ],
)
def test_providers_follow_the_device_unless_named(device, requested, chosen, monkeypatch):
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: EVERYTHING)
    assert ort.choose_providers(device, requested) == chosen


def test_default_providers_on_a_cpu_only_build():
    assert ort.choose_providers("cpu", (), ["CPUExecutionProvider"]) == ("CPUExecutionProvider",)


@pytest.mark.parametrize(
    ("device", "requested", "available", "message"),
    [
        ("cpu", ("FooExecutionProvider",), ["CPUExecutionProvider"], "no FooExecutionProvider"),
        ("cpu", ("CUDAExecutionProvider",), EVERYTHING, "--device cpu cannot use"),
        ("cuda", (), ["CPUExecutionProvider"], "no GPU execution provider"),
        ("cuda", ("CPUExecutionProvider",), EVERYTHING, "no GPU execution provider"),
        ("cpu", ("DmlExecutionProvider",), EVERYTHING, "--device cpu cannot use Dml"),
        ("cpu", ("AzureExecutionProvider",), EVERYTHING, "it runs the graph remotely"),
    ],
)
def test_providers_that_cannot_serve_the_device_are_refused(device, requested, available, message):
    with pytest.raises(UserError, match=message):
        ort.choose_providers(device, requested, available)


def test_a_cuda_provider_is_given_gapbench_s_stream():
    config = ort.session_config("cuda", ("CUDAExecutionProvider", "CPUExecutionProvider"), 4, 77)
    assert config.provider_options == {"CUDAExecutionProvider": {"user_compute_stream": "77"}}
    recorded = config.to_dict()
    assert recorded["intra_op_threads"] == 4 and recorded["io_binding"] is True
    assert recorded["allow_spinning"] is False
    on_host = ort.session_config("cpu", ("CPUExecutionProvider",), 2)
    assert on_host.provider_options == {}


def test_a_profile_is_summed_over_runs_and_node_kernels():
    events = [
        {"cat": "Session", "name": "session_initialization", "dur": 500},
        {"cat": "Session", "name": "model_run", "dur": 100},
        {"cat": "Node", "name": "MatMul_kernel_time", "dur": 60},
        {"cat": "Node", "name": "MatMul_fence_before", "dur": 1},
        {"cat": "Node", "name": "Add_kernel_time", "dur": 20},
        {"cat": "Session", "name": "model_run", "dur": 50},
        {"cat": "Node", "name": "MatMul_kernel_time", "dur": 40},
    ]
    profile = ort.read_profile(events, "decode")
    assert (profile.runs, profile.run_us, profile.node_us) == (2, 150.0, 120.0)
    assert {e["pid"] for e in profile.events} == {"decode"}


@pytest.fixture(scope="module")
def graph(export_cache) -> ort.Graph:
    torch.manual_seed(0)
    config = EncoderConfig(vocab_size=64, hidden=32, layers=1, heads=2, intermediate=64)
    encoder = Encoder(config).eval()
    spec = GraphSpec(
        "tiny",
        inputs=("input_ids", "attention_mask"),
        outputs=("sentence_embedding",),
        dynamic={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}},
    )
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    exported = export_cached(encoder, (ids, torch.ones_like(ids)), spec, {"tiny": 1})
    session_config = ort.session_config("cpu", ("CPUExecutionProvider",), 1)
    built = ort.Graph("tiny", exported.path, session_config)
    built.encoder = encoder  # type: ignore[attr-defined]
    return built


def test_io_binding_writes_into_the_caller_s_tensor(graph):
    ids = torch.randint(0, 64, (2, 5))
    mask = torch.ones_like(ids)
    out = torch.full((2, 32), float("nan"))
    graph.run(graph.bind([ids, mask], [out]))
    with torch.no_grad():
        assert torch.allclose(out, graph.encoder(ids, mask), atol=1e-5)


def test_binding_refuses_a_tensor_that_is_not_contiguous(graph):
    ids = torch.randint(0, 64, (5, 2)).t()
    with pytest.raises(ValueError, match="contiguous"):
        graph.bind([ids, torch.ones(2, 5, dtype=torch.int64)], [torch.empty(2, 32)])


def test_the_profiler_swaps_sessions_for_the_pass_and_back(graph):
    timed = graph.session
    profiler = ort.OrtProfiler([graph], probe_prefix="run ")
    profiler.start()
    assert graph.session is not timed
    ids = torch.randint(0, 64, (1, 4))
    for _ in range(3):
        graph.run(graph.bind([ids, torch.ones_like(ids)], [torch.empty(1, 32)]))
    profiles = profiler.stop()
    assert graph.session is timed
    profile = profiles["run tiny"]
    assert profile.runs == 3 and 0 < profile.node_us <= profile.run_us
