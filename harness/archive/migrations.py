"""How older stored files become current ones: one step per version bump (asv's update_to_N).

A result set's manifest and tables migrate one version at a time; the fingerprint inside it and
each kept projection carry versions of their own. A file newer than this gapbench is refused.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from harness.archive import history, schema
from harness.archive.codec import DecodeError, deeper_than, from_dict
from harness.errors import UserError
from harness.machine import fingerprint

Tables = dict[str, pd.DataFrame]
Body = dict[str, Any]


@dataclass(frozen=True)
class Migration:
    """How a set of schema version N becomes version N + 1, manifest and tables."""

    manifest: Callable[[Body], Body]
    tables: Callable[[Tables], Tables]


def _same(body: Body) -> Body:
    return body


def _same_tables(tables: Tables) -> Tables:
    return tables


def _cpu_ns(tables: Tables) -> Tables:
    # Version 2 reads thread CPU time at stage and branch edges; version 1 never did.
    if "intervals" not in tables:  # read apart from the others (harness.archive.intervals)
        return tables
    return {**tables, "intervals": tables["intervals"].assign(cpu_ns=-1)}


def _drop_invariants(body: Body) -> Body:
    # The verdict was computed at write time and frozen in; it is now computed when reading.
    return {k: v for k, v in body.items() if k != "invariants"}


_OWN_FACTS = {f.name for f in dataclasses.fields(schema.ReplicateFacts)}


# What version 2 gained over its life without a version of its own, and what a set written
# before each arrived meant by its absence.
_V2_FACTS: Body = {
    "agreement": None,
    "execution": {},
    "stage_threads": {},
    "probe_cost_ns": None,
    "telemetry_cost": None,
    "telemetry_notes": [],
}
_V2_EXECUTION: Body = {
    "backend_config": {},
    "virtual_speedup": None,
    "replicates_in": "separate processes",
}


def _v2_settled(body: Body) -> Body:
    # What a workload's setup_facts() said was mixed in among gapbench's own facts; a reference
    # backend's agreement with itself was {} rather than none; and keys version 2 gained over
    # its life are absent from the sets written before them.
    replicates = []
    for facts in body.get("replicates") or []:
        if not isinstance(facts, dict):
            replicates.append(facts)
            continue
        own = {**_V2_FACTS, **{k: v for k, v in facts.items() if k in _OWN_FACTS}}
        setup = {k: v for k, v in facts.items() if k not in _OWN_FACTS}
        own["agreement"] = own["agreement"] or None
        replicates.append({**own, "setup_facts": setup})
    # Early onnxruntime sets kept their agreement with each replicate only.
    first = replicates[0] if replicates and isinstance(replicates[0], dict) else {}
    agreement = body.get("agreement") or first.get("agreement")
    body = {**body, "replicates": replicates, "agreement": agreement}
    body.setdefault("attachments", {})
    profile = body.get("profile")
    if isinstance(profile, dict):
        # Only torch.profiler profiled before a backend could bring its own, and a check's
        # layer is its stage's.
        layers = {
            s.get("name"): s.get("layer") for s in body.get("stages") or [] if isinstance(s, dict)
        }
        checks = [
            {"layer": layers.get(c.get("stage"), ""), **c} if isinstance(c, dict) else c
            for c in profile.get("checks") or []
        ]
        body["profile"] = {"tool": "torch.profiler", **profile, "checks": checks}
    config = body.get("config")
    if isinstance(config, dict) and isinstance(config.get("execution"), dict):
        body["config"] = {**config, "execution": {**_V2_EXECUTION, **config["execution"]}}
    return body


MIGRATIONS: dict[int, Migration] = {
    1: Migration(_same, _cpu_ns),
    2: Migration(_drop_invariants, _same_tables),
    3: Migration(_v2_settled, _same_tables),
    4: Migration(_same, _same_tables),  # new keys only, each with a default
    5: Migration(_same, _same_tables),  # new keys only, each with a default
    6: Migration(_same, _same_tables),  # checksums required from 7 on: checked as it loads
    7: Migration(_same, _same_tables),  # new keys only, each with a default
    8: Migration(_same, _same_tables),  # a new table and a new key, each optional
}


def _version(body: Body, current: int, what: str) -> int:
    version = body.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise UserError(f"{what} has no integer schema_version")
    if version > current:
        raise UserError(
            f"{what} has schema_version {version}, newer than this gapbench understands "
            f"({current}): upgrade gapbench to read it"
        )
    if version < 1:
        raise UserError(f"{what} has an unknown schema_version {version}")
    return version


def migrate_manifest(body: Body, what: str) -> Body:
    """Bring an older manifest (and the fingerprint in it) to the current schema; refuse one
    from a newer gapbench. ``what`` names the file in errors."""
    version = _version(body, history.SCHEMA_VERSION, what)
    # Only this reading says where a set came from: a stored claim would re-run migrations.
    body = {k: v for k, v in body.items() if k != "migrated_from"}
    if version < history.SCHEMA_VERSION:
        body["migrated_from"] = version
    while version < history.SCHEMA_VERSION:
        body = MIGRATIONS[version].manifest(body)
        version += 1
        body["schema_version"] = version
    if isinstance(body.get("fingerprint"), dict):
        body["fingerprint"] = migrate_fingerprint(body["fingerprint"], f"{what}: fingerprint")
    return body


def migrate_tables(tables: Tables, written: int) -> Tables:
    """The tables of a set written with schema version ``written``, brought up to date."""
    for version in range(written, history.SCHEMA_VERSION):
        tables = MIGRATIONS[version].tables(tables)
    return tables


def _usable_cores(body: Body) -> Body:
    # Version 1 kept the affinity and quota limits only in its checks' display text ("2 of 4
    # CPUs", "1.5 CPUs"): read back once, here, into the one figure.
    count = (body.get("host") or {}).get("host_processor_vcpu_count")
    limits = [float(count)] if isinstance(count, int | float) and count > 0 else []
    for check in body.get("environment") or []:
        if not isinstance(check, dict) or check.get("name") not in ("cpu_affinity", "cpu_quota"):
            continue
        number = re.match(r"([0-9.]+)(?: of \w+)? CPUs$", str(check.get("value", "")))
        if number:
            limits.append(float(number.group(1)))
    return {**body, "usable_cores": min(limits) if limits else None}


FINGERPRINT_MIGRATIONS: dict[int, Callable[[Body], Body]] = {1: _usable_cores}


def migrate_fingerprint(body: Body, what: str = "the fingerprint") -> Body:
    """Bring an older fingerprint to the current version; refuse a newer one."""
    version = _version(body, fingerprint.SCHEMA_VERSION, what)
    while version < fingerprint.SCHEMA_VERSION:
        body = {**FINGERPRINT_MIGRATIONS[version](body), "schema_version": version + 1}
        version += 1
    return body


def check_projection(body: Body, what: str) -> Body:
    """A kept projection of a version this gapbench reads (there is one so far)."""
    _version(body, history.PROJECTION_VERSION, what)
    return body


def check_failed_run(body: Body, what: str) -> Body:
    """A failure record of a version this gapbench reads (there is one so far)."""
    _version(body, history.FAILED_RUN_VERSION, what)
    return body


def check_calibration(body: Body, what: str) -> Body:
    """A kept calibration of a version this gapbench reads (there is one so far)."""
    _version(body, history.CALIBRATION_VERSION, what)
    return body


def migrate_intervals(frame: pd.DataFrame, written: int) -> pd.DataFrame:
    """An intervals table written by version ``written``, as the current version reads it."""
    return migrate_tables({"intervals": frame}, written)["intervals"]


MAX_NESTING = 64  # levels of a manifest, where gapbench writes fewer than ten


def read_manifest(raw: bytes, what: str) -> schema.Manifest:
    """A ``manifest.json``'s bytes as the current version's typed manifest, migrated; any fault
    in it is one UserError naming ``what``."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # not JSON, or nested past Python's stack
        raise UserError(f"{what}: manifest.json is corrupt") from exc
    if not isinstance(body, dict):
        raise UserError(f"{what}: manifest.json is corrupt: not an object")
    if deeper_than(body, MAX_NESTING):
        raise UserError(f"{what}: manifest.json is corrupt: nested past {MAX_NESTING} levels")
    try:
        body = migrate_manifest(body, what)
    except (TypeError, AttributeError, KeyError, ValueError) as exc:
        # An older manifest whose keys hold what no gapbench wrote: not worth a traceback.
        raise UserError(f"{what}: manifest.json is corrupt: {type(exc).__name__}") from None
    try:
        return from_dict(schema.Manifest, body)
    except DecodeError as exc:
        raise UserError(f"{what}: manifest.json is corrupt: {exc}") from None
