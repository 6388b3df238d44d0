"""The calibration workload: planted work that times itself, the ground truth for gapbench's split.

Every planted piece (CPU work, copies of known size, sleeps, a queue handoff to a worker thread,
un-probed glue) is timed on a clock gapbench's probes never read, and those timings travel with
the request's data to its response (``Carry.truth``). ``receive`` feeds a long ``search`` (critical
by design; it fans out at run time to a short and a long branch) and a short ``lookup`` beside it;
``join`` waits for both. tests/test_calibration.py sets gapbench's split beside this truth.

With ``--set service_ms=M`` the planted design gives way to one planted wait a request, drawn
from an exponential distribution of mean M: under the server scenario, a queue where M/M/c's
prediction is exact (tests/test_under_load.py).
"""

from __future__ import annotations

import hashlib
import json
import queue
import random
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import numpy as np

from harness.words import CATEGORIES, FAN_OUT_JOIN, UNATTRIBUTED
from harness.workload import Param, SetupContext, Stage, StageContext, Workload

COMPUTE, MOVEMENT, SCHEDULING = CATEGORIES
SPAN = "span"  # a stage's (or branch's) first to last line, not planted work

# Not the probes' clock (perf_counter_ns is CLOCK_MONOTONIC on Linux): the truth is not read off
# the instrument it checks. Platforms without the raw clock fall back to the monotonic one.
_TRUTH_CLOCK = getattr(time, "CLOCK_MONOTONIC_RAW", time.CLOCK_MONOTONIC)
# sha256 releases the GIL on buffers over 2 KiB, so planted compute on two threads can run in
# parallel on two cores. A step of 128 KiB (about 0.1 ms) leaves the GIL free long enough for a
# waiting thread to take it; at 16 KiB the first thread took it back first and branches ran in turn.
_BLOCK = bytes(128 * 1024)
SWITCH_INTERVAL_S = 0.0002


def truth_clock() -> int:
    """Nanoseconds on the truth clock, apart from the one gapbench's probes read."""
    return time.clock_gettime_ns(_TRUTH_CLOCK)


def truth_cpu() -> int:
    """This thread's time on a CPU in ns, read by the planted piece itself around its work.

    Only the kernel knows it, and only this clock knows it to the nanosecond while the thread
    runs (getrusage moves in ticks, /proc's schedstat lags until the thread is switched out),
    so it is the probes' source too: what the truth checks is gapbench's arithmetic over
    nested probes, threads and paths, not the kernel's accounting."""
    return time.clock_gettime_ns(time.CLOCK_THREAD_CPUTIME_ID)


def burn(duration_ns: int, glue: bool = False) -> None:
    """Keep busy for ``duration_ns`` on the truth clock: compute, or with ``glue`` glue code.

    Compute is sha256 steps, mostly outside the GIL; glue is a bare Python loop holding it.
    """
    deadline = truth_clock() + duration_ns
    while truth_clock() < deadline:
        if not glue:
            hashlib.sha256(_BLOCK).digest()


def padded_json(body: Mapping[str, Any], nbytes: int) -> bytes:
    """``body`` as JSON of exactly ``nbytes`` bytes, filled up by a ``pad`` field."""
    head = len(json.dumps({**body, "pad": ""}).encode())
    if head > nbytes:
        raise ValueError(f"{head} bytes of JSON do not fit in {nbytes}")
    return json.dumps({**body, "pad": "x" * (nbytes - head)}).encode()


@dataclass(frozen=True)
class CalibrationConfig:
    """The planted work of one request (about 40 ms): durations in microseconds, sizes in bytes.

    Both sizes plant the same work: more of it would not make the truth any surer.
    """

    payload_bytes: int = 64 * 1024
    glue_us: int = 4_000  # un-probed, in receive and in join
    search_us: int = 16_000
    search_copy_bytes: int = 4 << 20
    sleep_us: int = 3_000
    handoff_us: int = 4_000  # the worker's work behind the queue handoff
    short_branch_us: int = 1_000
    long_branch_us: int = 3_000
    branch_copy_bytes: int = 1 << 20
    branch_glue_us: int = 1_000
    lookup_us: int = 2_500  # lookup stays under a third of search: search is always critical
    lookup_copy_bytes: int = 1 << 20
    lookup_sleep_us: int = 1_000
    join_us: int = 2_000
    reply_bytes: int = 16 * 1024
    requests: int = 16


