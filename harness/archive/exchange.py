"""Result sets shared as one file: ``gapbench export`` writes it, ``gapbench import`` reads it
back into an archive.

The file is a zip: ``index.json`` (what it is, its integer ``format_version``, the sets, and the
sha256 of every other member), and each set's folder under ``sets/<id>/`` as an archive keeps it
(its manifest, the tables and attachments the manifest names, the projections kept beside it; or
a failure record). Zip rather than tar: its directory is at its end, so a file cut short does not
open at all (a tar cut at a member's edge reads as a shorter, whole one); its headers carry no
owner's user and group names, which a tar's do; a member is read by name without reading the
others; and every platform opens one. A member's CRC guards against accidents only: the index's
sha256 are what an import checks, and then it reads each set back and verifies it as
``gapbench verify`` does, before anything is written to the archive.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import __version__
from harness.archive.anonymize import Anonymizer, anonymize_set
from harness.archive.checksums import checksum, checksum_of
from harness.archive.keys import anonymizing_key
from harness.archive.location import publish, why
from harness.archive.store import FAILED, MANIFEST, PROJECTIONS, Archive
from harness.errors import UserError

FORMAT = "gapbench result sets"
FORMAT_VERSION = 1
FORMAT_HISTORY = {1: "the first exported files: an index of sha256, and each set's folder"}
INDEX = "index.json"
SETS = "sets"
MAX_INDEX_BYTES = 64 << 20  # an index lists files: a bigger one is no gapbench's
_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"  # never a dotted name, a '..', or a folder of its own
_MEMBER = re.compile(rf"{SETS}/({_NAME})/((?:{PROJECTIONS}/)?{_NAME})")
PathLike = str | os.PathLike


@dataclass(frozen=True)
class Exported:
    """What ``export_sets`` wrote: each set's id in the archive beside its id in the file."""

    path: str
    ids: tuple[tuple[str, str], ...]
    anonymized: bool
    size_bytes: int


@dataclass(frozen=True)
class Imported:
    """What ``import_sets`` did with the sets of a file."""

    imported: tuple[str, ...]
    identical: tuple[str, ...]  # archived already, byte for byte: left as they were
    projections: int  # kept projections added beside sets archived already


def export_sets(
    archive: Archive,
    ids: Sequence[str],
    output: PathLike,
    *,
    anonymize: bool = False,
    force: bool = False,
) -> Exported:
    """Write the sets ``ids`` of ``archive``, with their projections, into one file at
    ``output``; each is verified as it will be read back (anonymized first, if asked)."""
    target = Path(output)
    if archive.holds(target):  # --force or not: an archive is not scratch
        raise UserError(f"{target} is inside the archive {archive.location}: write elsewhere")
    _writable(target, force)
    chosen = list(dict.fromkeys(ids))
    with tempfile.TemporaryDirectory(prefix="gapbench-export-") as scratch:
        fetched, staging = Path(scratch, "fetched"), Path(scratch, SETS)
        staging.mkdir()
        files, workloads = {}, {}
        for set_id in chosen:
            if problem := archive.verify(set_id):  # a damaged set is never shipped, nor read
                raise UserError(f"{problem}: nothing exported")
            files[set_id], workloads[set_id] = _names(archive, set_id)
            _fetch(archive, set_id, files[set_id], fetched / set_id)
        anonymizer = Anonymizer(workloads, anonymizing_key(archive)) if anonymize else None
        renamed = {i: anonymizer.new_id(i) if anonymizer else i for i in chosen}
        for set_id, new in renamed.items():
            (fetched / set_id).rename(staging / new)
        if anonymizer is not None:
            # Read every set once for the users and hosts it names, then rewrite: a name
            # learnt from the last set is rewritten in the first too.
            for learning in (True, False):
                anonymizer.learning = learning
                for set_id, new in renamed.items():
                    anonymize_set(staging / new, files[set_id], anonymizer)
        staged = Archive(staging)
        for new in renamed.values():
            if problem := staged.verify(new):
                raise UserError(f"{problem}: nothing exported")
        members = {
            f"{SETS}/{new}/{name}": staging / new / name
            for set_id, new in renamed.items()
            for name in files[set_id]
        }
        _pack(members, [*renamed.values()], target, anonymize, force)
    return Exported(str(target), tuple(renamed.items()), anonymize, target.stat().st_size)


