"""Several sets against the first: machines said first, significance from replicates, a CI
gate, throughput, price and energy, and sets that must not be compared refused."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ORT_SET, RAG_SET, make_manifest
from test_projection import ONE
from test_replay_sample import plain

from harness.analysis.machines import differences
from harness.analysis.price import prices
from harness.analysis.summary import summarize
from harness.analysis.throughput import mean_power
from harness.archive.names import load
from harness.archive.result_set import ResultSet
from harness.archive.store import Archive
from harness.archive.tables import intervals_frame
from harness.cli import main
from harness.errors import UserError
from harness.machine.fingerprint import detect
from harness.projection.lineup import allowed_slowdown, lineup

MACHINES = Path(__file__).parent / "fixtures" / "machines"


def timed(
    set_id: str, scale: float, replicates: int = 3, requests: int = 12, seed: int = 7, **fields
) -> ResultSet:
    """A one-stage set whose requests take ``scale`` x 100-130 us (drawn from ``seed``), a
    replicate a little apart from the next (the spread significance is judged on)."""
    rng = np.random.default_rng(seed)
    frames, rows = [], []
    for r in range(replicates):
        for i in range(requests):
            total = int(scale * (1 + 0.01 * r) * rng.integers(100_000, 130_000))
            shift = (r * requests + i) * 10_000_000
            ivs = [
                replace(iv, request=i, start_ns=iv.start_ns + shift, end_ns=iv.end_ns + shift)
                for iv in plain(total)
            ]
            frames.append(intervals_frame(ivs).assign(replicate=r))
            rows.append(
                {
                    "request": i,
                    "ok": True,
                    "error": "",
                    "arrival_ns": shift,
                    "response_ns": shift + total,
                    "latency_s": total / 1e9,
                    "samples": 1,
                    "outputs": "",
                    "replicate": r,
                }
            )
    manifest = make_manifest(ONE, set_id=set_id, replicates=replicates, **fields)
    return ResultSet.of(manifest, pd.concat(frames, ignore_index=True), pd.DataFrame(rows))


def test_a_significantly_slower_candidate_fails_the_gate_and_noise_does_not():
    base, slower = timed("a", 1.0), timed("b", 1.2)
    alike = timed("c", 1.0, seed=8)  # other draws of the same distribution: noise
    lined = lineup([summarize(r) for r in (base, slower, alike)])
    b, c = lined.pairs
    assert b.end_to_end.significant and b.end_to_end.ratio == pytest.approx(1 / 1.2, rel=0.02)
    assert not c.end_to_end.significant
    assert [p.candidate.result.id for p in lined.slower(0.05)] == ["b"]
    assert lined.slower(0.25) == []  # 20% slower is inside a 25% allowance
    table = lined.table()
    assert list(table["set"].unique()) == ["a", "b", "c"]
    assert table.loc[table["set"] == "a", "speedup"].isna().all()  # the base has no speedup
    row = table.loc[(table["set"] == "b") & (table["name"] == "end to end")].iloc[0]
    assert row["significant"] and row["high"] < 1


def test_the_gate_from_the_command_line_exits_1_and_names_the_slower_set(tmp_path, capsys):
    archive = Archive(tmp_path).ensure()
    for name, scale in (("base", 1.0), ("slow", 1.2)):
        r = timed(name, scale)
        archive.write(r.manifest, {"intervals": r.intervals, "requests": r.requests})
    argv = ["compare", "base", "slow", "--results", str(tmp_path)]
    assert main([*argv, "--fail-if-slower", "5%"]) == 1
    out, err = capsys.readouterr()
    assert "slow is 1.2" in err and "slower end to end" in err and "[2]" in out
    assert main([*argv, "--fail-if-slower", "30%", "--json"]) == 0
    said = json.loads(capsys.readouterr().out)
    assert said["fail_if_slower"] == {"allowed": 0.3, "slower": [], "not_judged": []}
    assert said["sets"] == ["base", "slow"]
    for bad in ("-1%", "abc", "2000%", "nan%", "5"):
        assert main([*argv, "--fail-if-slower", bad]) == 2
        assert capsys.readouterr().err.count("\n") == 1


def test_a_gate_refuses_sets_with_too_few_replicates_to_judge(tmp_path, capsys):
    archive = Archive(tmp_path).ensure()
    for name, replicates in (("base", 3), ("two", 2)):
        r = timed(name, 1.0, replicates)
        archive.write(r.manifest, {"intervals": r.intervals, "requests": r.requests})
    argv = ["compare", "base", "two", "--results", str(tmp_path), "--fail-if-slower", "5%"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "two has 2" in err and "--repeat 3" in err and err.count("\n") == 1


def test_a_gate_refuses_to_judge_an_invalid_set(tmp_path, capsys):
    archive = Archive(tmp_path).ensure()
    base = timed("base", 1.0)
    cut = timed("cut", 1.0, complete=False, interrupted=True, stopped_by="interrupted")
    for r in (base, cut):
        archive.write(r.manifest, {"intervals": r.intervals, "requests": r.requests})
    argv = ["compare", "base", "cut", "--results", str(tmp_path), "--fail-if-slower", "5%"]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert "cut is INVALID" in err and err.count("\n") == 1 and "[2]" in out


def test_a_set_given_twice_is_refused():
    a, b = timed("a", 1.0, 1), timed("b", 1.0, 1)
    with pytest.raises(UserError, match="b is given twice"):
        lineup([summarize(r) for r in (a, b, b)])
    with pytest.raises(UserError, match="two sets or more"):
        lineup([summarize(a)])


def _elsewhere(tmp_path: Path, machine: str, set_id: str, **software: str) -> str:
    """RAG_SET as if run on another machine: its fingerprint read from a canned root."""
    folder = tmp_path / set_id
    shutil.copytree(RAG_SET, folder)
    body = json.loads((folder / "manifest.json").read_text())
    fingerprint = detect(MACHINES / machine, environ={}, probe_gpus=False, probe_software=False)
    from harness.archive.codec import to_dict

    found = to_dict(fingerprint)
    found["software"] = {**body["fingerprint"]["software"], **software}
    found["accelerators"] = body["fingerprint"]["accelerators"]
    body.update(id=set_id, fingerprint=found)
    (folder / "manifest.json").write_text(json.dumps(body))
    return set_id


def test_the_machines_that_differ_come_first(tmp_path, capsys):
    shutil.copytree(RAG_SET, tmp_path / RAG_SET.name)
    xeon = _elsewhere(tmp_path, "xeon-gold-5415plus-2s", "20261201T215455Z-xeon-rag-00000001")
    said = differences([load(str(tmp_path / RAG_SET.name)), load(str(tmp_path / xeon))])
    assert {"CPU", "cores", "memory"} <= set(said.hardware.index)
    assert "Xeon" in str(said.hardware.loc["CPU"].iloc[1])
    assert set(said.software.index) == {"operating system", "kernel"}  # software, not hardware
    argv = ["compare", RAG_SET.name, xeon, "--results", str(tmp_path)]
    assert main([*argv]) == 0
    out = capsys.readouterr().out
    assert out.index("different machines: CPU") < out.index("[1] " + RAG_SET.name)
    newer = _elsewhere(
        tmp_path, "epyc-vm-2cpu", "20261201T215455Z-vm-rag-00000002", torch_version="2.99"
    )
    assert main(["compare", RAG_SET.name, newer, "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "torch differs (2.13.0+cpu / 2.99)" in " ".join(out.split())


def test_execution_differences_are_one_line_unless_verbose(tmp_path, capsys):
    for kept in (RAG_SET, ORT_SET):
        shutil.copytree(kept, tmp_path / kept.name)
    argv = ["compare", RAG_SET.name, ORT_SET.name, "--results", str(tmp_path)]
    assert main([*argv, "--wide"]) == 0
    out = capsys.readouterr().out
    (line,) = [x for x in out.splitlines() if "execution differs" in x]
    assert "backend_config (" in line and "settings)" in line and "--verbose" in line
    assert main([*argv, "--verbose", "--wide"]) == 0
    out = capsys.readouterr().out
    assert sum("execution differs in backend_config." in x for x in out.splitlines()) > 2
    assert "outputs equal to [1]'s" in out
    assert "  - noisy: IQR/median" in out  # a set's notes come with its verdict
    assert "quick run: small sizes" not in out  # but not what its sample size implies
    assert main([*argv, "--speedup", "host-cpu.compute=2"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "gap: the claimed speedup minus the delivered one" in out


def test_prices_by_set_and_by_host_and_their_bad_forms(tmp_path):
    results = [load(str(RAG_SET)), load(str(ORT_SET))]
    assert prices(results, ["20261201T215455Z=2", "20261201T215505=4.5"]) == {
        RAG_SET.name: 2.0,
        ORT_SET.name: 4.5,
    }
    file = tmp_path / "prices.toml"
    file.write_text("[hosts]\nvm = 1.25\nother = 9\n")
    assert prices(results, [], str(file)) == {RAG_SET.name: 1.25, ORT_SET.name: 1.25}
    assert prices(results, [f"{ORT_SET.name}=3"], str(file))[ORT_SET.name] == 3.0
    for bad, said in (
        ("2026=1", "names 2 sets"),
        ("nope=1", "names no set"),
        ("20261201T215455Z=0", "above 0"),
        ("20261201T215455Z=-3", "above 0"),
        ("20261201T215455Z=inf", "above 0"),
        ("20261201T215455Z=x", "not a price"),
        ("20261201T215455Z", "give SET=USD"),
    ):
        with pytest.raises(UserError, match=said):
            prices(results, [bad])
    file.write_text("vm = 1\n")
    with pytest.raises(UserError, match=r"one \[hosts\] table"):
        prices(results, [], str(file))


def test_cost_follows_throughput_and_energy_is_unknown_without_a_counter():
    summaries = [summarize(load(str(s))) for s in (RAG_SET, ORT_SET)]
    lined = lineup(summaries, prices={RAG_SET.name: 3.6})
    t = summaries[0].throughput
    assert t is not None and t.requests == 12 and t.requests_per_joule is None
    cost = lined.costs[RAG_SET.name]
    assert cost.requests_per_dollar == pytest.approx(t.requests_per_s * 1000)
    assert cost.usd_per_million_requests == pytest.approx(1e6 / cost.requests_per_dollar)
    assert ORT_SET.name not in lined.costs
    payload = lined.to_dict()
    assert payload["throughput"][RAG_SET.name]["energy_counters"] == []  # unknown
    assert t.per_joule_text() == "unknown" and lined.energy_warning() == ""


def test_requests_a_joule_name_their_counters_and_unlike_counters_are_flagged():
    a, b = (summarize(load(str(s))) for s in (RAG_SET, ORT_SET))
    assert a.throughput is not None and b.throughput is not None
    cpu_and_gpu = replace(a.throughput, power_w={"CPU package": 30.0, "GPU": 70.0})
    gpu = replace(b.throughput, power_w={"GPU": 70.0})
    lined = lineup([replace(a, throughput=cpu_and_gpu), replace(b, throughput=gpu)])
    assert cpu_and_gpu.requests_per_joule == pytest.approx(
        cpu_and_gpu.requests / (100.0 * cpu_and_gpu.measured_s)
    )
    assert cpu_and_gpu.per_joule_text().endswith("(CPU package + GPU)")
    assert "different energy counters" in lined.energy_warning()


def test_mean_power_is_joules_over_the_seconds_sampled_per_counter():
    rows = []
    for r in range(2):  # two replicates, each 2 s sampled: 50 W on the package, 200 W on a GPU
        for t in range(3):
            at = r * 100 + t
            rows.append(("rapl", "energy", "package-0", r, at * 10**9, 1000 + r * 7 + 50.0 * t))
            for gpu in ("0", "1"):
                rows.append(("gpu", "energy", gpu, r, at * 10**9, 5000 + 100.0 * t))
    rows.append(("cpu", "utilization", "0", 0, 0, 0.5))
    frame = pd.DataFrame(rows, columns=["source", "metric", "device", "replicate", "t_ns", "value"])
    assert mean_power(frame) == pytest.approx({"CPU package": 50.0, "GPU": 200.0})


def test_allowed_slowdown_reads_percentages():
    assert allowed_slowdown("5%") == pytest.approx(0.05)
    assert allowed_slowdown(" 12.5% ") == pytest.approx(0.125)
    with pytest.raises(UserError, match="with its sign"):
        allowed_slowdown("0.05")  # five percent, or five hundredths of one?
    assert allowed_slowdown("0%") == 0.0


def test_a_prices_file_must_price_a_set_here_and_one_host_one_machine(tmp_path):
    xeon = _elsewhere(tmp_path, "xeon-gold-5415plus-2s", "20261201T215455Z-vm-rag-00000009")
    results = [load(str(RAG_SET)), load(str(tmp_path / xeon))]
    file = tmp_path / "prices.toml"
    file.write_text("[hosts]\nother = 1\n")
    with pytest.raises(UserError, match=r"prices no host of these sets \(hosts: vm\)"):
        prices(results, [], str(file))
    file.write_text("[hosts]\nvm = 1\n")
    with pytest.raises(UserError, match="names sets run on different machines"):
        prices(results, [], str(file))
    assert prices(results[:1], [], str(file)) == {RAG_SET.name: 1.0}
    with pytest.raises(UserError, match="priced twice"):
        prices(results, ["20261201T215455Z-vm-rag-c=1", "20261201T215455Z-vm-rag-c7=2"])


def test_the_sentence_says_a_slowdown_in_its_own_terms_and_an_invalid_set_first():
    base, slower = timed("a", 1.0), timed("b", 1.2)
    (p,) = lineup([summarize(base), summarize(slower)]).pairs
    said = p.sentence
    low, high = 1 / p.end_to_end.high, 1 / p.end_to_end.low
    assert said.startswith("b is 1.2") and f"95% interval {low:.3f}-{high:.3f}x slower" in said
    cut = timed("c", 1.2, complete=False, interrupted=True, stopped_by="interrupted")
    (p,) = lineup([summarize(base), summarize(cut)]).pairs
    assert p.sentence.startswith("a set is INVALID, so this is not to be trusted: c is")


def test_prices_by_set_come_first_and_a_host_file_prices_the_rest(tmp_path):
    xeon = _elsewhere(tmp_path, "xeon-gold-5415plus-2s", "20261201T215455Z-vm-rag-00000009")
    results = [load(str(RAG_SET)), load(str(tmp_path / xeon))]
    file = tmp_path / "prices.toml"
    file.write_text("[hosts]\nvm = 1\n")
    # The one host name stands for two machines: priced by set, the file prices the rest.
    assert prices(results, [f"{xeon}=3"], str(file)) == {xeon: 3.0, RAG_SET.name: 1.0}
    assert prices(results, [f"{xeon}=3", "20261201T215455Z-vm-rag-c=2"], "nope.toml") == {
        xeon: 3.0,
        RAG_SET.name: 2.0,
    }  # every set priced by itself: the file is not read


def test_a_difference_inside_the_noise_is_said_in_its_own_direction():
    base = timed("a", 1.0)
    alike = timed("c", 0.995, seed=8)
    (p,) = lineup([summarize(base), summarize(alike)]).pairs
    assert not p.end_to_end.significant
    direction = "faster" if p.end_to_end.ratio >= 1 else "slower"
    assert "not significantly faster or slower" in p.sentence
    assert p.sentence.endswith(f"x {direction})") and f"x {direction}, 95% interval" in p.sentence


def test_sets_of_different_workloads_are_refused_by_name(tmp_path, capsys):
    from conftest import FIRST_V9_SET

    for kept in (RAG_SET, FIRST_V9_SET):
        shutil.copytree(kept, tmp_path / kept.name)
    assert main(["compare", RAG_SET.name, FIRST_V9_SET.name, "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "ran different workloads (rag and batch-inference)" in err and err.count("\n") == 1
