"""DESIGN.md's words as code: what time is spent on, where, in which kind of interval and layer."""

from __future__ import annotations

from enum import Enum


class Category(str, Enum):
    """What a probe's time was spent on (`unattributed` is derived, never probed)."""

    COMPUTE = "compute"
    MOVEMENT = "movement"
    SCHEDULING = "scheduling"


class Resource(str, Enum):
    """What hardware an interval ran on; claims map to resources, not to code."""

    HOST_CPU = "host-cpu"
    HOST_MEMORY = "host-memory"
    DEVICE = "device"
    LINK = "link"
    REMOTE = "remote"
    WAIT = "wait"


class Kind(str, Enum):
    """Kinds of interval: a request, a stage, a probe inside a stage, a wait before a stage."""

    REQUEST = "request"
    STAGE = "stage"
    PROBE = "probe"
    # Recorded by the runner: arrival to a root stage's start (queue wait), a stage's inputs
    # ready to its start (handoff wait). Scheduling on the `wait` resource, outside any stage.
    WAIT = "wait"
    # One branch of a run-time fan-out, on its own thread or task, enclosed by the wait that
    # joins it: on the critical path the join is replaced by its last-ending branch.
    BRANCH = "branch"
    # A stretch in which an asyncio task held its thread (one step of the task): outside its
    # slices a task was suspended, and its probes must not claim that time.
    SLICE = "slice"
    # When the device ran a probe's work, from CUDA events on the host clock; its thread is the
    # stream. It may end after its probe: the host does not wait unless it synchronizes.
    DEVICE = "device"


class Layer(str, Enum):
    """The six layers of an AI request's path, from the seed article."""

    INGRESS = "ingress"
    RETRIEVAL = "retrieval"
    ORCHESTRATION = "orchestration"
    INFERENCE = "inference"
    TOOLS = "tools"
    ASSEMBLY = "assembly"


class SegmentKind(str, Enum):
    """The pieces a request's critical path is made of: a stage, or a wait before one."""

    LAG = "lag"
    QUEUE = "queue"
    HANDOFF = "handoff"
    STAGE = "stage"


CATEGORIES = tuple(c.value for c in Category)
RESOURCES = tuple(r.value for r in Resource)
LAYERS = tuple(layer.value for layer in Layer)

QUEUE_WAIT = "queue wait"  # arrival to a root stage's start
HANDOFF_WAIT = "handoff wait"  # a stage's inputs ready to its start
# The load generator behind its schedule, from a request's scheduled arrival to its send: the
# bucket of end-to-end time shown apart, never as queue wait.
HARNESS_LAG = "harness lag"
AWAIT = "await"  # an asyncio task suspended at an await while another task held its thread
FAN_OUT_JOIN = "fan-out join"  # the default label of ctx.fan_out's wait
GATHER_JOIN = "gather join"  # the default label of ctx.gather's wait
# Part of a host compute probe's own time in which its thread was off the CPU though it had
# work: waiting for the interpreter lock, or preempted. Measured (wall less thread CPU time),
# so it is scheduling, never compute (see harness.record.spans.SpanTree.off_cpu).
OFF_CPU = "off-CPU"
SEGMENT_WAITS = {
    SegmentKind.LAG.value: HARNESS_LAG,
    SegmentKind.QUEUE.value: QUEUE_WAIT,
    SegmentKind.HANDOFF.value: HANDOFF_WAIT,
}

UNATTRIBUTED = "unattributed"  # a stage's wall time no probe covered: glue, never scheduling
BUCKETS = (*CATEGORIES, UNATTRIBUTED, HARNESS_LAG)  # everything end-to-end time is split into

UNKNOWN = "unknown"  # a string that could not be read (a fingerprint field, a check's value)
UNKNOWN_BYTES = -1  # a movement probe's byte count when the code does not know it


class ComputeClass(str, Enum):
    """What bounds a stretch of compute, by the roofline (harness.analysis.roofline): its
    arithmetic intensity against the machine's ridge point, or the framework around it."""

    COMPUTE_BOUND = "compute-bound"
    MEMORY_BOUND = "memory-bound"
    DISPATCH = "dispatch"  # operators' floors, and the framework's time between them
    OPAQUE = "opaque"  # a probe whose work the profiler cannot see (no operators for it)


COMPUTE_CLASSES = tuple(c.value for c in ComputeClass)
