"""The written history of what gapbench stores: one entry per version of a result set's
manifest and tables, of a kept projection and of a failure record (pyperf's _bench.py keeps
one the same way). ``harness.archive.migrations`` holds a step for every bump."""

from __future__ import annotations

from harness.machine.calibration import CALIBRATION_VERSION as CALIBRATION_VERSION

SCHEMA_VERSION = 9
HISTORY = {
    1: "the first archived sets",
    2: "intervals gain cpu_ns, the thread CPU time read at stage and branch edges",
    3: "the invariant verdict is no longer stored: it is computed when a set is read",
    4: (
        "a replicate's facts keep what the workload's setup_facts() said under setup_facts, "
        "apart from gapbench's own; a reference backend's agreement is null, not {}; facts "
        "and execution settings version 2 gained over its life are filled in where absent "
        "(the set's agreement, its attachments, a profile's tool and its checks' layers too); "
        "from now on a movement's byte count of 0 says nothing was copied and -1 that the size "
        "is unknown (older sets' zeros stand as written)"
    ),
    5: (
        "a run length may cap its requests (max_requests), and a replicate's facts say whether "
        "it stopped there (hit_max_requests); older sets read with no cap"
    ),
    6: (
        "the work and the execution config keep the values of the workload's parameters "
        "(params), each under what it changes; older sets read with none; probes read their "
        "thread's CPU time too (cpu_ns), and a host compute probe's time off the CPU is a wait "
        "(older sets' probes, with -1, are read unsplit); a replicate's facts say whether it "
        "stopped because its first requests all failed (failed_fast); late in its life the "
        "manifest gained a sha256 of every table and attachment (checksums), checked on load: "
        "sets written before have none"
    ),
    7: (
        "every table and attachment a manifest names has its sha256 under checksums: one "
        "without is a damaged set; the work digest is taken of the work as stored, and a set "
        "whose work does not match it is refused; version 6 sets read as written, those "
        "without checksums unchecked (verify says so)"
    ),
    8: (
        "the execution config says how requests arrived (load: a LoadGen scenario, or clients "
        "in a closed loop; null for gapbench's own single-stream loop, as every older set "
        "ran), a replicate's facts keep what it measured under load (load), and a set run "
        "under LoadGen keeps each query LoadGen scheduled in a queries table; after its first "
        "commit the queries gained when a worker took each up and was free again (picked_ns, "
        "done_ns), the requests when each output token existed (token_ns), and the load its "
        "p99 bound: sets of that first commit read without them"
    ),
    9: (
        "a profiling pass keeps each operator it saw inside a compute probe, with its shapes, "
        "calls, own time, FLOPs and bytes, in an operators table, and the profile record the "
        "machine's calibration it is read against (calibration); older sets have neither"
    ),
}
SEALED = 7  # from this version, checked on load: every file's checksum, the work's digest
PROJECTION_VERSION = 1
PROJECTION_HISTORY = {1: "the first kept projections"}
FAILED_RUN_VERSION = 1
FAILED_RUN_HISTORY = {1: "the first records of a workload that failed before any replicate"}
CALIBRATION_HISTORY = {1: "the first kept calibrations of a machine"}
