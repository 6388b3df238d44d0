"""Where an archive lives: a local path or fsspec URL, opened so that whatever the store
answers with (a full disk, missing credentials, a refused connection) arrives as an OSError.

fsspec's backends raise their own libraries' errors (botocore's ``NoCredentialsError``, an FTP
client's, an HTTP client's) beside OSError: one type lets every caller say what went wrong in
one line, as it does for a disk.
"""

from __future__ import annotations

import errno
import functools
import os
from collections.abc import Callable
from typing import Any

import fsspec
from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from harness.errors import UserError


class Unreachable(OSError):
    """The store failed in its own terms; the message names the error it raised."""


def why(exc: OSError) -> str:
    """An OSError in a few words: its reason, without the errno and path it may repeat."""
    return exc.strerror or str(exc) or type(exc).__name__


def _translated(call: Callable[..., Any]) -> Callable[..., Any]:
    """``call``, failing with OSError only."""

    @functools.wraps(call)
    def translated(*args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except OSError:
            raise
        except Exception as exc:
            raise Unreachable(f"{type(exc).__name__}: {exc}") from exc

    return translated


class _Wrapped:
    """An object whose methods fail with OSError only."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        return _translated(attr) if callable(attr) else attr


class GuardedFile(_Wrapped):
    """A file of a guarded filesystem: its reads, writes and close fail with OSError only."""

    def __enter__(self) -> GuardedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        _translated(self.inner.close)()


class Guarded(_Wrapped):
    """A filesystem whose calls, and the files it opens, fail with OSError only
    (``Unreachable`` for the others)."""

    def open(self, *args: Any, **kwargs: Any) -> Any:  # a GuardedFile, read as a binary file
        return GuardedFile(_translated(self.inner.open)(*args, **kwargs))


# What the store's own functions take: a filesystem as fsspec makes it, or guarded.
FileSystem = AbstractFileSystem | Guarded


def open_location(location: str) -> tuple[Guarded, str, bool]:
    """The filesystem, the root path in it, and whether it is this machine's own disk."""
    if not location.strip():
        raise UserError("the archive's location is empty: give a path or an fsspec URL")
    try:  # some backends connect as they are made (ftp, sftp): any failure is the location's
        fs, root = fsspec.core.url_to_fs(location)
    except Exception as exc:
        raise UserError(
            f"cannot open the archive {location!r}: {type(exc).__name__}: {exc}"
        ) from exc
    return Guarded(fs), root, isinstance(fs, LocalFileSystem)


def publish(draft: str, target: str) -> None:
    """The local file ``draft`` as ``target`` too, never over a file there (FileExistsError);
    where the filesystem has no hard links (FAT, many network and FUSE mounts), renamed
    instead, after the caller's own check that none was there."""
    try:
        os.link(draft, target)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        os.replace(draft, target)
