"""The columnar split against the straightforward reference: request by request, the same rows.

Generated requests cover the DAG shapes, nesting, waits and lag a runner records, each now and
then broken in one way (a probe overlapping its sibling or leaving its stage, a wait missing, a
tie, a fan-out branch), so both the vectorised path and the hand-over to the reference walk are
checked; real sets from the fixtures too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import SETS

from harness.analysis.attribution import RequestSplit, split_request
from harness.analysis.columns import split_frame, split_table
from harness.analysis.invariants import check_invariants
from harness.archive.names import load
from harness.archive.tables import intervals_frame
from harness.record.probes import Interval
from harness.words import HANDOFF_WAIT, HARNESS_LAG, QUEUE_WAIT, Kind
from harness.workload import Stage

DIAMOND = (
    Stage("a", layer="ingress"),
    Stage("b", layer="inference", after=("a",)),
    Stage("c", layer="retrieval", after=("a",)),
    Stage("d", layer="assembly", after=("b", "c")),
)
CHAIN = (
    Stage("a", layer="ingress"),
    Stage("b", layer="inference", after=("a",)),
    Stage("c", layer="assembly", after=("b",)),
)
FLAWS = ("overlap", "outside", "no wait", "tie", "branch", "orphan", "duplicate", "lag")


def reference(frames: list[list[Interval]], stages, replicate: int = 0):
    """The four tables' rows and the violations, from the reference split of each request."""
    req, st, ch, wa, problems = [], [], [], [], []
    for row, intervals in enumerate(frames):
        split = split_request(intervals, stages, replicate)
        problems += check_invariants(intervals, split)
        req.append(_request(split))
        crit = set(split.critical_stages)
        for s in split.stages:
            on = s.stage in crit
            st.append((row, s.stage, s.start_ns, s.end_ns, s.compute_ns, s.movement_ns))
            st[-1] += (s.scheduling_ns, s.unattributed_ns, s.nbytes, s.overlap_ns, s.cpu_ns, on)
            ch += [(row, s.stage, c, r, ns, on) for (c, r), ns in s.by_resource if ns]
            wa += [(row, s.stage, label, ns, on) for label, ns in s.waits if ns]
    return req, st, sorted(ch), sorted(wa), problems


def _request(split: RequestSplit) -> tuple:
    lag, queue, handoff = (split.wait_ns(k) for k in ("lag", "queue", "handoff"))
    path = " > ".join(split.critical_stages)
    return (split.request, split.latency_ns, lag, queue, handoff, split.overlap_ns, path)


def columnar(intervals: pd.DataFrame, requests: pd.DataFrame, stages):
    table = split_frame(intervals, requests, stages)
    r = table.requests
    req = list(
        zip(
            r["request"],
            r["latency_ns"],
            r["lag_ns"],
            r["queue_ns"],
            r["handoff_ns"],
            r["overlap_ns"],
            r["path"],
            strict=True,
        )
    )
    s = table.stages.drop(columns=["wall_ns", "thread"])
    st = [tuple(row) for row in s.itertuples(index=False)]
    ch = sorted(tuple(row) for row in table.charges.itertuples(index=False))
    wa = sorted(tuple(row) for row in table.waits.itertuples(index=False))
    problems = [p for rows, split in table.odd for p in check_invariants(rows, split)]
    return [tuple(x) for x in req], st, ch, wa, problems, table


