"""The archive of result sets: Parquet tables first, `manifest.json` last as the commit marker.

The archive is any local path or fsspec URL. Object stores have no atomic rename, so a set is
complete exactly when its manifest exists and parses; table files carry unique names so a retried
write never clobbers a table another manifest points at. Sets are immutable once committed.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from harness.archive.checks import check_set
from harness.archive.checksums import check_files, checksum
from harness.archive.codec import DecodeError, from_dict, to_dict
from harness.archive.history import SCHEMA_VERSION, SEALED
from harness.archive.intervals import StoredIntervals, read_parquet
from harness.archive.location import open_location, why
from harness.archive.migrations import (
    Tables,
    check_failed_run,
    check_projection,
    migrate_intervals,
    migrate_tables,
    read_manifest,
)
from harness.archive.result_set import Listing, ResultSet
from harness.archive.schema import FailedRun, KeptProjection, Manifest
from harness.archive.tables import Spooled, copy_spooled, parquet_bytes
from harness.errors import UserError

MANIFEST = "manifest.json"
FAILED = "failed.json"  # in place of a manifest: the workload failed before any replicate
PROJECTIONS = "projections"  # a set's sub-folder of projections made from it
ENV_VAR = "GAPBENCH_RESULTS"


def default_location() -> str:
    return os.environ.get(ENV_VAR) or "results"


class Archive:
    """A folder of result sets at a local path or fsspec URL."""

    def __init__(self, location: str | os.PathLike | None = None) -> None:
        self.location = str(location if location is not None else default_location())
        self.fs, self.root, self.local = open_location(self.location)

    def exists(self) -> bool:
        """Whether the archive's folder exists (a set may have been written there)."""
        try:
            return bool(self.fs.isdir(self.root))
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise UserError(f"cannot read the archive {self.location!r}: {why(exc)}") from None

    def required(self) -> Archive:
        """This archive, which must exist: a verb over its sets has nothing to read otherwise."""
        if not self.exists():
            raise UserError(
                f"there is no archive at {self.location!r} (nothing was archived there)"
            )
        return self

    def ensure(self) -> Archive:
        """Make sure sets can be written here, before minutes are spent measuring one."""
        try:
            if self.fs.exists(self.root) and not self.fs.isdir(self.root):
                raise UserError(f"the archive {self.location!r} is not a folder")
            self.make_folder(self.root)
            probe = self._path(f".gapbench-write-{secrets.token_hex(4)}")
            self.fs.pipe_file(probe, b"")
            self.fs.rm_file(probe)
        except OSError as exc:
            raise UserError(f"cannot write the archive {self.location!r}: {why(exc)}") from None
        return self

    def holds(self, path: str | os.PathLike, set_id: str | None = None) -> bool:
        """Whether a local ``path`` lies inside this archive, or inside its set ``set_id`` when
        given (where no export may write)."""
        if not self.local:
            return False
        root = Path(self._path(set_id) if set_id else self.root).resolve()
        return Path(path).resolve().is_relative_to(root)

    def make_folder(self, path: str) -> None:
        """Make a folder, where folders exist. In an object store's bucket (a root with no
        leading slash) a key needs none, and making one would make the bucket itself when it
        seems absent: from a typo, or to credentials that may not list it."""
        if self.local or self.root.startswith("/"):
            self.fs.makedirs(path, exist_ok=True)

    def _path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def write(
        self,
        manifest: Manifest,
        tables: Mapping[str, pd.DataFrame | Spooled],
        attachments: dict[str, bytes] | None = None,
    ) -> str:
        """Write the tables (a spooled one a row group at a time) and attachments (a profiler
        trace), then the manifest; returns the set's id. Refuses to overwrite."""
        set_id = manifest.id
        folder = self._path(set_id)
        if self.fs.exists(self._path(set_id, MANIFEST)):
            raise UserError(f"result set {set_id} already exists in {self.location}")
        self.make_folder(folder)
        files = {}
        for name, table in tables.items():
            filename = f"{name}-{secrets.token_hex(4)}.parquet"
            if isinstance(table, Spooled):
                with self.fs.open(self._path(set_id, filename), "wb") as handle:
                    copy_spooled(table, handle)
            else:
                self.fs.pipe_file(self._path(set_id, filename), parquet_bytes(table))
            files[name] = filename
        attached = {}
        for name, body in (attachments or {}).items():
            stem, _, suffix = name.rpartition(".")
            filename = f"{stem}-{secrets.token_hex(4)}.{suffix}"
            self.fs.pipe_file(self._path(set_id, filename), body)
            attached[name] = filename
        # Read back as stored: what a later load hashes is what was written, byte for byte.
        written = (*files.values(), *attached.values())
        checksums = {f: checksum(self.fs, self._path(set_id, f)) for f in written}
        committed = replace(
            manifest,
            tables=files,
            attachments=attached,
            checksums=checksums,
            schema_version=SCHEMA_VERSION,
            migrated_from=None,  # written now, in the current version
        )
        body = json.dumps(to_dict(committed), indent=1, sort_keys=True, default=str).encode()
        self._commit(self._path(set_id, MANIFEST), body)
        return set_id

    def record_failure(self, failed: FailedRun) -> str:
        """Keep, in a set folder of its own, that a workload failed before any replicate
        finished and why: never a manifest, so it never loads as a set; returns its id."""
        if self.fs.exists(self._path(failed.id)):
            raise UserError(f"result set {failed.id} already exists in {self.location}")
        self.make_folder(self._path(failed.id))
        body = json.dumps(to_dict(failed), indent=1, sort_keys=True).encode()
        self._commit(self._path(failed.id, FAILED), body)
        return failed.id

    def failure(self, set_id: str) -> FailedRun | None:
        """The record kept by ``record_failure`` in this set folder, None when there is none."""
        path, what = self._path(set_id, FAILED), f"result set {set_id}: {FAILED}"
        if not self.fs.exists(path):
            return None
        try:
            body = json.loads(self.fs.cat_file(path))
            if not isinstance(body, dict):
                raise ValueError("not an object")
            return from_dict(FailedRun, check_failed_run(body, what))
        except (ValueError, OSError, DecodeError, RecursionError) as exc:
            raise UserError(f"{what} is unreadable: {exc}") from None

    def _commit(self, path: str, body: bytes) -> None:
        if self.local:
            # Locally a rename is atomic: a reader never sees half a manifest.
            tmp = f"{path}.{secrets.token_hex(4)}.tmp"
            self.fs.pipe_file(tmp, body)
            os.replace(tmp, path)
        else:
            self.fs.pipe_file(path, body)

    def ids(self) -> list[str]:
        """Every set folder, newest first (ids sort by time)."""
        try:
            if not self.fs.exists(self.root):
                return []
            if not self.fs.isdir(self.root):
                raise UserError(f"the archive {self.location!r} is not a folder")
            entries = self.fs.ls(self.root, detail=True)
        except OSError as exc:
            raise UserError(f"cannot read the archive {self.location!r}: {why(exc)}") from None
        names = [
            e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e["type"] == "directory"
        ]
        # A dotted folder is the archive's own (a machine's calibration), never a set.
        return sorted((n for n in names if not n.startswith(".")), reverse=True)

    def listings(self) -> list[Listing]:
        """Every set folder, newest first, with its manifest or why it has none."""
        listing = []
        for set_id in self.ids():
            try:
                listing.append(Listing(set_id, self._read_manifest(set_id)))
            except UserError as exc:
                problem = str(exc).removeprefix(f"result set {set_id}").lstrip(": ")
                failed = None
                with contextlib.suppress(UserError):  # its record is unreadable: said above
                    failed = self.failure(set_id)
                listing.append(Listing(set_id, None, problem, failed))
        return listing

    def resolve(self, ref: str) -> str:
        """A set id from an exact id, a unique prefix, or ``latest`` (the newest committed)."""
        if not ref.strip():
            raise UserError("a result set is named by its id, a prefix of it, or 'latest'")
        ids = self.ids() or self.required().ids()
        if ref == "latest":
            complete = [i for i in ids if self.fs.exists(self._path(i, MANIFEST))]
            if not complete:
                raise UserError(f"no result sets in {self.location}")
            return complete[0]
        if ref in ids:
            return ref
        matches = [i for i in ids if i.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise UserError(f"{ref!r} matches {len(matches)} result sets; give more of the id")
        raise UserError(f"no result set {ref!r} in {self.location}")

    def remove(self, set_id: str) -> None:
        """Remove a set, deliberately (nothing else changes a set): its manifest first, so a
        removal cut short leaves a folder that never loads as a set, then the rest."""
        folder = self._path(set_id)
        try:
            manifest = self._path(set_id, MANIFEST)
            if self.fs.isfile(manifest):
                self.fs.rm_file(manifest)
            self.fs.rm(folder, recursive=True)
        except OSError as exc:
            raise UserError(f"cannot remove result set {set_id}: {why(exc)}") from None

    def load(self, ref: str) -> ResultSet:
        """Load a committed set as DataFrames; an incomplete or newer set is refused."""
        set_id = self.resolve(ref)
        manifest = self._read_manifest(set_id)
        written = manifest.migrated_from or SCHEMA_VERSION
        # From version 7 every file has its checksum: one without was tampered with.
        named = (*manifest.tables.values(), *manifest.attachments.values())
        required = named if written >= SEALED else ()
        what = f"result set {set_id}"
        check_files(self.fs, self._path(set_id), manifest.checksums, what, required)
        tables: Tables = {}
        intervals = None
        for name, filename in manifest.tables.items():
            path = self._path(set_id, filename)
            where = f"result set {set_id}: table {filename}"
            try:
                if name == "intervals":  # read in parts, as readers ask
                    intervals = StoredIntervals(
                        functools.partial(self.fs.open, path, "rb"),
                        functools.partial(migrate_intervals, written=written),
                        where,
                    )
                else:
                    with self.fs.open(path, "rb") as handle:
                        tables[name] = read_parquet(handle)
            except FileNotFoundError:
                raise UserError(f"{where} is missing") from None
            except UserError:
                raise
            except Exception as exc:
                raise UserError(f"{where} is unreadable") from exc
        tables = migrate_tables(tables, written)
        check_set(set_id, manifest, tables, intervals)
        assert intervals is not None  # check_set refuses a set without one
        return ResultSet(
            manifest,
            intervals,
            tables["requests"],
            tables.get("telemetry"),
            tables.get("queries"),
            tables.get("operators"),
        )

    def add_projection(self, set_id: str, body: dict[str, Any]) -> str:
        """Keep a projection beside its set, never overwritten: one file per projection, named
        by when it was made, so a pre-purchase projection can be checked against a later run."""
        set_id = self.resolve(set_id)
        self._read_manifest(set_id)  # only beside a committed set
        try:  # what is kept must read back: checked by the reader's own codec
            from_dict(KeptProjection, check_projection(body, f"a projection of {set_id}"))
        except DecodeError as exc:
            raise UserError(f"a projection of {set_id} would not read back: {exc}") from None
        now = datetime.now(timezone.utc)
        name = f"{now:%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(4)}.json"
        path = self._path(set_id, PROJECTIONS, name)
        payload = json.dumps(body, indent=1, sort_keys=True, default=str).encode()
        try:
            self.make_folder(self._path(set_id, PROJECTIONS))
            self._commit(path, payload)
        except OSError as exc:
            unkept = f"the projection could not be kept beside {set_id}: {why(exc)}"
            raise UserError(unkept) from None
        return name

    def projections(self, set_id: str, problems: list[str] | None = None) -> list[KeptProjection]:
        """The projections kept beside a set, oldest first. One that cannot be read is left
        out, and said in ``problems`` when given (else it is a UserError): a broken extra
        must not keep a set from being compared."""
        folder = self._path(self.resolve(set_id), PROJECTIONS)
        kept = []
        for name in self.projection_files(set_id):
            what = f"result set {set_id}: projection {name}"
            try:
                kept.append(self._projection(f"{folder}/{name}", what))
            except UserError as exc:
                if problems is None:
                    raise
                problems.append(str(exc))
        return kept

    def projection_files(self, set_id: str) -> list[str]:
        """The names of the projections kept beside a set, oldest first."""
        folder = self._path(set_id, PROJECTIONS)
        if not self.fs.exists(folder):
            return []
        listed = (e.rstrip("/").rsplit("/", 1)[-1] for e in self.fs.ls(folder, detail=False))
        return sorted(n for n in listed if n.endswith(".json"))  # not a save's leftover .tmp

    def _projection(self, path: str, what: str) -> KeptProjection:
        try:
            body = json.loads(self.fs.cat_file(path))
        except (ValueError, OSError, RecursionError) as exc:
            raise UserError(f"{what} is unreadable: {exc}") from None
        if not isinstance(body, dict):
            raise UserError(f"{what} is corrupt: not an object")
        try:
            return from_dict(KeptProjection, check_projection(body, what))
        except DecodeError as exc:
            raise UserError(f"{what} is corrupt: {exc}") from None

    def verify(self, ref: str) -> str:
        """What is wrong with a set, "" when nothing is: its manifest reads, every file it
        names is there with the checksum it recorded, every table reads whole, and so does
        every projection kept beside it."""
        set_id = self.resolve(ref)
        try:
            if not self.fs.exists(self._path(set_id, MANIFEST)) and self.failure(set_id):
                return ""  # an intact record of a workload that failed: nothing is wrong
            result = self.load(set_id)
            len(result.intervals)  # read whole: a damaged row group shows only when read
            problems: list[str] = []
            self.projections(set_id, problems)  # left out where read, but damage all the same
        except UserError as exc:
            return str(exc)
        return problems[0] if problems else ""

    def manifest(self, ref: str) -> Manifest:
        """A committed set's manifest alone, read and checked (its tables are not)."""
        return self._read_manifest(self.resolve(ref))

    def folder(self, set_id: str) -> str:
        """Where the files of set ``set_id`` lie on this archive's filesystem, ``fs``."""
        return self._path(set_id)

    def attachment(self, set_id: str, name: str) -> bytes:
        """An attachment of a committed set (e.g. ``profile.json``), by its name."""
        filename = self._read_manifest(set_id).attachments.get(name)
        if filename is None:
            raise UserError(f"result set {set_id} has no {name}")
        return self.fs.cat_file(self._path(set_id, filename))

    def _read_manifest(self, set_id: str) -> Manifest:
        path = self._path(set_id, MANIFEST)
        if not self.fs.exists(path):
            failed = self.failure(set_id)
            if failed is not None:
                reason = f"its workload failed before any replicate finished: {failed.reason}"
                raise UserError(f"result set {set_id}: {reason}")
            raise UserError(
                f"result set {set_id} has no manifest: its run was killed before it finished"
            )
        what = f"result set {set_id}"
        try:
            raw = self.fs.cat_file(path)
        except OSError as exc:  # a folder in its place, a permission
            raise UserError(f"{what}: manifest.json is unreadable: {why(exc)}") from None
        return read_manifest(raw, what)
