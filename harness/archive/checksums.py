"""A sha256 per file of a set, kept in its manifest: a file changed or cut short since it was
written is named when the set loads, not met later as a wrong number or a Parquet error."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection, Mapping

from fsspec.implementations.local import LocalFileSystem

from harness.archive.location import FileSystem, why
from harness.errors import UserError


def checksum(fs: FileSystem, path: str) -> str:
    """``sha256:<hex>`` of the file at ``path``, read a megabyte at a time."""
    digest = hashlib.sha256()
    with fs.open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def checksum_of(path: str | os.PathLike[str]) -> str:
    """``sha256:<hex>`` of a local file, as a manifest records it."""
    return checksum(LocalFileSystem(), str(path))


def check_files(
    fs: FileSystem,
    folder: str,
    checksums: Mapping[str, str],
    what: str,
    required: Collection[str] = (),
) -> None:
    """Every file named in ``checksums`` is in ``folder``, unchanged, and each of ``required``
    has a checksum: a UserError naming the first that is missing, unreadable or damaged
    (tampered with, or truncated), or has none."""
    unsealed = sorted(set(required) - set(checksums))
    if unsealed:
        raise UserError(f"{what}: {unsealed[0]} is damaged: the manifest keeps no checksum for it")
    for filename, expected in sorted(checksums.items()):
        where = f"{what}: {filename}"
        try:
            found = checksum(fs, f"{folder}/{filename}")
        except FileNotFoundError:
            raise UserError(f"{where} is missing") from None
        except OSError as exc:
            raise UserError(f"{where} is unreadable: {why(exc)}") from None
        if found != expected:
            raise UserError(
                f"{where} is damaged: its checksum is not the one the manifest recorded "
                "(changed or truncated since it was written)"
            )
