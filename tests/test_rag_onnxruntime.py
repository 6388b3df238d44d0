"""RAG on onnxruntime: the same work as on torch, shown, and attributed across the boundary."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import live_fingerprint
from test_rag import drive

from harness.analysis.invariants import set_invariants
from harness.archive.schema import RunLength
from harness.archive.store import Archive
from harness.cli import main
from harness.measure.config import RunConfig
from harness.measure.replicates import run
from harness.record.probes import Recorder
from harness.workload import SetupContext, StageContext
from workloads.backends import OrtModels, TorchModels, model_description
from workloads.models import Decoder, DecoderConfig, Encoder, EncoderConfig
from workloads.rag import LOGIT_TOLERANCE, Rag

ORT = SetupContext(device="cpu", size="quick", seed=0, backend="onnxruntime")
TORCH = SetupContext(device="cpu", size="quick", seed=0)


@pytest.fixture(scope="module")
def on_ort() -> Rag:
    workload = Rag()
    workload.setup(ORT)
    return workload


@pytest.fixture(scope="module")
def on_torch() -> Rag:
    workload = Rag()
    workload.setup(TORCH)
    return workload


def test_the_agreement_is_measured_at_setup(on_ort: Rag, on_torch: Rag) -> None:
    agreement = on_ort.agreement()
    assert agreement["reference"] == "torch" and agreement["requests"] == 8
    assert agreement["top_k_equal"] == 1.0
    assert agreement["logits_within_tolerance"]
    assert agreement["max_abs_logit_diff"] <= LOGIT_TOLERANCE
    assert 0.0 <= agreement["tokens_equal"] <= agreement["token_positions_equal"] <= 1.0
    assert on_torch.agreement() == {}  # the reference has nothing to agree with


def _greedy(
    models: TorchModels | OrtModels, prompt: torch.Tensor, steps: int
) -> list[torch.Tensor]:
    ctx = StageContext(TORCH, Recorder(0), "generate", 0, probes=False)
    with torch.inference_mode():
        logits, cache = models.prefill(ctx, prompt)
        seen = [logits.clone()]
        for _ in range(steps - 1):
            logits, cache = models.decode(ctx, logits.argmax(-1)[:, None], cache)
            seen.append(logits.clone())
    return seen


def test_greedy_tokens_are_equal_unless_torch_itself_met_a_near_tie(
    on_ort: Rag, on_torch: Rag
) -> None:
    # Independent of the setup's own check: decode prompts step by step on both backends. Where
    # the tokens part, torch's two best logits must lie within the tolerance (a near-tie).
    gen = torch.Generator().manual_seed(7)
    for _ in range(4):
        prompt = torch.randint(0, on_torch.tokenizer.vocab_size, (1, 40), generator=gen)
        mine = _greedy(on_ort.models, prompt, 8)
        theirs = _greedy(on_torch.models, prompt, 8)
        for got, want in zip(mine, theirs, strict=True):
            assert (got - want).abs().max() <= LOGIT_TOLERANCE
            if got.argmax() != want.argmax():
                top2 = want.topk(2).values[0]
                assert top2[0] - top2[1] <= 2 * LOGIT_TOLERANCE
                break


def test_binding_is_movement_and_the_session_run_is_compute(on_ort: Rag, on_torch: Rag) -> None:
    payload = on_ort.requests(ORT)[0]
    outputs, recorder = drive(on_ort, ORT, payload)
    expected, _ = drive(on_torch, TORCH, payload)
    assert (
        json.loads(outputs["assemble"])["passages"] == json.loads(expected["assemble"])["passages"]
    )
    probes = [iv for iv in recorder.intervals if iv.kind == "probe"]
    by_span = {iv.span: iv for iv in probes}
    for graph, stage in (("encoder", "embed"), ("prefill", "generate"), ("decode", "generate")):
        binds = [iv for iv in probes if iv.label == f"bind {graph}"]
        runs = [iv for iv in probes if iv.label == f"run {graph}"]
        assert binds and len(binds) == len(runs)
        assert all(iv.category == "movement" and iv.resource == "host-memory" for iv in binds)
        assert all(iv.nbytes == 0 for iv in binds)  # pointers handed over: nothing copied
        assert all(iv.category == "compute" and iv.resource == "host-cpu" for iv in runs)
        # both inside the stage's model probe, so innermost wins there
        for iv in binds + runs:
            assert iv.stage == stage and by_span[iv.parent].label == graph
    assert len([iv for iv in probes if iv.label == "run decode"]) == on_ort.config.new_tokens - 1


def test_a_second_setup_takes_the_graphs_from_the_cache(on_ort: Rag) -> None:
    again = Rag()
    again.setup(ORT)
    exports = again.setup_facts()["onnx_export"]
    assert set(exports) == {"encoder", "prefill", "decode"}
    assert all(e["cached"] for e in exports.values())
    assert again.execution()["graphs"] == on_ort.execution()["graphs"]


def test_a_cached_graph_that_will_not_load_is_exported_again(export_cache, tmp_path) -> None:
    torch.manual_seed(0)
    small = {"vocab_size": 64, "hidden": 32, "heads": 2, "intermediate": 64}
    encoder = Encoder(EncoderConfig(layers=1, **small)).eval()
    decoder = Decoder(DecoderConfig(layers=1, max_positions=64, **small)).eval()
    description = model_description(encoder, decoder, seed=0)
    first = OrtModels(encoder, decoder, description, "cpu")
    weights = first.exports["decode"].path.with_name("model.onnx.data")
    weights.write_bytes(weights.read_bytes()[:100])  # a disk that filled up mid-write
    again = OrtModels(encoder, decoder, description, "cpu")
    cached = {name: e.cached for name, e in again.exports.items()}
    assert cached == {"encoder": True, "prefill": True, "decode": False}
    ids = torch.tensor([[3, 4, 5]])
    ctx = StageContext(TORCH, Recorder(0), "generate", 0, probes=False)
    with torch.inference_mode():
        got, _ = again.prefill(ctx, ids)
        want, _, _ = decoder(ids, *decoder.empty_cache())
    assert (got - want).abs().max() < 1e-4


def test_sets_of_both_backends_share_the_work_and_record_the_execution(tmp_path, capsys) -> None:
    archive = Archive(tmp_path)
    measurement = RunLength(warmup=1, min_requests=3, min_duration_s=0)
    sets = {
        backend: run(
            RunConfig(
                "rag", "cpu", "quick", measurement=measurement, show_progress=False, backend=backend
            ),
            archive,
            fingerprint=live_fingerprint(),
        )
        for backend in ("torch", "onnxruntime")
    }
    torch_set, ort_set = sets["torch"].manifest, sets["onnxruntime"].manifest
    assert torch_set.work == ort_set.work
    execution = ort_set.execution
    assert execution.backend == "onnxruntime"
    backend = execution.backend_config
    assert backend["providers"] == ["CPUExecutionProvider"] == backend["providers_in_use"]
    assert backend["intra_op_threads"] == execution.threads and backend["io_binding"]
    assert set(backend["graphs"]) == {"encoder", "prefill", "decode"}
    assert torch_set.execution.backend == "torch"
    assert ort_set.agreement is not None and ort_set.agreement.top_k_equal == 1.0
    assert torch_set.agreement is None
    assert set_invariants(sets["onnxruntime"]).violation_count == 0
    # side by side with the tools that exist
    ids = [sets["torch"].id, sets["onnxruntime"].id]
    assert main(["show", *ids, "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "with torch," in out and "with onnxruntime (CPUExecutionProvider)" in out
    assert "[2] p50" in out and "not comparable" not in out
    assert main(["show", *ids, "--results", str(tmp_path), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [s["config"]["execution"]["backend"] for s in shown] == ["torch", "onnxruntime"]
    assert shown[1]["agreement"]["top_k_equal"] == 1.0


@pytest.mark.slow
def test_session_compute_agrees_with_onnxruntime_s_profile(calibrated_archive) -> None:
    tmp_path = calibrated_archive
    argv = ["run", "rag", "--quick", "--device", "cpu", "--backend", "onnxruntime"]
    argv += ["--profile", "4"]
    argv += ["--warmup", "2", "--min-requests", "6", "--min-duration", "0", "--no-progress"]
    argv += ["--json", "--results", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", "harness", *argv], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    archive = Archive(tmp_path)
    result = archive.load("latest")
    profile = result.manifest.profile
    assert profile is not None and profile.tool == "onnxruntime"
    checks = {c.label: c for c in profile.checks}
    assert set(checks) == {"run encoder", "run prefill", "run decode"}
    for label, check in checks.items():
        # gapbench's compute for the session against the runs onnxruntime timed itself
        assert check.judged() and check.agreement <= 0.05, check
        assert check.basis == "scope"
        # the node kernels are inside the runs: the rest is the executor between nodes
        assert 0 < check.profiler_operator_ms <= check.profiler_scope_ms, label
    assert checks["run decode"].calls == 4 * 7 and profile.agrees()
    # Its nodes, each with FLOPs from its shapes: the graphs' products among them.
    nodes = result.operators
    assert nodes is not None and set(nodes["label"]) == set(checks)
    assert nodes.loc[nodes["operator"].isin(["MatMul", "FusedMatMul", "Gemm"]), "flops"].sum() > 0
    events = json.loads(archive.attachment(result.id, "profile.json"))
    assert {e["pid"] for e in events} == {"encoder", "prefill", "decode"}
