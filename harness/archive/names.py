"""How result sets are named: the ids runs give them, and a set found by its id in an archive
or by the path of its own folder."""

from __future__ import annotations

import os
import re
import secrets
import socket
from datetime import datetime, timezone
from pathlib import Path

from harness.archive.result_set import ResultSet
from harness.archive.store import MANIFEST, Archive
from harness.errors import UserError


def new_id(workload: str, now: datetime | None = None) -> str:
    """An id that sorts by creation time and says where it was made."""
    now = now or datetime.now(timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{this_host()}-{slug(workload)}-{secrets.token_hex(4)}"


def this_host() -> str:
    """This machine's short name, as ids and folder names carry it."""
    return slug(socket.gethostname().split(".")[0]) or "host"


def host_of(set_id: str, workload: str) -> str:
    """The host an id says its set was made on ("" when the id is not one gapbench gave)."""
    stamp, tail = len("20260101T000000Z-"), f"-{slug(workload)}-"
    end = set_id.rfind(tail)
    return set_id[stamp:end] if end > stamp and set_id[stamp - 1] == "-" else ""


def slug(text: str) -> str:
    # Ids become folder names on every filesystem and object store: keep them plain.
    return re.sub(r"[^A-Za-z0-9-]", "-", text)[:24]


def locate(ref: str, location: str | os.PathLike | None = None) -> tuple[Archive, str]:
    """The archive and id of a set named in the archive at ``location``, or by the path of its
    own folder (its archive is then the folder that folder lies in, which may be any folder:
    see ``sheltered``)."""
    folder = Path(ref)
    if (folder / MANIFEST).is_file():
        return Archive(folder.resolve().parent), folder.resolve().name
    archive = Archive(location)
    return archive, archive.resolve(ref)


def sheltered(
    path: str | os.PathLike, archive: Archive, set_id: str, location: str | os.PathLike | None
) -> str | None:
    """What a local ``path`` lies inside that no export may write to, or None: the archive at
    ``location`` (``default_location()`` when None), or the folder of the set ``set_id`` of
    ``archive`` (as ``locate`` gave them).

    A set named by its folder's path has its parent for an archive, but that parent may be any
    folder (a download, a home): only the set's own folder is kept from, not its neighbours."""
    try:
        named = Archive(location)
    except UserError:  # an archive that will not even open is no local folder to write into
        named = None
    if named is not None and named.holds(path):
        return f"the archive {named.location}"
    if archive.holds(path, set_id):
        return f"the result set folder {archive._path(set_id)}"
    return None


def load(ref: str, location: str | os.PathLike | None = None) -> ResultSet:
    """A set named in the archive at ``location``, or by the path of its own folder."""
    archive, set_id = locate(ref, location)
    return archive.load(set_id)