def import_sets(archive: Archive, file: PathLike) -> Imported:
    """Read the sets of an exported file into ``archive``: every member's sha256 and every set
    (its own checksums, tables and projections) checked before anything is written; a set
    archived already is left as it is when identical, refused when not."""
    source, what = Path(file), str(file)
    if not source.is_file():
        raise UserError(f"{what} is a folder, not a file" if source.is_dir() else f"no file {what}")
    with tempfile.TemporaryDirectory(prefix="gapbench-import-") as scratch:
        staging = Path(scratch)
        ids = _unpack(source, staging, what)
        staged = Archive(staging)
        plans: dict[str, tuple[bool, list[str]]] = {}
        for set_id in ids:
            if problem := staged.verify(set_id):
                raise UserError(f"{what}: {problem}: nothing imported")
            names, _ = _names(staged, set_id)
            folder = staging / set_id
            held = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
            if stray := sorted(held - set(names)):
                raise UserError(f"{what}: result set {set_id} holds {stray[0]}, never named")
            plans[set_id] = _plan(archive, folder, set_id, names, what)
        if any(writes for _, writes in plans.values()):
            archive.ensure()
        done: list[str] = []
        for set_id, (_, writes) in plans.items():
            try:
                deposit(archive, set_id, staging / set_id, writes)
            except UserError as exc:
                so_far = f"; imported before it: {', '.join(done)}" if done else ""
                raise UserError(f"{exc}{so_far}") from None
            done.append(set_id)
    fresh = tuple(i for i, (new, _) in plans.items() if new)
    same = tuple(i for i, (new, _) in plans.items() if not new)
    added = sum(len(writes) for new, writes in plans.values() if not new)
    return Imported(fresh, same, added)


def _names(archive: Archive, set_id: str) -> tuple[list[str], str]:
    """The files that make up a set, its commit marker last, and its workload's name: the
    manifest with the tables, attachments and projections beside it, or a failure record."""
    root = archive.folder(set_id)
    failed = None if archive.fs.exists(f"{root}/{MANIFEST}") else archive.failure(set_id)
    if failed is not None:
        if failed.id != set_id:
            raise UserError(f"folder {set_id} holds the failure record of {failed.id}")
        return [FAILED], failed.workload
    manifest = archive.manifest(set_id)  # or says why there is none
    kept = [f"{PROJECTIONS}/{n}" for n in archive.projection_files(set_id)]
    own = [*manifest.tables.values(), *manifest.attachments.values()]
    for name in own + kept:
        if not re.fullmatch(f"(?:{PROJECTIONS}/)?{_NAME}", name):
            raise UserError(f"result set {set_id}: {name!r} is no name a set's file has")
    return [*own, *kept, MANIFEST], manifest.workload


def _fetch(archive: Archive, set_id: str, names: Sequence[str], folder: Path) -> None:
    root = archive.folder(set_id)
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        try:
            archive.fs.get_file(f"{root}/{name}", str(folder / name))
        except FileNotFoundError:
            raise UserError(f"result set {set_id}: {name} is missing") from None
        except OSError as exc:
            raise UserError(f"result set {set_id}: {name} is unreadable: {why(exc)}") from None


def _writable(target: Path, force: bool) -> None:
    if target.is_dir():
        raise UserError(f"{target} is a folder: name a file to write")
    if target.exists() and not force:
        raise UserError(f"{target} exists: name another file (or --force to replace it)")
    if not target.parent.is_dir():
        raise UserError(f"cannot write {target}: there is no folder {target.parent}")


def _pack(
    members: dict[str, Path], ids: list[str], target: Path, anonymized: bool, force: bool
) -> None:
    """The zip, written beside ``target`` and renamed onto it whole: a file half written, or
    one that was there, is never left in its place."""
    index = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "gapbench_version": __version__,
        "anonymized": anonymized,
        "sets": ids,
        "members": {name: checksum_of(path) for name, path in members.items()},
    }
    draft = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        with zipfile.ZipFile(draft, "w") as bundle:
            bundle.writestr(INDEX, json.dumps(index, indent=1), zipfile.ZIP_DEFLATED)
            for name, path in members.items():  # Parquet is compressed already
                packed = zipfile.ZIP_DEFLATED if name.endswith(".json") else zipfile.ZIP_STORED
                bundle.write(path, name, packed)
        _writable(target, force)  # again: it may have appeared meanwhile
        os.replace(draft, target)
    except OSError as exc:
        raise UserError(f"cannot write {target}: {why(exc)}") from None
    finally:
        draft.unlink(missing_ok=True)


def _index(bundle: zipfile.ZipFile, what: str) -> dict[str, Any]:
    """The index, its format and version checked first: a newer one is refused unread."""
    try:
        info = bundle.getinfo(INDEX)
    except KeyError:
        raise UserError(f"{what} is not a gapbench export: it holds no {INDEX}") from None
    if info.file_size > MAX_INDEX_BYTES:
        raise UserError(f"{what} is not a gapbench export: its {INDEX} is too big")
    try:
        index = json.loads(bundle.read(INDEX))
    except (ValueError, RecursionError):
        raise UserError(f"{what} is damaged: its {INDEX} is not JSON") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise UserError(f"{what} is not a gapbench export: its {INDEX} is another program's")
    version = index.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise UserError(f"{what} has an unknown format_version {version!r}")
    if version > FORMAT_VERSION:
        raise UserError(
            f"{what} has format_version {version}, newer than this gapbench reads "
            f"({FORMAT_VERSION}): upgrade gapbench to import it"
        )
    sets, members = index.get("sets"), index.get("members")
    if not (
        isinstance(sets, list)
        and all(isinstance(s, str) and re.fullmatch(_NAME, s) and s != "latest" for s in sets)
        and len(set(sets)) == len(sets)
        and isinstance(members, dict)
        and all(isinstance(v, str) for v in members.values())
    ):
        raise UserError(f"{what} is damaged: its {INDEX} does not list its sets and members")
    return index