class Maker:
    """Writes one request's intervals as a runner would, with an optional flaw."""

    def __init__(self, rng: np.random.Generator, request: int, stages, flaw: str) -> None:
        self.rng, self.request, self.flaw = rng, request, flaw
        self.rows: list[Interval] = []
        self.span = 0
        t = int(rng.integers(10**9, 2 * 10**9))
        arrival = t
        if flaw == "lag":
            sent = t + int(rng.integers(1, 500))
            self.add(Kind.WAIT, "", arrival, sent, label=HARNESS_LAG)
            t = sent
        ends: dict[str, int] = {}
        threads = {
            s.name: (1 if i % 2 == 0 or len(stages) == 3 else 2) for i, s in enumerate(stages)
        }
        for i, stage in enumerate(stages):
            ready = max((ends[a] for a in stage.after), default=t)
            start = ready + int(rng.integers(0, 50))
            label = QUEUE_WAIT if not stage.after else HANDOFF_WAIT
            if not (flaw == "no wait" and i == len(stages) - 1):
                self.add(
                    Kind.WAIT, stage.name, ready, start, label=label, thread=threads[stage.name]
                )
            end = self.stage(stage.name, start, threads[stage.name], depth=2)
            if flaw == "tie" and stage.name == "c":
                end = ends.get("b", end)
                self.rows[-1] = _with(self.rows[-1], end_ns=max(end, self.rows[-1].end_ns))
                end = self.rows[-1].end_ns
            ends[stage.name] = end
        response = max(ends.values()) + (int(rng.integers(0, 3)) if flaw == "outside" else 0)
        self.add(Kind.REQUEST, "", arrival, response)

    def add(self, kind: Kind, stage: str, start: int, end: int, **fields) -> Interval:
        iv = Interval(
            request=self.request,
            span=fields.pop("span", None) or self._next(),
            parent=fields.pop("parent", -1),
            kind=kind.value,
            stage=stage,
            category=fields.pop("category", ""),
            resource=fields.pop("resource", ""),
            label=fields.pop("label", ""),
            start_ns=start,
            end_ns=end,
            nbytes=fields.pop("nbytes", 0),
            thread=fields.pop("thread", 1),
            task="",
            cpu_ns=fields.pop("cpu_ns", -1),
        )
        self.rows.append(iv)
        return iv

    def _next(self) -> int:
        self.span += 1
        return self.span

    def stage(self, name: str, start: int, thread: int, depth: int) -> int:
        span = self._next()
        end = self.children(name, span, start, thread, depth)
        end += int(self.rng.integers(0, 100))
        if self.flaw == "branch" and name == "b":
            self.add(Kind.BRANCH, name, start, end, parent=span, thread=thread + 5)
        self.add(Kind.STAGE, name, start, end, span=span, thread=thread, cpu_ns=end - start)
        if self.flaw == "duplicate" and name == "a":
            self.add(Kind.STAGE, name, start, end, thread=thread)
        return end

    def children(self, stage: str, parent: int, start: int, thread: int, depth: int) -> int:
        """Probes one after another from ``start``, some with probes inside; their end."""
        t = start
        for _ in range(int(self.rng.integers(0, 4))):
            t += int(self.rng.integers(0, 40))
            category = str(self.rng.choice(["compute", "movement", "scheduling"]))
            resource = (
                "wait"
                if category == "scheduling"
                else str(self.rng.choice(["host-cpu", "host-memory"]))
            )
            span = self._next()
            if depth > 1 and self.rng.random() < 0.4:
                end = self.children(
                    stage, span, t + int(self.rng.integers(0, 20)), thread, depth - 1
                )
            else:
                end = t
            end += int(self.rng.integers(0, 200))
            label = str(self.rng.choice(["", "copy", "sleep"]))
            if self.flaw == "overlap" and self.rng.random() < 0.5:
                t -= 5
            parent_of = -1 if self.flaw == "orphan" and self.rng.random() < 0.3 else parent
            # The thread's CPU time: now and then unread, else up to the whole wall time (a
            # host compute probe's time off the CPU is a wait, less its nested probes').
            cpu = -1 if self.rng.random() < 0.1 else int(self.rng.integers(0, end - t + 1))
            self.add(
                Kind.PROBE,
                stage,
                t,
                end,
                span=span,
                parent=parent_of,
                category=category,
                resource=resource,
                label=label,
                nbytes=int(self.rng.integers(-1, 1000)),
                thread=thread,
                cpu_ns=cpu,
            )
            t = end
        return t


def _with(iv: Interval, **changes) -> Interval:
    fields = {name: getattr(iv, name) for name in Interval.__dataclass_fields__}
    return Interval(**{**fields, **changes})


def set_invariants_of(table) -> list[str]:
    return [p for rows, split in table.odd for p in check_invariants(rows, split)]


def generated(seed: int, stages, requests: int = 60):
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(requests):
        flaw = str(rng.choice(FLAWS)) if rng.random() < 0.3 else ""
        frames.append(Maker(rng, i, stages, flaw).rows)
    return frames


def tables(frames: list[list[Interval]], failed: tuple[int, ...] = ()):
    intervals = intervals_frame([iv for rows in frames for iv in rows]).assign(replicate=0)
    requests = pd.DataFrame(
        {"request": range(len(frames)), "ok": [i not in failed for i in range(len(frames))]}
    ).assign(replicate=0)
    return intervals, requests


@pytest.mark.parametrize("stages", [DIAMOND, CHAIN], ids=["diamond", "chain"])
@pytest.mark.parametrize("seed", range(6))
def test_generated_requests_split_as_the_reference_splits_them(stages, seed):
    frames = generated(seed, stages)
    intervals, requests = tables(frames)
    *got, table = columnar(intervals, requests, stages)
    assert got == list(reference(frames, stages))
    clean = table.requests["clean"]
    assert clean.any() and not clean.all()  # both paths were taken


