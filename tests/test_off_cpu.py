"""A host compute probe's thread off the CPU (the interpreter lock, preemption) is a wait.

Exact splits under a fake wall clock and a fake thread CPU clock, the columnar path against the
reference, the replay scaling only the on-CPU part, and on real runs: a native branch beside a
pure-Python one waits for the interpreter lock, and gapbench says so.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import replace

import pytest
from conftest import FakeClock
from test_columns import columnar, reference
from test_projection import result_set

from harness.analysis.attribution import split_request
from harness.machine.threads import threads
from harness.measure.driver import RequestDriver
from harness.projection.claims import from_arguments
from harness.projection.project import project
from harness.projection.sentences import answer_sentence
from harness.record.probes import Recorder
from harness.words import OFF_CPU, QUEUE_WAIT, Kind
from harness.workload import Param, SetupContext, Stage, StageContext, Workload

ONE = (Stage("s", "inference"),)


class Clocks:
    """A wall clock and a thread CPU clock that move only when told to."""

    def __init__(self) -> None:
        self.wall, self.cpu = FakeClock(0), FakeClock(0)

    def run(self, wall: int, cpu: int) -> None:
        """``wall`` ns pass, of which the thread spent ``cpu`` on a CPU."""
        self.wall.advance(wall)
        self.cpu.advance(cpu)


def recorded(resource: str = "host-cpu", blind_child: bool = False) -> list:
    """One stage: 5 ns of glue; a compute probe of 100 ns wall and 60 ns CPU with a movement
    probe of 30 ns wall and 10 ns CPU inside it; 5 ns of glue."""
    clocks = Clocks()
    recorder = Recorder(0, clock=clocks.wall, cpu_clock=clocks.cpu)
    ctx = StageContext(SetupContext(), recorder, "s", 0)
    with recorder.span(Kind.STAGE, stage="s"):
        clocks.run(5, 5)
        with ctx.compute(resource=resource):
            clocks.run(50, 30)
            if blind_child:
                recorder.add(Kind.PROBE, 55, 85, stage="s", category="movement",
                             resource="host-memory", parent=1)  # fmt: skip
                clocks.run(30, 10)
            else:
                with ctx.movement(nbytes=8):
                    clocks.run(30, 10)
            clocks.run(20, 20)
        clocks.run(5, 5)
    recorder.add(Kind.REQUEST, 0, 110)
    recorder.add(Kind.WAIT, 0, 0, stage="s", category="scheduling", resource="wait",
                 label=QUEUE_WAIT)  # fmt: skip
    return recorder.intervals


def test_off_cpu_time_of_host_compute_is_a_wait_and_nested_probes_keep_theirs():
    ivs = recorded()
    compute = next(iv for iv in ivs if iv.category == "compute")
    assert (compute.duration_ns, compute.cpu_ns) == (100, 60)
    s = split_request(ivs, ONE).stage("s")
    # Compute: 70 ns of its own, less 40 off the CPU of which its movement probe had 20.
    assert (s.compute_ns, s.movement_ns, s.scheduling_ns, s.unattributed_ns) == (50, 30, 20, 10)
    assert dict(s.waits) == {OFF_CPU: 20}
    assert s.wall_ns == 110


def test_device_compute_and_probes_without_cpu_readings_keep_all_their_time():
    s = split_request(recorded(resource="device"), ONE).stage("s")
    assert (s.compute_ns, s.scheduling_ns) == (70, 0)  # the host waited for the device
    s = split_request(recorded(blind_child=True), ONE).stage("s")
    assert (s.compute_ns, s.scheduling_ns) == (70, 0)  # its child's off-CPU time is unknown


def test_an_intra_op_pool_s_work_on_other_threads_is_not_the_probe_s():
    """The calling thread works its share of the pool and spins at its barrier: its CPU time
    is its wall time, whatever the pool's other threads used (they are not read)."""
    clocks = Clocks()
    recorder = Recorder(0, clock=clocks.wall, cpu_clock=clocks.cpu)
    ctx = StageContext(SetupContext(), recorder, "s", 0)
    with recorder.span(Kind.STAGE, stage="s"), ctx.compute():
        clocks.run(80, 80)  # and, unseen, three pool threads ran 240 ns of the same matmul
    recorder.add(Kind.REQUEST, 0, 80)
    s = split_request(recorder.intervals, ONE).stage("s")
    assert (s.compute_ns, s.scheduling_ns) == (80, 0)


def test_the_columnar_split_agrees_with_the_reference():
    frames = [recorded(), recorded(resource="device"), recorded(blind_child=True)]
    frames = [[replace(iv, request=i) for iv in ivs] for i, ivs in enumerate(frames)]
    from test_columns import tables

    intervals, requests = tables(frames)
    *got, table = columnar(intervals, requests, ONE)
    assert got == list(reference(frames, ONE))
    assert table.requests["clean"].all()  # the vectorised path, not the reference walk


def test_a_faster_cpu_shortens_only_the_on_cpu_part():
    p = project(result_set(recorded(), ONE), from_arguments(["host-cpu.compute=2"]))
    # 110 ns: 50 of on-CPU compute become 25; 20 off the CPU stay (a wait).
    for model in ("naive", "replay"):
        assert p.speedup(model) == pytest.approx(110 / 85)
    identity = project(result_set(recorded(), ONE), from_arguments(["host-cpu.compute=1"]))
    assert identity.replay_identity_error == 0.0


