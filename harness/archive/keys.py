"""The archive's own secret: what ``export --anonymize`` hashes host names with.

Kept in the archive's dotted ``.anonymize`` folder (never listed as a set, never exported), so
every export from one archive labels a host alike, two archives' labels differ, and nobody
without the key can guess a name back from its label by trying names.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from harness.archive.location import publish
from harness.archive.store import Archive
from harness.errors import UserError

KEY = ".anonymize/key"  # a dotted folder: never listed as a set, never exported
KEY_BYTES = 32


def anonymizing_key(archive: Archive) -> bytes:
    """The archive's secret for hosts' labels, made on first use (so ``export --anonymize``
    needs to write to the archive once)."""
    path = f"{archive.root.rstrip('/')}/{KEY}"
    try:
        if not archive.fs.exists(path):
            made = secrets.token_bytes(KEY_BYTES).hex().encode()
            if archive.local:  # made whole under another name, then linked: first one wins
                os.makedirs(os.path.dirname(path), exist_ok=True)
                draft = f"{path}.{secrets.token_hex(4)}.tmp"
                Path(draft).write_bytes(made)
                try:
                    publish(draft, path)
                except FileExistsError:
                    pass  # another export made it meanwhile: theirs is the key
                finally:
                    os.unlink(draft)
            else:  # an object store: no folders to make, and a write is whole
                archive.fs.pipe_file(path, made)
        key = bytes.fromhex(archive.fs.cat_file(path).decode().strip())  # read back: the one kept
    except (OSError, ValueError) as exc:
        raise UserError(
            f"the archive's anonymizing key at {path} is unusable ({exc}): export --anonymize "
            "keeps one in the archive, and needs to write it once"
        ) from None
    if len(key) != KEY_BYTES:  # an empty or cut key would make labels guessable
        raise UserError(f"the archive's anonymizing key at {path} is damaged: remove it")
    return key
