"""A big set's side-by-side requests replayed from a seeded sample, its error measured."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from conftest import interval, make_manifest
from hypothesis import given
from hypothesis import strategies as st
from test_attribution import probe_iv, stage_iv, wait_iv
from test_projection import ONE, fan_out

from harness.archive.result_set import ResultSet
from harness.archive.tables import intervals_frame
from harness.cli import main
from harness.projection.claims import from_arguments
from harness.projection.project import project
from harness.projection.replay_sample import PERCENTILES, choose, percentile, sampling_error
from harness.record.probes import Interval
from harness.words import QUEUE_WAIT, Kind


def plain(total: int) -> list[Interval]:
    return [
        interval(Kind.REQUEST, 0, total),
        replace(wait_iv("s", 0, 0, QUEUE_WAIT), span=4),  # spans apart: a clean request
        stage_iv("s", 0, total, span=1),
        probe_iv("s", "compute", 0, total // 4, span=2, parent=1),
        probe_iv("s", "movement", total // 4, total, span=3, parent=1, resource="host-memory"),
    ]


def many(count: int, seed: int = 0) -> ResultSet:
    """``count`` fan-out requests (two branches side by side) of varied lengths, with a
    sequential one (compute, then a copy) every fifth request."""
    rng = np.random.default_rng(seed)
    rows: list[Interval] = []
    for request in range(count):
        a_end, b_end = (int(n) for n in rng.integers(20, 200, 2))
        shift = request * 1_000
        for iv in plain(a_end + b_end) if request % 5 == 0 else fan_out(a_end, b_end):
            moved = replace(iv, start_ns=iv.start_ns + shift, end_ns=iv.end_ns + shift)
            rows.append(replace(moved, request=request))
    frame = intervals_frame(rows).assign(replicate=0)
    latency = frame.loc[frame["kind"] == Kind.REQUEST.value, ["request", "start_ns", "end_ns"]]
    requests = pd.DataFrame(
        {
            "request": latency["request"].to_numpy(),
            "ok": True,
            "latency_s": (latency["end_ns"] - latency["start_ns"]).to_numpy() / 1e9,
            "replicate": 0,
        }
    )
    return ResultSet.of(make_manifest(ONE, cores=1), frame, requests)


@given(
    st.lists(st.tuples(st.floats(-1e6, 1e6), st.integers(0, 7)), min_size=1, max_size=60).filter(
        lambda pairs: any(w for _, w in pairs)
    ),
    st.floats(0, 100),
)
def test_whole_weights_give_numpy_s_percentile_of_the_values_repeated(pairs, q):
    values, weights = (np.array(column) for column in zip(*pairs, strict=True))
    repeated = np.repeat(values, weights)
    got = percentile(values, weights.astype(float), q)
    assert got == pytest.approx(float(np.percentile(repeated, q)), rel=1e-9, abs=1e-6)
    ones = percentile(values, np.ones(len(values)), q)  # every weight 1: numpy's own
    assert ones == pytest.approx(float(np.percentile(values, q)), rel=1e-9, abs=1e-6)


def test_a_left_out_request_counts_for_nothing_and_a_heavy_one_for_many():
    values = np.array([1.0, 2.0, 3.0, 100.0])
    assert percentile(values, np.array([1.0, 1.0, 1.0, 0.0]), 100) == 3.0
    assert percentile(values, np.array([1.0, 1.0, 1.0, 0.0]), 50) == 2.0
    assert percentile(values, np.array([1.0, 1.0, 1.0, 50.0]), 50) == 100.0
    # Whole weights: the percentile of the values repeated.
    weights = np.array([3.0, 1.0, 2.0, 4.0])
    repeated = np.repeat(values, weights.astype(int))
    for q in (0, 10, 37.5, 50, 90, 99, 100):
        assert percentile(values, weights, q) == pytest.approx(np.percentile(repeated, q))


def test_the_sample_is_seeded_stands_for_the_rest_and_is_only_drawn_past_its_size():
    side = np.arange(0, 1000, 2)
    every = choose(side, 1000, 600)
    assert not every.sampled and every.rows.tolist() == side.tolist()
    assert every.weights.tolist() == [1.0] * 1000
    assert choose(side, 1000, 0).rows.tolist() == side.tolist()  # 0: every one
    drawn = choose(side, 1000, 100)
    assert drawn.sampled and len(drawn.rows) == 100 and set(drawn.rows) <= set(side)
    assert drawn.rows.tolist() == choose(side, 1000, 100).rows.tolist()
    assert drawn.weights.sum() == pytest.approx(1000)  # the sample stands for all it replaces
    assert (drawn.weights[1::2] == 1).all()  # the sequential rows are all kept, at 1


def test_a_sample_projects_close_to_every_request_and_says_how_close():
    result, claim = many(1500), from_arguments(["compute=2"])
    whole = project(result, claim, sample_size=0)
    assert whole.replayed == whole.side_by_side == 1200 and whole.sampling_error is None
    sampled = project(result, claim, sample_size=300)
    assert (sampled.replayed, sampled.side_by_side) == (300, 1200)
    assert sampled.sampling_error is not None
    for pct in ("p50", "p99"):
        error = abs(sampled.speedup("replay", pct) / whole.speedup("replay", pct) - 1)
        assert error < 0.05
    # What the sample actually moved the replayed percentiles by lies within what it states.
    for pct in ("p50", "p99"):
        moved = abs(sampled.replay[pct].value_ms / whole.replay[pct].value_ms - 1)
        assert moved <= sampled.sampling_error[pct]
    # Measured and naive figures never come from the sample.
    assert sampled.measured == whole.measured and sampled.naive == whole.naive


def test_a_sample_at_least_as_big_as_the_set_projects_as_every_request():
    result, claim = many(200), from_arguments(["compute=2"])
    assert project(result, claim, sample_size=160) == project(result, claim, sample_size=0)


@pytest.mark.parametrize("value", ["-1", "5", "10000001", "two"])
def test_a_replay_sample_out_of_range_is_one_line(tmp_path, capsys, value):
    given = ["nothing", "--speedup", "compute=2", "--replay-sample", value]
    code = main(["project", *given, "--results", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--replay-sample" in err


def test_every_replicate_keeps_a_share_of_the_sample_however_small():
    two = many(600)
    requests = two.requests.copy()
    # Replicate 1: the last 10 requests, of which 8 ran their stages side by side.
    requests.loc[requests["request"] >= 590, "replicate"] = 1
    intervals = two.intervals.copy()
    intervals.loc[intervals["request"] >= 590, "replicate"] = 1
    facts = (two.manifest.replicates[0], replace(two.manifest.replicates[0], replicate=1))
    manifest = replace(two.manifest, replicates=facts)
    result = ResultSet.of(manifest, intervals, requests)
    made = project(result, from_arguments(["compute=2"]), sample_size=40)
    assert made.replicates == 2 and made.sampling_error is not None
    assert made.replay["p50"].low_ms is not None  # each replicate's own p50 is defined
    replicate_of = requests["replicate"].to_numpy()
    sample = choose(np.flatnonzero(np.arange(600) % 5 != 0), 600, 40, replicate_of)
    assert set(replicate_of[sample.rows]) == {0, 1}
    for r in (0, 1):  # each replicate's sampled weights stand for its own side-by-side rows
        mine = (replicate_of == r) & (np.arange(600) % 5 != 0)
        assert sample.weights[mine].sum() == pytest.approx(mine.sum())


def test_a_replicate_whose_share_rounds_to_none_still_keeps_one():
    # 2 of 480 side-by-side rows at a sample of 40: a share of 1/6 of a row, rounded to 0.
    replicate_of = np.r_[np.zeros(478, int), np.ones(2, int)]
    sample = choose(np.arange(480), 480, 40, replicate_of)
    assert sample.sampled
    mine = replicate_of[sample.rows] == 1
    assert mine.sum() == 1
    assert sample.weights[replicate_of == 1].sum() == pytest.approx(2)  # it stands for both
    assert sample.weights[replicate_of == 0].sum() == pytest.approx(478)


def test_the_stated_error_covers_what_the_weights_do_to_what_is_known():
    rng = np.random.default_rng(1)
    measured = rng.lognormal(0, 0.5, 2000)
    sample = choose(np.arange(2000), 2000, 100)
    moved = {
        name: abs(percentile(measured, sample.weights, q) / np.percentile(measured, q) - 1)
        for name, q in PERCENTILES.items()
    }
    assert moved["p50"] > 0  # the sample does move the measured p50: the check means something
    replayed = measured * rng.uniform(0.5, 1.0, 2000)
    stated = sampling_error(sample, replayed, measured)
    for name in PERCENTILES:
        assert stated[name] >= moved[name]
    # A replay that gives every request the same latency: no redraw moves it, and what the
    # weights do to the measured latency is all the error there is.
    flat = sampling_error(sample, np.full(2000, 3.0), measured)
    assert flat == pytest.approx(moved)


def test_an_unsampled_replay_states_no_sampling_error():
    rng = np.random.default_rng(2)
    measured = rng.lognormal(0, 0.5, 500)
    every = choose(np.arange(0, 500, 2), 500, 0)
    assert not every.sampled
    assert sampling_error(every, measured * 0.8, measured) == {"p50": 0.0, "p99": 0.0}


def test_the_sample_note_gives_each_claim_its_own_error():
    from rich.console import Console

    from harness.analysis.summary import summarize
    from harness.report.projection import projections

    result = many(600)
    made = [
        project(result, from_arguments([key]), sample_size=100)
        for key in ("compute=2", "movement=3")
    ]
    console = Console(record=True, width=400)
    console.print(projections(summarize(result), made, []))
    text = console.export_text()
    assert "a seeded sample of 100 of the 480 requests" in text
    assert "compute=2: p50 by up to" in text and "movement=3: p50 by up to" in text


def test_compare_marks_the_replayed_figures_the_sample_may_have_moved():
    from rich.console import Console

    from harness.analysis.summary import summarize
    from harness.projection.compare import compare
    from harness.report.lineup import pair

    result = many(600)
    made = project(result, from_arguments(["compute=2"]), sample_size=100)
    assert made.sampling_error is not None
    rough = replace(made, sampling_error={"p50": 0.08, "p99": 0.01})
    fine = replace(made, sampling_error={"p50": 0.01, "p99": 0.01})

    again = ResultSet.of(replace(result.manifest, id="again"), result.intervals, result.requests)

    def shown(p) -> tuple[str, str]:
        compared = compare(summarize(result), summarize(again), (p,))
        console = Console(record=True, width=400)
        console.print(*pair(compared, "[2]"))
        (checked,) = compared.checked
        return console.export_text(), f"{checked.replay:.3f}"

    text, replay = shown(rough)
    assert "(~ where more than 5%" in text and f"~{replay}" in text
    text, replay = shown(fine)
    assert "(~ where more than 5%" in text and replay in text and f"~{replay}" not in text
