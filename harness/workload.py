"""The workload plugin contract: a DAG of stages, one method per stage, probes through a context."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

# The contract's too: plugins import these from here.
from harness.conditions import ALL_CORES as ALL_CORES
from harness.conditions import ALL_THREADS as ALL_THREADS
from harness.conditions import ONE_THREAD as ONE_THREAD
from harness.conditions import Condition as Condition
from harness.conditions import Setting as Setting
from harness.errors import UserError
from harness.params import Param as Param
from harness.record.probes import Probe, Recorder
from harness.record.virtual import Virtual
from harness.words import (
    FAN_OUT_JOIN,
    GATHER_JOIN,
    LAYERS,
    UNKNOWN_BYTES,
    Category,
    Kind,
    Resource,
)

T = TypeVar("T")
R = TypeVar("R")

SIZES = ("quick", "default")
BACKENDS = ("torch", "onnxruntime")
FAN_OUT_THREADS = "gapbench-fan-out"  # the name prefix of the fan-out pool's threads

# Plain strings for the probe hot path: an Enum's .value is a property lookup.
_COMPUTE, _MOVEMENT, _SCHEDULING = (c.value for c in Category)
_HOST_CPU, _HOST_MEMORY = Resource.HOST_CPU.value, Resource.HOST_MEMORY.value
_DEVICE, _LINK, _WAIT = Resource.DEVICE.value, Resource.LINK.value, Resource.WAIT.value


@dataclass(frozen=True)
class Stage:
    """One step of a pipeline: its name (also its method's), its layer and the stages it needs."""

    name: str
    layer: str
    after: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.layer not in LAYERS:
            allowed = ", ".join(LAYERS)
            raise UserError(f"stage {self.name!r}: unknown layer {self.layer!r} (one of {allowed})")
        object.__setattr__(self, "after", tuple(self.after))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "layer": self.layer, "after": list(self.after)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Stage:
        return cls(data["name"], data["layer"], tuple(data["after"]))


@dataclass(frozen=True)
class SetupContext:
    """What a workload is set up for: the device, the size and the seed of every random choice."""

    device: str = "cpu"
    size: str = "default"
    seed: int = 0
    backend: str = "torch"  # what runs the model stages (a workload lists those it supports)
    providers: tuple[str, ...] = ()  # onnxruntime execution providers; () picks by device
    # The workload's parameters (Workload.params), every one: given by the user, or its default.
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise UserError(f"unknown size {self.size!r} (one of {', '.join(SIZES)})")
        if self.backend not in BACKENDS:
            raise UserError(f"unknown backend {self.backend!r} (one of {', '.join(BACKENDS)})")

    @property
    def quick(self) -> bool:
        return self.size == "quick"


# The name plugins written before the setup context was named for what it is still import.
RunContext = SetupContext


@dataclass
class StageContext:
    """Handed to a stage method: the run's settings plus probes that record into this request."""

    setup: SetupContext  # what the workload was set up for
    recorder: Recorder
    stage: str
    request: int
    _fan_out_pool: ThreadPoolExecutor | None = field(default=None, repr=False)
    # False only to measure what probing costs: probes then do nothing at all.
    probes: bool = True

    @property
    def device(self) -> str:
        return self.setup.device

    @property
    def run(self) -> SetupContext:
        """The setup context, under the name plugins written before it was ``setup`` use."""
        return self.setup

    @property
    def size(self) -> str:
        return self.setup.size

    @property
    def seed(self) -> int:
        return self.setup.seed

    @property
    def params(self) -> Mapping[str, Any]:
        """The workload's parameters, every one set (see ``Workload.params``)."""
        return self.setup.params

    @property
    def on_device(self) -> bool:
        """True when ``device`` is an accelerator (compute then runs on the `device` resource)."""
        return self.setup.device != "cpu"

    def compute(self, label: str = "", resource: str | None = None) -> Probe:
        """Time the math: kernels, matmuls, top-k, framework dispatch around them."""
        if not self.probes:
            return _NO_PROBE  # type: ignore[return-value]
        default = _DEVICE if self.setup.device != "cpu" else _HOST_CPU
        return Probe(self.recorder, self.stage, _COMPUTE, resource or default, label, 0)

    def movement(
        self, nbytes: int = UNKNOWN_BYTES, label: str = "", resource: str | None = None
    ) -> Probe:
        """Time moving ``nbytes`` bytes: copies, (de)serialisation, IPC, disk, network.

        When the size is known only inside the block (a serialised reply), set the probe's
        ``nbytes`` there: ``with ctx.movement() as p: body = dumps(x); p.nbytes = len(body)``.
        Left unset, the size is unknown (``harness.words.UNKNOWN_BYTES``) and the set's verdict
        says its rate is unknown; ``0`` says no bytes moved (pointers handed over).
        """
        if not self.probes:
            return _NO_PROBE  # type: ignore[return-value]
        # Probe built here, not through _probe: one call less on the hot path.
        resource = resource or _HOST_MEMORY
        return Probe(self.recorder, self.stage, _MOVEMENT, resource, label, nbytes)

    def transfer(self, nbytes: int, label: str = "") -> Probe:
        """Time a host<->device copy: movement on the `link` resource."""
        return self._probe(_MOVEMENT, _LINK, label, nbytes)

    def wait(self, label: str = "", resource: str | None = None) -> Probe:
        """Time a blocked wait (a lock, a server, another branch): scheduling, measured."""
        return self._probe(_SCHEDULING, resource or _WAIT, label, 0)

    def token(self, count: int = 1) -> None:
        """Mark ``count`` output tokens of a decoding stage as produced now: the times of
        first token, per output token and between tokens come from these marks.

        On a device it waits for the device first, as a server streaming each token must
        before it sends it: a token's time is when it exists, not when it was asked for.
        """
        if self.setup.device != "cpu":
            import torch

            # This thread's stream only: another request's kernels are not this token's.
            torch.cuda.current_stream(self.setup.device).synchronize()
        self.recorder.token(count)

    def fan_out(
        self,
        fn: Callable[[T], R],
        items: Iterable[T],
        label: str = "",
        parallel: bool = True,
    ) -> list[R]:
        """Run ``fn`` over ``items`` concurrently (run-time fan-out, e.g. a planner's tool calls).

        The stage blocks in a wait that joins the branches; each branch runs on a pool thread
        in a copy of this context, recorded as a branch enclosed by that wait, so the analysis
        can put the last branch to finish on the critical path and the others beside it.
        ``parallel=False`` runs the branches in turn on this thread, recorded as branches all
        the same: work that could overlap and did not, which `gapbench show` weighs.
        """
        items = list(items)
        pool = self._fan_out_pool
        # A fan-out from inside a branch runs its branches in turn on the branch's own thread:
        # waiting on the shared pool from one of its workers could wait forever.
        nested = threading.current_thread().name.startswith(FAN_OUT_THREADS)
        with self.wait(label or FAN_OUT_JOIN):
            if pool is None or nested or len(items) <= 1 or not parallel:
                return [self._branch(fn, item, i) for i, item in enumerate(items)]
            # ThreadPoolExecutor does not carry contextvars: without a copy per branch, its
            # probes would lose the spans that enclose them.
            futures = [
                pool.submit(contextvars.copy_context().run, self._branch, fn, item, i)
                for i, item in enumerate(items)
            ]
            concurrent.futures.wait(futures)  # every branch ends inside the join, failed or not
            return [future.result() for future in futures]

    async def gather(self, *awaitables: Awaitable[R], label: str = "") -> list[R]:
        """Await ``awaitables`` as concurrent asyncio tasks (run-time fan-out in async stages).

        As ``fan_out`` does for threads: the stage waits in a join, each task is a branch.
        """
        with self.wait(label or GATHER_JOIN):
            tasks = [
                asyncio.ensure_future(self._async_branch(aw, i)) for i, aw in enumerate(awaitables)
            ]
            return list(await asyncio.gather(*tasks))

    async def _async_branch(self, awaitable: Awaitable[R], index: int) -> R:
        with self.recorder.span(Kind.BRANCH, stage=self.stage, label=f"branch {index}"):
            return await awaitable

    def _branch(self, fn: Callable[[T], R], item: T, index: int) -> R:
        with self.recorder.span(Kind.BRANCH, stage=self.stage, label=f"branch {index}"):
            return fn(item)

    def _probe(self, category: str, resource: str, label: str, nbytes: int) -> Probe:
        if not self.probes:
            return _NO_PROBE  # type: ignore[return-value]
        return Probe(self.recorder, self.stage, category, resource, label, nbytes)


class _NoProbe:
    """What a probe is when probing is off: a context manager that does nothing."""

    nbytes = 0

    def __enter__(self) -> _NoProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __setattr__(self, name: str, value: object) -> None:
        pass  # a late byte count set on a probe that records nothing goes nowhere


_NO_PROBE = _NoProbe()


class Workload:
    """Base class of workload plugins.

    A subclass names itself, lists its ``stages`` (a DAG) and defines one method per stage,
    ``def <stage>(self, ctx: StageContext, *inputs)``. A root stage receives the request payload;
    any other stage receives its parents' outputs in the order of its ``after``. The output of the
    last stage is the response.

    Concurrency contract: ``setup`` builds state that the stage methods only read, and every
    per-request value travels through arguments and return values, so the runner may drive several
    requests at once from worker threads (server scenario) or hand a root stage a batch of
    queries as one payload (offline scenario; ``samples`` counts them). Fan-out chosen at run time
    goes through ``ctx.fan_out`` so the runner sees each branch.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    stages: ClassVar[tuple[Stage, ...]] = ()
    # Extra modules whose source belongs to the workload's code hash (models, tokenizers).
    code_modules: ClassVar[tuple[str, ...]] = ()
    # Part of the suite `gapbench run` runs when no workload is named; a self-check is not.
    in_suite: ClassVar[bool] = True
    # The backends its model stages can run on (SetupContext.backend), the reference first.
    backends: ClassVar[tuple[str, ...]] = ("torch",)
    # What `gapbench validate` checks on it: conditions that change one component, and a stage
    # made virtually faster (COZ-style) to check the projection against.
    conditions: ClassVar[tuple[Condition, ...]] = ()
    virtual_check: ClassVar[Virtual | None] = None
    # What a user may set (`run --set NAME=VALUE`, `--params FILE.toml`); the values reach
    # ``setup`` and every stage as ``ctx.params``, and are archived with the set, under its work
    # or its execution as each parameter declares.
    params: ClassVar[tuple[Param, ...]] = ()
    # Whether several requests may be driven through it at once, as the concurrency contract
    # above says (`run --workers`, `--concurrency`); one that keeps per-request state on
    # itself says False and is refused more than one at a time.
    concurrent: ClassVar[bool] = True

    def setup(self, ctx: SetupContext) -> None:
        """Build models and data for ``ctx.device`` and ``ctx.size`` (timed as load time)."""

    def requests(self, ctx: SetupContext) -> Sequence[Any]:
        """The request stream: payloads the runner sends in order, cycling if it needs more."""
        raise NotImplementedError

    def work(self) -> Mapping[str, Any]:
        """The work's configuration (shapes, sizes), read after ``setup``; must match to compare."""
        return {}

    def outputs(self, response: Any) -> Mapping[str, Any]:
        """What of a response is kept to compare runs as an agreement rate (ids, tokens)."""
        return {}

    def execution(self) -> Mapping[str, Any]:
        """How the model stages run beyond the harness's settings (a backend's providers,
        session options, threads), read after ``setup``; part of the execution config."""
        return {}

    def setup_facts(self) -> Mapping[str, Any]:
        """What ``setup`` measured about itself (an export's time, a cache hit), read when
        measuring is over: a part it had to build again meanwhile says so too."""
        return {}

    def agreement(self) -> Mapping[str, Any]:
        """How this backend's outputs agree with the reference backend's on a fixed input set,
        measured in ``setup``; {} on the reference itself. Kept with the result set."""
        return {}

    def profiler(self) -> Any:
        """The backend's own profiler for ``--profile`` (a ``measure.profiling.BackendProfiler``),
        or None for torch.profiler."""
        return None

    def batch(self, payloads: Sequence[Any]) -> Any:
        """One payload carrying ``payloads`` for the root stage to serve as a batch (the
        offline and multi-stream scenarios with ``--batch``); ``samples`` must count them.
        A workload that cannot batch leaves this out: its samples are served one a request."""
        raise NotImplementedError

    def samples(self, payload: Any) -> int:
        """How many samples one request payload carries (1 unless the workload batches)."""
        return 1

    def teardown(self) -> None:
        """Release what ``setup`` built."""


def topological_order(stages: Sequence[Stage]) -> list[Stage]:
    """The stages in an order where every stage follows its parents; checks the DAG."""
    by_name: dict[str, Stage] = {}
    for stage in stages:
        if stage.name in by_name:
            raise UserError(f"stage {stage.name!r} is declared twice")
        by_name[stage.name] = stage
    for stage in stages:
        for parent in stage.after:
            if parent not in by_name:
                raise UserError(f"stage {stage.name!r} comes after unknown stage {parent!r}")
    order: list[Stage] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(stage: Stage) -> None:
        if state.get(stage.name) == 2:
            return
        if state.get(stage.name) == 1:
            raise UserError(f"stages form a cycle through {stage.name!r}")
        state[stage.name] = 1
        for parent in stage.after:
            visit(by_name[parent])
        state[stage.name] = 2
        order.append(stage)

    for stage in stages:
        visit(stage)
    return order