@dataclass(frozen=True)
class Planted:
    """One span of a request on the truth clock: planted work, or a stage's or branch's span."""

    stage: str
    branch: int  # -1 on the stage's own timeline, else the index of its fan-out branch
    category: str  # compute, movement, scheduling, unattributed, or SPAN
    label: str
    start_ns: int
    end_ns: int
    nbytes: int = 0
    cpu_ns: int = -1  # planted compute's time on a CPU; the rest of it waited for one

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def off_cpu_ns(self) -> int:
        """Planted compute's time off the CPU (the interpreter lock, preemption): a wait."""
        if self.category != COMPUTE or self.cpu_ns < 0:
            return 0
        return min(max(self.duration_ns - self.cpu_ns, 0), self.duration_ns)


class Planter:
    """Times the planted pieces of one stage (or branch) call; made per call, never shared."""

    def __init__(self, stage: str, branch: int = -1) -> None:
        self.stage, self.branch = stage, branch
        self.pieces: list[Planted] = []
        self.first_ns = truth_clock()

    @contextmanager
    def piece(self, category: str, label: str, nbytes: int = 0) -> Iterator[None]:
        cpu = truth_cpu() if category == COMPUTE else 0
        start = truth_clock()
        yield
        end = truth_clock()
        used = truth_cpu() - cpu if category == COMPUTE else -1
        self.pieces.append(
            Planted(self.stage, self.branch, category, label, start, end, nbytes, used)
        )

    def close(self, *carried: Iterable[Planted]) -> tuple[Planted, ...]:
        """The pieces carried in, this call's pieces and its span, which ends now."""
        last = truth_clock()
        span = Planted(self.stage, self.branch, SPAN, "", self.first_ns, last)
        return (*(p for c in carried for p in c), *self.pieces, span)


@dataclass(frozen=True)
class Truth:
    """A request's planted pieces: the split gapbench should find, known without its probes."""

    pieces: tuple[Planted, ...]

    def spans(self) -> list[Planted]:
        return [p for p in self.pieces if p.category == SPAN]

    def span(self, stage: str, branch: int = -1) -> Planted:
        return next(p for p in self.spans() if p.stage == stage and p.branch == branch)

    def critical_branch(self, stage: str) -> int:
        """The fan-out branch of ``stage`` that ended last (-1 when it did not fan out)."""
        branches = [p for p in self.spans() if p.stage == stage and p.branch >= 0]
        return max(branches, key=lambda p: p.end_ns).branch if branches else -1

    def critical_stages(self) -> tuple[str, ...]:
        """Back from the sink, through the parent whose last line came last."""
        after = {s.name: s.after for s in Calibration.stages}
        path = [Calibration.stages[-1].name]
        while after[path[-1]]:
            path.append(max(after[path[-1]], key=lambda name: self.span(name).end_ns))
        return tuple(reversed(path))

    def by_category(self, arrival_ns: int) -> dict[str, int]:
        """Planted ns per category along the critical path, from ``arrival_ns`` (truth clock).

        Scheduling is the planted waits plus the gaps between a stage's inputs being ready (its
        parents' last lines, or the arrival) and its first line: the runner's waits seen from
        outside. Inside a fan-out join, the branch that ended last stands in for the join.
        """
        totals = dict.fromkeys((*CATEGORIES, UNATTRIBUTED), 0)
        after = {s.name: s.after for s in Calibration.stages}
        for stage in self.critical_stages():
            ready = max((self.span(p).end_ns for p in after[stage]), default=arrival_ns)
            totals[SCHEDULING] += self.span(stage).start_ns - ready
            branch = self.critical_branch(stage)
            for p in self.pieces:
                if p.stage != stage or p.category == SPAN or p.branch not in (-1, branch):
                    continue
                ns = p.duration_ns
                if p.label == FAN_OUT_JOIN:
                    ns -= self.span(stage, branch).duration_ns
                totals[p.category] += ns - p.off_cpu_ns
                totals[SCHEDULING] += p.off_cpu_ns
        return totals

    def overlap_ns(self) -> int:
        """Time beside the critical path: stages off it, and branches that did not end last."""
        path = self.critical_stages()
        return sum(
            p.duration_ns
            for p in self.spans()
            if (p.branch < 0 and p.stage not in path)
            or (p.branch >= 0 and p.stage in path and p.branch != self.critical_branch(p.stage))
        )