def test_the_answer_sentence_names_the_wait():
    from harness.projection.answer import answer

    said = answer(result_set(recorded(), ONE))
    assert said.off_cpu_share == pytest.approx(20 / 110)
    assert "18% off the CPU in compute" in answer_sentence(said)
    assert "interpreter lock" in answer_sentence(said)


class Seams(Workload):
    """A native branch (torch, which releases the interpreter lock) beside a pure-Python one."""

    name = "seams"
    stages = (
        Stage("start", "ingress"),
        Stage("native", "inference", after=("start",)),
        Stage("python", "orchestration", after=("start",)),
        Stage("end", "assembly", after=("native", "python")),
    )
    params = (Param("loops", 0, low=0, high=10**8),)

    def setup(self, ctx):
        import torch

        self.loops = ctx.params["loops"]
        self.weight = torch.randn(96, 96) * 96**-0.5

    def requests(self, ctx):
        return list(range(8))

    def start(self, ctx, payload):
        import torch

        return torch.randn(96, 96), threading.Event(), threading.Event()

    def native(self, ctx, given):
        import torch

        x, python_began, native_done = given
        with ctx.wait(label="python began"):  # so that the two always overlap
            python_began.wait(timeout=5)
        with ctx.compute(label="matmuls"), torch.inference_mode():
            for _ in range(200):
                x = torch.tanh(x @ self.weight)
        native_done.set()
        return x

    def python(self, ctx, given):
        _, began, native_done = given
        began.set()
        with ctx.compute(label="python"):
            n = 0  # pure Python, holding the lock, for as long as the native branch runs
            while n < self.loops and not native_done.is_set():
                n += 1
        return n

    def end(self, ctx, a, b):
        return b


def _native_stage(loops: int, requests: int = 10) -> list:
    workload, setup = Seams(), SetupContext(params={"loops": loops})
    workload.setup(setup)
    driver = RequestDriver(workload, setup)
    try:
        outcomes = [driver(i, i) for i in range(requests + 2)][2:]  # two warm-up requests
    finally:
        driver.close()
    return [split_request(o.recorder.intervals, Seams.stages).stage("native") for o in outcomes]


@pytest.mark.slow
def test_a_native_branch_beside_python_waits_for_the_lock_and_is_not_charged_compute():
    def total(splits, what):
        if what == OFF_CPU:
            return sum(dict(s.waits).get(OFF_CPU, 0) for s in splits)
        return sum(s.compute_ns for s in splits)

    # Python's own switch interval (another test may have set its own): the lock changes hands
    # every 5 ms at most, so each op of the native branch may wait that long for it.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    try:
        with threads(1):
            alone = _native_stage(loops=0, requests=16)
            wall_alone = total(alone, "compute") + total(alone, OFF_CPU)
            # Whether the lock is contended is the scheduler's call: on a busy machine the
            # Python branch may get no core while the native one runs. Tried again then.
            for _ in range(3):
                beside = _native_stage(loops=10**6, requests=16)
                wall_beside = total(beside, "compute") + total(beside, OFF_CPU)
                if wall_beside > 1.3 * wall_alone:
                    break
    finally:
        sys.setswitchinterval(interval)
    # Beside the Python branch the native one waits for the lock after its ops: its compute
    # probe's wall time grows, and the growth is off-CPU time, not compute: the thread's CPU
    # clock, read apart from the wall clock, grows only by what handing the lock over costs.
    # A busy machine adds preemption to both sides, which is off-CPU time too.
    assert wall_beside > 1.3 * wall_alone, "the lock was never contended in three tries"
    grown = wall_beside - wall_alone
    assert total(beside, OFF_CPU) - total(alone, OFF_CPU) > 0.6 * grown
    assert total(beside, "compute") - total(alone, "compute") < 0.2 * grown
    for s in alone + beside:
        # What is called compute ran on the CPU: the stage's own CPU reading, taken at its
        # edges apart from the probe's, holds it.
        assert s.cpu_ns >= s.compute_ns


def test_an_intra_op_pool_s_caller_works_its_share_on_a_real_run():
    """The rule for pools, on real matmuls with two intra-op threads: the calling thread is on
    the CPU for its share of the op's work, so what the probe calls compute is its own work
    while the op could run, not the pool's other threads' (which the process's CPU time
    shows, and the probe never reads)."""
    import time

    import torch

    recorder = Recorder(0)
    ctx = StageContext(SetupContext(), recorder, "s", 0)
    weight = torch.randn(512, 512)
    with threads(2), recorder.span(Kind.STAGE, stage="s"):
        process_before = time.process_time_ns()
        with ctx.compute(), torch.inference_mode():
            x = weight
            for _ in range(8):
                x = torch.tanh(x @ weight)
        process_used = time.process_time_ns() - process_before
    start = min(iv.start_ns for iv in recorder.intervals)
    recorder.add(Kind.REQUEST, start, max(iv.end_ns for iv in recorder.intervals))
    s = split_request(recorder.intervals, ONE).stage("s")
    # The pool's other thread worked too (the process spent more than the caller), and its
    # work is not the probe's; busy machine or not, the caller ran for a fair part of it.
    assert 0.25 * process_used <= s.compute_ns < process_used
