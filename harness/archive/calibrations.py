"""A machine's calibration kept in the archive, one file per machine, reused until refreshed.

They live in the archive's ``.calibration`` folder (set listings skip dotted folders), named by
``machine_key``, so machines sharing an archive each keep their own and a set run later on the
same machine finds the numbers its roofline is read against.
"""

from __future__ import annotations

import json

from harness.archive.codec import DecodeError, from_dict, to_dict
from harness.archive.location import why
from harness.archive.migrations import check_calibration
from harness.archive.store import Archive
from harness.errors import UserError
from harness.machine.calibration import Calibration

FOLDER = ".calibration"


def location_of(archive: Archive, machine: str) -> str:
    """Where the calibration of ``machine`` is kept."""
    return archive._path(FOLDER, f"{machine}.json")


def kept(archive: Archive, machine: str) -> Calibration | None:
    """The calibration kept for ``machine``, or None; a damaged one is a UserError saying how to
    measure it again."""
    path = location_of(archive, machine)
    what = f"the calibration kept at {path}"
    try:
        if not archive.fs.exists(path):
            return None
        body = json.loads(archive.fs.cat_file(path))
    except OSError as exc:
        raise UserError(f"cannot read {what}: {why(exc)}") from None
    except (ValueError, RecursionError) as exc:
        raise UserError(f"{what} is unreadable ({exc}): run gapbench calibrate --refresh") from None
    if not isinstance(body, dict):
        raise UserError(f"{what} is corrupt: not an object; run gapbench calibrate --refresh")
    try:
        return from_dict(Calibration, check_calibration(body, what))
    except DecodeError as exc:
        raise UserError(f"{what} is corrupt: {exc}; run gapbench calibrate --refresh") from None


def keep(archive: Archive, calibration: Calibration) -> str:
    """Keep ``calibration`` for its machine, replacing an older one; where it was written."""
    archive.ensure()
    path = location_of(archive, calibration.machine)
    body = json.dumps(to_dict(calibration), indent=1).encode()
    try:
        archive.make_folder(archive._path(FOLDER))
        archive._commit(path, body)
    except OSError as exc:
        raise UserError(f"the calibration could not be kept at {path}: {why(exc)}") from None
    return path