@dataclass(frozen=True)
class Carry:
    """A stage's output and the truth so far, travelling together; join's is the response."""

    value: Any  # the request's id, then join's serialised reply
    pieces: tuple[Planted, ...]

    @property
    def truth(self) -> Truth:
        return Truth(self.pieces)


class Calibration(Workload):
    """Planted compute, movement, waits and glue whose truth is timed apart from gapbench."""

    name = "calibration"
    description = "planted work timed on its own clock: ground truth for gapbench's split"
    in_suite = False  # a check of gapbench itself, run by name
    stages = (
        Stage("receive", layer="ingress"),
        Stage("search", layer="retrieval", after=("receive",)),
        Stage("lookup", layer="tools", after=("receive",)),
        Stage("join", layer="assembly", after=("search", "lookup")),
    )

    params = (
        Param(
            "service_ms",
            0.0,
            "instead of the planted design, one wait a request drawn from an exponential "
            "distribution of this mean (0: the planted design)",
            low=0.0,
            high=60_000.0,
        ),
    )

    config: CalibrationConfig
    service_s: float  # the exponential service's mean (0: the planted design)
    draws: random.Random
    drawing: threading.Lock
    sources: dict[int, np.ndarray]  # copy sources by size
    jobs: queue.Queue
    worker: threading.Thread

    def setup(self, ctx: SetupContext) -> None:
        self.config = c = CalibrationConfig()
        self.service_s = float(ctx.params.get("service_ms", 0.0)) / 1e3
        self.draws, self.drawing = random.Random(ctx.seed), threading.Lock()
        sizes = {c.search_copy_bytes, c.branch_copy_bytes, c.lookup_copy_bytes}
        self.sources = {n: np.ones(n, np.uint8) for n in sizes}
        self.jobs = queue.Queue()
        self.worker = threading.Thread(target=self._serve, name="calibration-worker", daemon=True)
        self.worker.start()
        # Planted branches are meant to run side by side. A thread woken while its sibling hashes
        # can wait a whole switch interval (5 ms) for the interpreter lock, and the "short" branch
        # then ends last; a short interval keeps the planted design what it says.
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_S)

    def teardown(self) -> None:
        self.jobs.put(None)
        self.worker.join()
        sys.setswitchinterval(self._switch_interval)

    def _serve(self) -> None:
        """The worker behind the queue handoff: planted compute per job, then the reply."""
        while (job := self.jobs.get()) is not None:
            duration_ns, reply = job
            burn(duration_ns)
            reply.put(duration_ns)

    def requests(self, ctx: SetupContext) -> Sequence[bytes]:
        c = CalibrationConfig()
        # Numbers to parse, padded so every payload is exactly payload_bytes long.
        bodies = ({"id": i, "values": list(range(i, i + 2_000))} for i in range(c.requests))
        return [padded_json(body, c.payload_bytes) for body in bodies]

    def work(self) -> Mapping[str, Any]:
        return asdict(self.config)

    def outputs(self, response: Carry) -> Mapping[str, Any]:
        # Timings differ every run; only the id is the same work's output.
        return {"id": json.loads(response.value)["id"]}

    def _copy(self, ctx: StageContext, plant: Planter, label: str, nbytes: int) -> None:
        array = self.sources[nbytes]
        with ctx.movement(nbytes=array.nbytes, label=label), plant.piece(MOVEMENT, label, nbytes):
            np.copy(array)

    def _hash(self, ctx: StageContext, plant: Planter, label: str, us: int) -> None:
        with ctx.compute(label=label), plant.piece(COMPUTE, label):
            burn(us * 1_000)

    def receive(self, ctx: StageContext, payload: bytes) -> Carry:
        """Deserialise the payload (movement of its exact size), then un-probed glue."""
        plant, c = Planter("receive"), self.config
        if self.service_s:
            return self._exponential(ctx, plant, payload)
        with (
            ctx.movement(nbytes=len(payload), label="json.loads"),
            plant.piece(MOVEMENT, "json.loads", c.payload_bytes),
        ):
            body = json.loads(payload)
        # Outside any probe on purpose: it must show as unattributed, never as scheduling.
        with plant.piece(UNATTRIBUTED, "glue"):
            burn(c.glue_us * 1_000, glue=True)
        return Carry(int(body["id"]), plant.close())

    def _exponential(self, ctx: StageContext, plant: Planter, payload: bytes) -> Carry:
        """The whole request's service: a wait of exponentially distributed length."""
        with self.drawing:  # one generator, drawn from by every serving thread
            service_s = self.draws.expovariate(1 / self.service_s)
        with ctx.wait(label="service"), plant.piece(SCHEDULING, "service"):
            time.sleep(service_s)
        return Carry(int(json.loads(payload)["id"]), plant.close())

    def search(self, ctx: StageContext, parsed: Carry) -> Carry:
        """The long, critical branch: compute, a copy, a sleep, a queue handoff, a fan-out."""
        if self.service_s:
            return parsed
        plant, c = Planter("search"), self.config
        self._hash(ctx, plant, "hash", c.search_us)
        self._copy(ctx, plant, "copy", c.search_copy_bytes)
        with ctx.wait(label="sleep"), plant.piece(SCHEDULING, "sleep"):
            time.sleep(c.sleep_us / 1e6)
        # The worker reports no intervals back, so all of this wait is scheduling.
        with ctx.wait(label="queue handoff"), plant.piece(SCHEDULING, "queue handoff"):
            reply: queue.Queue = queue.Queue(maxsize=1)
            self.jobs.put((c.handoff_us * 1_000, reply))
            reply.get()
        # The branches meet at a barrier so they run at the same time on two threads: left to
        # itself the pool may run them in turn on one, and that is a chain, not a branch beside.
        together = threading.Barrier(2, timeout=5)
        with plant.piece(SCHEDULING, FAN_OUT_JOIN):
            branch = partial(self._branch, ctx, together)
            branches = ctx.fan_out(branch, [0, 1], label=FAN_OUT_JOIN)
        return Carry(parsed.value, plant.close(parsed.pieces, *branches))

    def _branch(
        self, ctx: StageContext, together: threading.Barrier, index: int
    ) -> tuple[Planted, ...]:
        """One fan-out branch: 0 is short, 1 is long (it ends last) and ends in glue."""
        plant, c = Planter("search", branch=index), self.config
        with ctx.wait(label="both branches started"), plant.piece(SCHEDULING, "barrier"):
            together.wait()
        if index == 0:
            self._hash(ctx, plant, "branch 0 hash", c.short_branch_us)
            return plant.close()
        self._hash(ctx, plant, "branch 1 hash", c.long_branch_us)
        self._copy(ctx, plant, "branch copy", c.branch_copy_bytes)
        # A branch's own un-probed code is unattributed too, not part of the join's wait.
        with plant.piece(UNATTRIBUTED, "branch glue"):
            burn(c.branch_glue_us * 1_000, glue=True)
        return plant.close()

    def lookup(self, ctx: StageContext, parsed: Carry) -> Carry:
        """The short branch beside search: compute, a copy and a sleep, all overlap."""
        if self.service_s:
            return parsed
        plant, c = Planter("lookup"), self.config
        self._hash(ctx, plant, "hash", c.lookup_us)
        self._copy(ctx, plant, "copy", c.lookup_copy_bytes)
        with ctx.wait(label="sleep"), plant.piece(SCHEDULING, "sleep"):
            time.sleep(c.lookup_sleep_us / 1e6)
        # Receive's pieces reach join through search only, so join need not deduplicate: work
        # after a stage's last line is un-probed time the truth does not see.
        return Carry(parsed.value, plant.close())

    def join(self, ctx: StageContext, searched: Carry, looked: Carry) -> Carry:
        """Assemble: a little compute, the reply serialised to its exact size, then glue."""
        if self.service_s:
            return Carry(json.dumps({"id": searched.value}).encode(), searched.pieces)
        plant, c = Planter("join"), self.config
        self._hash(ctx, plant, "hash", c.join_us)
        with (
            ctx.movement(label="json.dumps") as probe,
            plant.piece(MOVEMENT, "json.dumps", c.reply_bytes),
        ):
            body = padded_json({"id": searched.value}, c.reply_bytes)
            probe.nbytes = len(body)
        with plant.piece(UNATTRIBUTED, "glue"):
            burn(c.glue_us * 1_000, glue=True)
        return Carry(body, plant.close(searched.pieces, looked.pieces))
