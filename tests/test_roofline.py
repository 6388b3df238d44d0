"""Inside compute: operators' FLOPs and bytes from their shapes, their classes against the
machine's ridge point, and claims by class or by spec sheet made into speedups per stage."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from conftest import FIRST_V9_SET
from torch.profiler import ProfilerActivity, profile

from harness.analysis.roofline import (
    CLASSES,
    COMPUTE_BOUND,
    DISPATCH,
    MEMORY_BOUND,
    OPAQUE,
    roofline,
    timed_compute_ms,
)
from harness.archive.names import load as load_set
from harness.errors import UserError
from harness.machine import calibration as cal
from harness.machine.calibration import Figure
from harness.measure.operators import cost, torch_operators
from harness.projection.claims import load, parse_key
from harness.projection.project import project
from harness.projection.transfer import resolve


def test_matrix_products_count_two_flops_per_multiply_add_over_their_three_matrices():
    assert cost("aten::mm", [[8, 16], [16, 32]], ["float", "float"]) == (
        2 * 8 * 16 * 32,
        4 * (8 * 16 + 16 * 32 + 8 * 32),
    )
    flops, nbytes = cost(
        "aten::addmm", [[32], [8, 16], [16, 32], [], []], ["float"] * 3 + ["Scalar"] * 2
    )
    assert flops == 2 * 8 * 16 * 32 and nbytes == 4 * (32 + 8 * 16 + 16 * 32 + 8 * 32)
    flops, nbytes = cost(
        "aten::addmv_", [[100], [100, 8], [8], [], []], ["float"] * 3 + ["Scalar"] * 2
    )
    assert flops == 2 * 100 * 8 and nbytes == 4 * (100 + 800 + 8 + 100)
    # onnxruntime's Gemm with a transposed weight: the output says which side is n.
    flops, _ = cost("Gemm", [[4, 16], [32, 16], [32]], ["float"] * 3, out=[[4, 32]])
    assert flops == 2 * 4 * 16 * 32


def test_views_move_nothing_and_copies_move_what_they_read_and_write():
    assert cost("aten::view", [[8, 16], []], ["float", "ScalarList"]) == (0.0, 0.0)
    assert cost("aten::linear", [[8, 16], [4, 16]], ["float", "float"]) == (0.0, 0.0)
    # An operator that only calls others leaves its work to them: counted once, there.
    for composite in ("aten::layer_norm", "aten::_to_copy", "aten::scaled_dot_product_attention"):
        assert cost(composite, [[8, 16], [16], [16]], ["float"] * 3) == (0.0, 0.0), composite
    assert cost("aten::copy_", [[8, 16], [8, 16], []], ["c10::BFloat16", "float", "Scalar"]) == (
        0.0,
        8 * 16 * (2 + 4),
    )
    assert cost("aten::cat", [[[3, 4], [3, 4]], []], ["TensorList", "Scalar"]) == (0.0, 2 * 96)
    flops, nbytes = cost("aten::gelu", [[2, 10], []], ["float", ""])
    assert nbytes == 2 * 4 * 20 and flops / nbytes < 2  # memory-bound anywhere


def test_flops_agree_with_torch_own_counter_and_own_time_excludes_inner_operators(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.GELU(), torch.nn.Linear(96, 8))
    x = torch.randn(5, 64)
    activities = [ProfilerActivity.CPU]
    with (
        torch.inference_mode(),
        profile(activities=activities, record_shapes=True, with_flops=True) as prof,
        torch.profiler.record_function("gapbench:s:model"),
    ):
        model(x)
    prof.export_chrome_trace(str(tmp_path / "trace.json"))
    trace = json.loads((tmp_path / "trace.json").read_text())
    ops = torch_operators(trace)
    theirs = sum(e.flops for e in prof.key_averages() if e.key == "aten::addmm")
    ours = ops.loc[ops["operator"] == "aten::addmm", "flops"].sum()
    assert theirs == 2 * 5 * (64 * 96 + 96 * 8) and ours == theirs
    linear = next(e for e in trace["traceEvents"] if e.get("name") == "aten::linear")
    own = ops.loc[ops["operator"] == "aten::linear", "own_us"].sum()
    assert 0 <= own < linear["dur"]  # addmm inside it is addmm's own time, not linear's
    assert set(ops["stage"]) == {"s"} and set(ops["label"]) == {"model"}


@pytest.fixture(scope="module")
def profiled():
    return load_set(str(FIRST_V9_SET))


def _calibration(peak: float, bandwidth: float):
    def figure(measure: str, value: float, threads: int) -> Figure:
        unit = cal.UNITS[measure]
        return Figure(measure, value, value, value, unit, 3, dtype="float32", threads=threads)

    figures = [figure(cal.DISPATCH, 2.0, 1)]
    for t in (1, 2):
        figures += [figure(cal.GEMM, peak, t), figure(cal.TRIAD, bandwidth, t)]
    return cal.Calibration("m", "cpu", 2, "t", "v", "2", 1.0, tuple(figures))


def test_every_stage_of_a_profiled_set_splits_into_the_four_classes(profiled):
    found = roofline(profiled)
    assert found is not None and found.calibration == profiled.manifest.profile.calibration
    timed = timed_compute_ms(profiled)
    floor_us = found.calibration.dispatch_us()
    ops = profiled.operators
    requests = profiled.manifest.profile.requests
    for stage, shares in found.shares().items():
        assert set(shares) == set(CLASSES) and all(s >= 0 for s in shares.values())
        mine = found.classes[found.classes["stage"] == stage].set_index("class")["ms"]
        # The operators' work never exceeds the stage's timed compute, and what remains holds
        # at least each operator's dispatch floor.
        assert mine[COMPUTE_BOUND] + mine[MEMORY_BOUND] <= timed[stage] * (1 + 1e-9)
        floors = (ops.loc[ops["stage"] == stage, "calls"].sum() * floor_us) / 1e3 / requests
        assert mine[DISPATCH] + mine[OPAQUE] >= min(floors, timed[stage]) * 0.999
    # The tokenizer's pure Python is not the profiler's to see: opaque, and said so.
    assert found.shares()["collate"][OPAQUE] == 1.0 and "collate/tokenize" in found.not_visible
    # The encoder's products are compute-bound against the ridge point kept with the set.
    assert found.shares()["forward"][COMPUTE_BOUND] > 0.1


def test_the_class_follows_the_ridge_point_not_the_operator_name(profiled):
    # At a ridge near zero every operator with FLOPs is compute-bound; near infinity none is.
    def at(calibration):
        profile = replace(profiled.manifest.profile, calibration=calibration)
        manifest = replace(profiled.manifest, profile=profile)
        return roofline(replace(profiled, manifest=manifest)).shares()["forward"]

    low_ridge, high_ridge = at(_calibration(1.0, 1e6)), at(_calibration(1e6, 1e-3))
    assert high_ridge[COMPUTE_BOUND] == 0 and high_ridge[MEMORY_BOUND] > low_ridge[MEMORY_BOUND]
    assert low_ridge[COMPUTE_BOUND] > 0


SPEC = """
name = "Vendor Y"
[spec.reference]
peak_gflops_fp32 = 1000
memory_bandwidth_gbs = 100
[spec.candidate]
peak_gflops_fp32 = 3000
memory_bandwidth_gbs = 150
"""


def test_a_spec_claim_speeds_each_stage_by_its_classes(profiled, tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text(SPEC)
    transfer = resolve(profiled, load(path))
    assert transfer.ratios[COMPUTE_BOUND][0] == 3.0 and transfer.ratios[MEMORY_BOUND][0] == 1.5
    assert any("dispatch" in n for n in transfer.notes)  # no frequency: taken as 1.0
    shares = transfer.roofline.shares()
    ratio = {COMPUTE_BOUND: 3.0, MEMORY_BOUND: 1.5, DISPATCH: 1.0, OPAQUE: 1.0}
    factors = {t.scope_name: f for t, f in transfer.aware.speedups}
    for stage, of in shares.items():
        if stage in factors:
            expected = 1 / sum(share / ratio[k] for k, share in of.items())
            assert factors[stage] == pytest.approx(expected)
    assert [(t.key, f) for t, f in transfer.naive.speedups] == [("compute", 3.0)]
    left = transfer.left()
    assert transfer.limiting == max(left, key=left.__getitem__)
    # Projected, the class-aware gain is never above the one ratio on everything.
    aware, naive = project(profiled, transfer.aware), project(profiled, transfer.naive)
    assert 1.0 <= aware.speedup("naive") <= naive.speedup("naive")


def test_equal_ratios_on_every_class_are_the_one_ratio(profiled, tmp_path):
    path = tmp_path / "flat.toml"
    keys = "\n".join(f'"{k}" = 2.0' for k in CLASSES)
    path.write_text(f'name = "flat"\n[speedup]\n{keys}\n')
    transfer = resolve(profiled, load(path))
    assert all(f == pytest.approx(2.0) for _, f in transfer.aware.speedups)


def test_a_claim_by_class_on_a_set_without_a_profile_says_how_to_get_one(tmp_path):
    from conftest import FIRST_V8_SET

    path = tmp_path / "c.toml"
    path.write_text('name = "c"\n[speedup]\n"memory-bound" = 2\n')
    with pytest.raises(UserError, match="--profile"):
        project(load_set(str(FIRST_V8_SET)), load(path))


SPEC_4_8 = "[spec.reference]\ncores = 4\n[spec.candidate]\ncores = 8\n"


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ("[spec.reference]\npeak_gflops_fp32 = 1\n", "give \\[spec.reference\\] and"),
        ("[spec.reference]\nflops = 1\n[spec.candidate]\nflops = 2\n", "not a spec key"),
        ("[spec.reference]\ncores = -1\n[spec.candidate]\ncores = 2\n", "positive number"),
        ("[spec.reference]\ncores = 4\n[spec.candidate]\nfrequency_ghz = 2\n", "share no key"),
        (
            SPEC_4_8 + '[calibration]\nreference = "a"\ncandidate = "b"\n',
            "not both",
        ),
        (
            SPEC_4_8 + '[speedup]\n"dispatch" = 2\n',
            "come from the specs",
        ),
        ('[calibration]\nreference = "nope.json"\ncandidate = "nope.json"\n', "does not exist"),
        ('[speedup]\n"compute" = 2\n[threads]\n"memory" = 2\n', "no speedup has that key"),
    ],
)
def test_bad_vendor_claims_are_one_line(tmp_path, body, said):
    path = tmp_path / "bad.toml"
    path.write_text(f'name = "bad"\n{body}')
    with pytest.raises(UserError, match=said):
        load(path)


def test_threads_per_key_and_a_whole_stage(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text(
        'name = "t"\n[speedup]\n"compute" = 2\n"stage:parse" = 1.5\n'
        '[threads]\n"*" = 4\n"stage:parse" = 1\n'
    )
    claim = load(path)
    assert claim.threads_for("embed", "inference", "compute", "host-cpu") == 4
    assert claim.threads_for("parse", "ingress", "compute", "host-cpu") == 1
    # A whole stage speeds its compute and movement, never its waits; a narrower key wins.
    assert claim.factor("parse", "ingress", "movement", "host-cpu") == (1.5, "stage:parse")
    assert claim.factor("parse", "ingress", "scheduling", "wait") == (1.0, "")
    assert parse_key("stage:parse").rank < parse_key("stage:parse/compute").rank


def test_project_on_a_spec_claim_prints_the_classes_and_the_limiting_class(tmp_path, capsys):
    from harness.cli import main

    path = tmp_path / "spec.toml"
    path.write_text(SPEC)
    argv = ["project", str(FIRST_V9_SET), "--claim", str(path), "--no-keep"]
    assert main([*argv, "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    (found,) = body["by_class"]
    assert found["limiting"] in CLASSES and found["ratios"]["compute-bound"]["ratio"] == 3.0
    names = [p["claim"]["name"] for p in body["projections"]]
    assert names == ["Vendor Y (one ratio)", "Vendor Y (by class)"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "the limiting class is" in out and "one ratio on all compute" in out


def test_show_gives_the_roofline_of_a_profiled_set(capsys):
    from harness.cli import main

    assert main(["show", str(FIRST_V9_SET), "--json"]) == 0
    body = json.loads(capsys.readouterr().out)["roofline"]
    assert {r["stage"] for r in body["stages"]} == {"collate", "forward"}
    assert body["not_visible"] == ["collate/tokenize"]
    assert main(["show", str(FIRST_V9_SET)]) == 0
    assert "roofline per stage" in capsys.readouterr().out


def test_a_machine_compared_with_itself_gains_nothing(profiled, tmp_path, quick_calibration):
    from harness.archive.codec import to_dict

    (tmp_path / "here.json").write_text(json.dumps(to_dict(quick_calibration)))
    path = tmp_path / "same.toml"
    path.write_text(
        'name = "same"\n[calibration]\nreference = "here.json"\ncandidate = "here.json"\n'
    )
    transfer = resolve(profiled, load(path))
    assert all(f == pytest.approx(1.0) for _, f in transfer.aware.speedups)
    assert any("thread(s) on the reference" in n for n in transfer.notes)