def _unpack(source: Path, staging: Path, what: str) -> list[str]:
    """Every member into ``staging/<id>/``, each checked against the index's sha256; the ids."""
    try:
        with zipfile.ZipFile(source) as bundle:
            index = _index(bundle, what)
            unpacked = sum(info.file_size for info in bundle.infolist())
            room = shutil.disk_usage(staging).free
            if unpacked > room:  # refused before a byte is written: a bomb fills nothing
                raise UserError(
                    f"{what} unpacks to {unpacked / 2**30:.1f} GiB, more than the "
                    f"{room / 2**30:.1f} GiB free for it here"
                )
            ids, members = index["sets"], index["members"]
            names = bundle.namelist()
            found = set(names) - {INDEX}
            if len(names) != len(set(names)) or found != set(members):
                odd = sorted(found ^ set(members)) or ["a member held twice"]
                raise UserError(f"{what} is damaged: its members are not its index's ({odd[0]})")
            for name, expected in members.items():
                parsed = _MEMBER.fullmatch(name)
                if parsed is None or parsed.group(1) not in ids:
                    raise UserError(f"{what} is damaged: {name!r} is no file of a set it holds")
                target = staging / parsed.group(1) / parsed.group(2)
                target.parent.mkdir(parents=True, exist_ok=True)
                digest = hashlib.sha256()
                with bundle.open(name) as member, open(target, "wb") as copy:
                    while chunk := member.read(1 << 20):
                        digest.update(chunk)
                        copy.write(chunk)
                if f"sha256:{digest.hexdigest()}" != expected:
                    raise UserError(
                        f"{what} is damaged: {name} is not what its index recorded "
                        "(changed or cut short since it was written)"
                    )
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise UserError(
            f"{what} is not a whole gapbench export (cut short, damaged, or another kind of "
            f"file): {exc}"
        ) from None
    except OSError as exc:
        raise UserError(f"cannot read {what}: {why(exc)}") from None
    for set_id in ids:
        if not any((staging / set_id / m).is_file() for m in (MANIFEST, FAILED)):
            raise UserError(f"{what} is damaged: result set {set_id} has no manifest in it")
    return list(ids)


def _plan(
    archive: Archive, folder: Path, set_id: str, names: list[str], what: str
) -> tuple[bool, list[str]]:
    """Whether the set is new here, and which of its files to write: every one (its marker
    last) for a new set; for one archived already, byte for byte, the projections it lacks."""
    root = archive.folder(set_id)
    try:
        if not archive.fs.exists(root):
            return True, names
        there = {n for n in names if archive.fs.isfile(f"{root}/{n}")}
        if not any(archive.fs.isfile(f"{root}/{m}") for m in (MANIFEST, FAILED)):
            raise UserError(
                f"result set {set_id} is in {archive.location} without its manifest (a run or "
                f"an import cut short): remove it (gapbench rm {set_id}), then import again"
            )
        differ = [
            n for n in there if checksum(archive.fs, f"{root}/{n}") != checksum_of(folder / n)
        ]
    except OSError as exc:
        raise UserError(f"cannot read the archive {archive.location!r}: {why(exc)}") from None
    own = [n for n in names if not n.startswith(f"{PROJECTIONS}/")]
    if differ or not set(own) <= there:
        raise UserError(
            f"result set {set_id} is in {archive.location} already, and differs from the one "
            f"in {what}: nothing imported"
        )
    return False, [n for n in names if n not in there]


def deposit(archive: Archive, set_id: str, source: Path, names: Sequence[str]) -> None:
    """Copy files of a set from the local folder ``source`` into its folder in ``archive``, in
    the order given, never over one that exists: the last (its manifest, or a failure record)
    is its commit marker, so a copy cut short never loads as a set."""
    root, name = archive.folder(set_id), ""
    try:
        for name in names:
            target = f"{root}/{name}"
            if archive.fs.exists(target):
                raise UserError(f"result set {set_id}: {name} already exists in {archive.location}")
            archive.make_folder(target.rsplit("/", 1)[0])
            if not archive.local:
                archive.fs.put_file(str(source / name), target)
                continue
            draft = f"{target}.{secrets.token_hex(4)}.tmp"  # never half a file under its name
            try:
                archive.fs.put_file(str(source / name), draft)
                publish(draft, target)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(draft)
    except FileExistsError:
        raise UserError(f"result set {set_id}: {name} appeared in {archive.location}") from None
    except OSError as exc:
        unwritten = f"cannot write result set {set_id} into {archive.location}: {why(exc)}"
        raise UserError(unwritten) from None
