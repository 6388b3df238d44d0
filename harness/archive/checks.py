"""What a loaded set must hold together: ids, tables and their columns, replicates with facts,
counts a machine can have, one stage DAG, intervals only of its stages."""

from __future__ import annotations

import math

import pandas as pd

from harness.archive.history import SCHEMA_VERSION, SEALED
from harness.archive.intervals import Intervals
from harness.archive.migrations import Tables
from harness.archive.schema import Manifest
from harness.archive.tables import problem
from harness.errors import UserError
from harness.workload import topological_order


def check_set(set_id: str, manifest: Manifest, tables: Tables, intervals: Intervals | None) -> None:
    """Refuse a set whose parts do not fit together: a folder renamed from its id, work edited
    away from its digest, a table missing or lacking columns, a replicate with no facts, a
    stage DAG that is not one, intervals of stages it does not have."""
    where = f"result set {set_id}"
    if manifest.id != set_id:
        raise UserError(
            f"folder {set_id} holds result set {manifest.id}: give the folder its id back"
        )
    corrupt = f"{where}: manifest.json is corrupt"
    written = manifest.migrated_from or SCHEMA_VERSION
    # compare trusts the digest: from version 7 on it must be the stored fields'
    if written >= SEALED and not manifest.work.digest_holds:
        raise UserError(
            f"{corrupt}: config.work does not match its work_sha256 (edited since it was written)"
        )
    found = {name: list(frame.columns) for name, frame in tables.items()}
    if intervals is not None:
        found["intervals"] = intervals.columns
    for name in ("intervals", "requests"):
        if name not in found:
            raise UserError(f"{corrupt}: tables: no {name!r}")
        if wrong := problem(name, found[name]):
            raise UserError(f"{where}: {wrong}: its tables do not match its manifest")
    assert intervals is not None
    ok = tables["requests"]["ok"]
    if len(ok) and not pd.api.types.is_bool_dtype(ok):  # an empty table has no dtype to say
        raise UserError(f"{where}: table requests: its 'ok' column is not true/false")
    # Two columns of the intervals, and distinct values first: a list of every row's value
    # costs more than the table.
    keys = intervals.frame(["replicate", "stage"])
    known = {r.replicate for r in manifest.replicates}
    stored = set(tables["requests"]["replicate"].unique().tolist())
    stored |= set(keys["replicate"].unique().tolist())
    if stored - known:
        missing = ", ".join(str(r) for r in sorted(stored - known))
        raise UserError(f"{corrupt}: no facts of replicate {missing}")
    _check_counts(corrupt, manifest)
    if not manifest.stages:
        raise UserError(f"{corrupt}: stages: none")
    try:
        topological_order(manifest.stages)
    except UserError as exc:
        raise UserError(f"{corrupt}: stages: {exc}") from None
    strangers = set(keys["stage"].unique().tolist()) - {s.name for s in manifest.stages}
    strangers.discard("")  # the request interval, the clock anchors
    if strangers:
        raise UserError(f"{corrupt}: intervals of a stage it does not have: {min(strangers)!r}")


def _check_counts(corrupt: str, manifest: Manifest) -> None:
    """Refuse cores and threads a machine cannot have: the replay divides by them."""
    counts: list[tuple[str, float | None]] = [
        ("fingerprint.usable_cores", manifest.fingerprint.usable_cores),
        ("config.execution.threads", manifest.execution.threads),
        ("config.execution.interop_threads", manifest.execution.interop_threads),
    ]
    for r in manifest.replicates:
        where = f"replicates[{r.replicate}]"
        counts += [(f"{where}.threads", r.threads), (f"{where}.interop_threads", r.interop_threads)]
        counts += [(f"{where}.stage_threads.{k}", v) for k, v in r.stage_threads.items()]
    for name, value in counts:
        if value is not None and not (math.isfinite(value) and value > 0):
            raise UserError(f"{corrupt}: {name}: {value} is not a positive count")
