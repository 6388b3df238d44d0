"""What analysis costs per interval as sets grow, and what recording costs as a run grows.

The sets are one real recorded request of a three-stage service repeated N times (times shifted,
ids renumbered): the shape of the README's plugin, 10 intervals a request. With
``--benchmark-enable`` every size runs and the figures land in ``extra_info``; in the plain
suite only the smallest runs, once, as a check that the benchmark itself works.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import make_manifest

from harness.analysis.columns import split_table
from harness.analysis.summary import summarize
from harness.archive.result_set import ResultSet
from harness.archive.schema import RunLength
from harness.archive.tables import intervals_frame
from harness.measure.driver import RequestDriver
from harness.measure.process import measure
from harness.projection.claims import from_arguments
from harness.projection.project import project
from harness.projection.replay_sample import REPLAY_SAMPLE
from harness.workload import SetupContext, Stage, Workload

SIZES = (1_000, 10_000, 100_000)


class Service(Workload):
    """Parse, compute, respond: the README plugin's stages, without torch."""

    name = "service"
    stages = (
        Stage("parse", layer="ingress"),
        Stage("compute", layer="inference", after=("parse",)),
        Stage("respond", layer="assembly", after=("compute",)),
    )

    def requests(self, ctx):
        return [b'{"id": 1}']

    def parse(self, ctx, payload):
        with ctx.movement(nbytes=len(payload), label="json.loads"):
            return payload

    def compute(self, ctx, request):
        with ctx.compute(label="sum"):
            return sum(range(200))

    def respond(self, ctx, result):
        with ctx.movement(nbytes=8, label="json.dumps"):
            return str(result)


class Diamond(Service):
    """Parse, then two computations side by side on threads of their own, then respond."""

    name = "diamond"
    stages = (
        Stage("parse", layer="ingress"),
        Stage("compute", layer="inference", after=("parse",)),
        Stage("lookup", layer="retrieval", after=("parse",)),
        Stage("respond", layer="assembly", after=("compute", "lookup")),
    )

    def lookup(self, ctx, request):
        with ctx.compute(label="sorted"):
            return sorted(range(300, 0, -1))[0]

    def respond(self, ctx, result, found):
        with ctx.movement(nbytes=8, label="json.dumps"):
            return str(result + found)


def grown(requests: int, workload: type[Service] = Service) -> ResultSet:
    """A set of ``requests`` copies of one real request, back to back."""
    driver = RequestDriver(workload(), SetupContext())
    outcome = driver(0, b'{"id": 1}')
    driver.close()
    one = intervals_frame(outcome.recorder.intervals)
    span = int(one["end_ns"].max() - one["start_ns"].min()) + 1_000
    n = len(one)
    tiled = one.loc[np.tile(np.arange(n), requests)].reset_index(drop=True)
    index = np.repeat(np.arange(requests), n)
    tiled["request"] = index
    tiled["start_ns"] += index * span
    tiled["end_ns"] += index * span
    latency = (outcome.response_ns - outcome.arrival_ns) / 1e9
    rows = pd.DataFrame(
        {
            "request": np.arange(requests),
            "ok": True,
            "error": "",
            "arrival_ns": 0,
            "response_ns": 0,
            "latency_s": latency,
            "samples": 1,
            "outputs": "{}",
            "replicate": 0,
        }
    )
    manifest = make_manifest(workload.stages)
    return ResultSet.of(manifest, tiled.assign(replicate=0), rows)


@pytest.mark.parametrize("requests", SIZES)
def test_analysis_cost_per_interval(benchmark, requests):
    if benchmark.disabled and requests > SIZES[0]:
        pytest.skip("the larger sets run with --benchmark-enable")
    result = grown(requests)
    claim = from_arguments(["compute=2"])

    def analyse() -> None:
        fresh = ResultSet.of(result.manifest, result.intervals, result.requests)
        summarize(fresh)
        project(fresh, claim)

    benchmark.pedantic(analyse, rounds=3 if not benchmark.disabled else 1)
    table = split_table(ResultSet.of(result.manifest, result.intervals, result.requests))
    assert len(table) == requests and table.requests["clean"].all()
    if not benchmark.disabled:
        per = benchmark.stats.stats.median / len(result.intervals)
        benchmark.extra_info.update(intervals=len(result.intervals), us_per_interval=per * 1e6)


@pytest.mark.parametrize("requests", SIZES)
def test_projection_cost_of_stages_side_by_side(benchmark, requests):
    """Every request ran two stages at once: the replay's event loop, on a sample past 4,000."""
    if benchmark.disabled and requests > SIZES[0]:
        pytest.skip("the larger sets run with --benchmark-enable")
    result = grown(requests, Diamond)
    claim = from_arguments(["compute=2"])
    table = split_table(result)
    assert not table.sequential().any()  # none replays as a plain sum

    def projected():
        return project(ResultSet.of(result.manifest, result.intervals, result.requests), claim)

    made = benchmark.pedantic(projected, rounds=3 if not benchmark.disabled else 1)
    assert made.side_by_side == requests and made.replayed == min(requests, REPLAY_SAMPLE)
    if not benchmark.disabled:
        per = benchmark.stats.stats.median / requests
        benchmark.extra_info.update(requests=requests, us_per_request=per * 1e6)


def test_recording_cost_does_not_grow_with_the_run(benchmark):
    """A request's cost at the end of a long run against its cost at the start: means and p99,
    which a collector's pause over a growing heap moves and a median hides."""
    requests = 20_000 if not benchmark.disabled else 2_000
    edge = requests // 10

    def long_run():
        return measure(Service(), SetupContext(), RunLength(0, requests, 0.0))

    result = benchmark.pedantic(long_run, rounds=1)
    latency = result.requests["latency_s"].to_numpy()
    start, end = latency[:edge], latency[-edge:]
    mean_ratio = float(end.mean() / start.mean())
    p99_ratio = float(np.percentile(end, 99) / np.percentile(start, 99))
    benchmark.extra_info.update(
        requests=requests,
        start_mean_us=float(start.mean()) * 1e6,
        end_mean_us=float(end.mean()) * 1e6,
        mean_ratio=mean_ratio,
        p99_ratio=p99_ratio,
    )
    assert len(latency) == requests
    if not benchmark.disabled:
        assert mean_ratio < 1.25  # what grows with the run stays out of the requests