def test_failed_requests_are_left_out_and_rows_follow_the_successful_ones():
    frames = generated(7, DIAMOND, requests=10)
    intervals, requests = tables(frames, failed=(0, 3))
    *got, table = columnar(intervals, requests, DIAMOND)
    kept = [f for i, f in enumerate(frames) if i not in (0, 3)]
    want = reference(kept, DIAMOND)
    assert got[0] == [(frames.index(f), *r[1:]) for f, r in zip(kept, want[0], strict=True)]
    assert got[1:] == list(want[1:])
    assert table.requests["request"].tolist() == [1, 2, 4, 5, 6, 7, 8, 9]


def test_a_clean_request_breaks_no_invariant_and_each_flaw_is_reported():
    frames = generated(11, DIAMOND, requests=120)
    intervals, requests = tables(frames)
    table = split_frame(intervals, requests, DIAMOND)
    clean = table.requests["clean"].to_numpy()
    for row, rows in enumerate(frames):
        if clean[row]:
            assert check_invariants(rows, split_request(rows, DIAMOND)) == []
    assert set_invariants_of(table)  # the flaws were found, by the reference's own messages


@pytest.mark.parametrize("folder", sorted(p.name for p in SETS.iterdir() if p.is_dir()))
def test_real_sets_split_as_the_reference_splits_them(folder):
    result = load(str(SETS / folder))
    table = split_table(result)
    frames, stages = [], result.manifest.stages
    ok = result.requests.loc[result.requests["ok"]]
    for (replicate, request), group in result.intervals.groupby(["replicate", "request"]):
        if ((ok["replicate"] == replicate) & (ok["request"] == request)).any():
            frames.append(
                [
                    Interval(**{k: r[k] for k in Interval.__dataclass_fields__})
                    for r in group.to_dict("records")
                ]
            )
    *got, _ = columnar(result.intervals, result.requests, stages)
    want = reference(frames, stages)
    assert [r[1:] for r in got[0]] == [r[1:] for r in want[0]]
    assert got[1:] == list(want[1:])
    assert split_table(result) is table  # computed once per loaded set


@pytest.mark.parametrize("folder", sorted(p.name for p in SETS.iterdir() if p.is_dir()))
def test_a_sequential_request_replays_as_its_naive_sum(folder):
    """Where nothing ran beside anything, the event loop gives back the scaled sum: the reason
    ``project`` need not run it on such requests."""
    from harness.projection.claims import from_arguments
    from harness.projection.project import naive
    from harness.projection.replay import replay
    from harness.projection.request_model import request_models

    result = load(str(SETS / folder))
    table = split_table(result)
    claim = from_arguments(["compute=2", "movement=3"])
    layers = {s.name: s.layer for s in result.manifest.stages}
    summed = naive(table, claim, layers).ns
    sequential = table.sequential()
    seen = 0
    for row, model in request_models(result):
        factor = lambda st, label, c, r: claim.factor(st, layers[st], c, r)[0]  # noqa: E731
        replayed, _ = replay(model, factor)
        identity, _ = replay(model)
        if sequential[row]:
            seen += 1
            assert replayed == pytest.approx(summed[row], rel=1e-9)
            assert identity == pytest.approx(table.requests["latency_ns"][row], rel=1e-9)
    assert seen == sequential.sum()


def test_a_skipped_stage_and_a_request_without_intervals():
    """A stage that did not run is nothing to wait for, in the split and in the replay; a
    successful request that recorded nothing is left out rather than breaking the table."""
    from conftest import make_manifest

    from harness.archive.result_set import ResultSet
    from harness.projection.claims import from_arguments
    from harness.projection.project import naive
    from harness.projection.replay import replay
    from harness.projection.request_model import request_models

    frames = [[iv for iv in rows if iv.stage != "c"] for rows in generated(3, DIAMOND, 12)]
    intervals, requests = tables(frames)
    requests = pd.concat(
        [requests, pd.DataFrame({"request": [99], "ok": [True], "replicate": [0]})]
    )
    *got, table = columnar(intervals, requests, DIAMOND)
    assert got == list(reference(frames, DIAMOND)) and len(table) == len(frames)
    result = ResultSet.of(make_manifest(DIAMOND), intervals, requests.assign(latency_s=0.0))
    claim = from_arguments(["compute=2"])
    layers = {s.name: s.layer for s in DIAMOND}
    summed = naive(split_table(result), claim, layers).ns
    sequential = split_table(result).sequential()
    assert sequential.any()
    for row, model in request_models(result):
        if sequential[row]:
            f = lambda st, label, c, r: claim.factor(st, layers[st], c, r)[0]  # noqa: E731
            assert replay(model, f)[0] == pytest.approx(summed[row], rel=1e-9)
