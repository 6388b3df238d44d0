"""Sweeps and the search for the highest rate: real server runs, one set a step."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import pytest
from conftest import live_fingerprint
from rich.console import Console

pytest.importorskip("mlperf_loadgen", reason="mlcommons-loadgen is not installed")

from harness.archive.schema import Load, RunLength
from harness.archive.store import Archive
from harness.cli import main
from harness.cli.capacity import parse_rates
from harness.errors import UserError
from harness.experiments.capacity import Capacity, find_max_qps, sweep
from harness.measure.config import RunConfig
from harness.report.capacity import capacity_table


def _config(workers: int = 2) -> RunConfig:
    return RunConfig(
        "calibration",
        device="cpu",
        size="quick",
        measurement=RunLength(warmup=2, min_requests=40, min_duration_s=0.5),
        show_progress=False,
        params={"service_ms": 5.0},
        load=Load("server", qps=1000.0, workers=workers),  # each step sets its own rate
    )


def test_a_sweep_runs_each_rate_into_a_set_of_its_own(tmp_path):
    archive = Archive(tmp_path).ensure()
    said: list[str] = []
    found = sweep(_config(), [20.0, 80.0], archive, live_fingerprint(), said.append)
    assert [s.target_qps for s in found.steps] == [20.0, 80.0] and len(said) == 2
    for done in found.steps:
        result = archive.load(done.set_id)
        assert result.manifest.execution.load == Load("server", qps=done.target_qps, workers=2)
        assert done.queries == len(result.queries) >= 40
        assert done.p99_ms >= done.p50_ms > 0 and done.wall_s > 0
        assert done.p99_indicative  # 40 queries: under the 662 a p99 needs
    assert found.wall_s >= sum(s.wall_s for s in found.steps)


def test_compare_sets_two_server_runs_side_by_side_and_names_their_loads(tmp_path, capsys):
    archive = Archive(tmp_path).ensure()
    found = sweep(_config(), [20.0, 40.0], archive, live_fingerprint())
    base, candidate = (s.set_id for s in found.steps)
    assert main(["compare", base, candidate, "--results", str(tmp_path)]) == 0
    shown = capsys.readouterr().out
    assert "under load" in shown and "different loads" in shown
    assert main(["compare", base, candidate, "--results", str(tmp_path), "--json"]) == 0
    said = json.loads(capsys.readouterr().out)["candidates"][0]
    assert said["load"]["base"]["target_qps"] == 20.0
    assert said["load"]["candidate"]["target_qps"] == 40.0
    assert said["differences"]["load.qps"] == [20.0, 40.0]


def test_the_search_bisects_between_none_and_the_closed_loop_s_rate(tmp_path):
    archive = Archive(tmp_path).ensure()
    found = find_max_qps(_config(), 40.0, archive, live_fingerprint(), steps=3)
    assert found.probe_qps is not None and found.probe_qps > 0
    low, high = 0.0, found.probe_qps
    for done in found.steps:  # each rate halves the bracket its outcome left
        assert done.target_qps == pytest.approx((low + high) / 2)
        keeps_up = not done.utilisation >= 1  # unknown: no sign it fell behind
        assert done.passed == (done.p99_ms <= 40.0 and keeps_up and not done.problems)
        low, high = (done.target_qps, high) if done.passed else (low, done.target_qps)
        # LoadGen judged the step by the same bound.
        load = archive.load(done.set_id).manifest.execution.load
        assert load is not None and load.p99_bound_ms == 40.0
    passed = [s.target_qps for s in found.steps if s.passed]
    assert found.max_qps == (max(passed) if passed else None)
    # Every step, and the closed loop that sized the search, is a set of its own.
    assert len(archive.ids()) == len(found.steps) + 1


def test_no_rate_keeps_a_p99_below_the_service_time_itself(tmp_path):
    # Exponential service of 5 ms: at any rate, the p99 of 40 queries is well over 0.5 ms.
    archive = Archive(tmp_path).ensure()
    found = find_max_qps(_config(), 0.5, archive, live_fingerprint(), steps=2)
    assert found.max_qps is None and not any(s.passed for s in found.steps)
    assert all(s.failed_because for s in found.steps)
    # The first step is half the closed loop's rate, the second a quarter: each failed.
    assert [s.target_qps for s in found.steps] == pytest.approx(
        [found.probe_qps / 2, found.probe_qps / 4]  # type: ignore[operator]
    )


def test_rates_are_numbers_in_range():
    assert parse_rates("2,4.5,8") == (2.0, 4.5, 8.0)
    for bad in ("", "a,b", "0", "nan", "2,,4", ",".join(["1"] * 65), "1e9"):
        with pytest.raises(UserError):
            parse_rates(bad)


@pytest.mark.parametrize(
    "options",
    [
        ["--find-max-qps"],  # no bound
        ["--p99-bound", "50"],  # no search
        ["--steps", "3"],
        ["--find-max-qps", "--p99-bound", "0"],
        ["--find-max-qps", "--p99-bound", "50", "--steps", "0"],
        ["--sweep", "a"],
        ["--sweep", ""],
        ["--sweep", ",".join(["1"] * 100)],
        ["--sweep", "5", "--qps", "5"],
        ["--sweep", "5", "--scenario", "offline"],
        ["--sweep", "5", "--find-max-qps", "--p99-bound", "50"],
        ["--sweep", "5", "--repeat", "2"],
        ["--sweep", "5", "--concurrency", "2"],
        ["--sweep", "5", "--workers", "0"],
        ["--sweep", "5", "--slo", "e2e=1s"],
        ["--sweep", "5", "--p99-bound", "50"],
        ["--scenario", "offline", "--p99-bound", "50"],
    ],
)
def test_a_capacity_run_asked_wrongly_is_one_line_and_exit_2(tmp_path, capsys, options):
    status = main(["run", "calibration", "--results", str(tmp_path), *options])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and err[0].startswith("gapbench: "), err
    assert not list(tmp_path.iterdir())  # refused before anything ran


def test_a_sweep_names_one_workload(tmp_path, capsys):
    status = main(["run", "calibration", "rag", "--sweep", "5", "--results", str(tmp_path)])
    assert status == 2 and "one workload" in capsys.readouterr().err


def test_a_search_stops_before_a_rate_too_slow_to_bring_its_queries(tmp_path):
    # 40 queries within a 2 s limit: no step below 20 queries a second can run.
    short = replace(_config(), measurement=RunLength(2, 40, 0.5, max_duration_s=2.0))
    found = find_max_qps(short, 0.5, Archive(tmp_path).ensure(), live_fingerprint(), steps=20)
    assert found.max_qps is None and found.stopped_because
    assert all(s.target_qps >= 20.0 for s in found.steps) and len(found.steps) < 20


def test_a_search_cut_short_before_its_first_step_still_prints(tmp_path):
    found = Capacity("calibration", 2, (), p99_bound_ms=50.0, interrupted=True)
    console = Console(file=io.StringIO(), width=120)
    console.print(capacity_table(found))
    shown = console.file.getvalue()
    assert "no rate tried kept p99 within 50 ms" in shown and "interrupted" in shown
