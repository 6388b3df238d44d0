"""Result sets made fit to share: host names, user names, paths and personal environment values
rewritten, the hardware and software facts they are shared for kept.

Every string of a set is read here: the manifest's (its work, execution, replicates' facts,
fingerprint checks, errors), a failure record's, the kept projections', the attachments' (a
profiler's trace names its host and a path under /tmp) and every string cell of its tables (a
request's error). A host is known from the ids (``<time>-<host>-<workload>-<hex>``) and from a
``host_name`` key; it becomes ``host-`` and eight hex digits of a keyed hash of its name, the
same everywhere and in every export from one archive (the key is the archive's own, in its
``.anonymize`` folder, never exported: without it a name cannot be guessed back from its label,
and two archives' hosts do not share labels). A user is known as this machine's login, or as
the folder a home path names. An absolute path keeps only a file's own name
(``<path>/trace.json``), a URL loses its user and password, an address on a network is removed
but loopback's, and so are an e-mail address and a personal variable's value (HOME, USER...).
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import hmac
import itertools
import json
import os
import re
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from harness.archive.checksums import checksum_of
from harness.archive.codec import DecodeError, from_dict
from harness.archive.names import host_of, slug, this_host
from harness.archive.schema import Work
from harness.archive.store import FAILED, MANIFEST, PROJECTIONS
from harness.errors import UserError
from harness.words import CATEGORIES, LAYERS, RESOURCES, Kind

PATH, REMOVED, USER = "<path>", "<removed>", "user"
# Variables whose value names a person, their machine or their folders.
PERSONAL = frozenset(
    {
        *("HOME", "USER", "LOGNAME", "USERNAME", "USERPROFILE", "HOSTNAME", "MAIL", "PWD"),
        *("OLDPWD", "TMPDIR", "TEMP", "TMP", "PATH", "PYTHONPATH", "LD_LIBRARY_PATH", "DISPLAY"),
        *("SSH_CLIENT", "SSH_CONNECTION", "SSH_TTY", "SSH_AUTH_SOCK", "VIRTUAL_ENV"),
        *("CONDA_PREFIX", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"),
        *("XDG_DATA_HOME", "GAPBENCH_RESULTS", "GAPBENCH_CACHE"),
    }
)
HOST_KEYS = frozenset({"host_name", "hostname", "host", "node", "node_name", "nodename"})
PATH_KEYS = frozenset({"path", "file", "filename", "traceName", "cwd", "directory", "folder"})
# The manifest's own bookkeeping: file names and digests, rewritten by the caller.
BOOKKEEPING = ("checksums", "tables", "attachments")
HOMES = frozenset({"home", "Users", "users"})  # a folder under one of these is a person's
SYSTEM_USERS = frozenset({"root", "nobody", "daemon", "admin", "user"})
# gapbench's own words: a host or user of that name is rewritten in ids only, never where it
# is a measured fact (a probe's resource, a timing mode).
WORDS = frozenset(
    {*CATEGORIES, *RESOURCES, *LAYERS, *(k.value for k in Kind), "host", "localhost", "user"}
    | {"cpu", "gpu", "cuda", "torch", "onnxruntime", "python"}
)
_FOUND = re.compile(
    r"(?P<url>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]*)"
    r"|(?P<email>(?<![\w.+-])[\w.+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}\b)"
    r"|(?P<windows>(?<!\w)(?:[A-Za-z]:|\\\\[^\s\\/]+)(?:\\[^\s\\/'\"<>|:;,()\[\]{}=]+)+\\?)"
    r"|(?P<posix>(?<![\w.~/\\<-])(?:~[\w.-]*)?(?:/[^\s/\\'\"<>|:;,()\[\]{}=]+)+/?)"
)
_VARIABLE = re.compile(rf"(?<![\w])({'|'.join(sorted(PERSONAL))})=[^\s'\",;]*")
_STAMP = r"\d{8}T\d{6}Z"
# A machine on someone's network, by its address: IPv4 anywhere, IPv6 as a URL's host.
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.])(?:{_OCTET}\.){{3}}{_OCTET}(?![\w.])")
_ADDRESS = re.compile(r"^\[[0-9A-Fa-f:.]+\](?=[:/?#]|$)")
LOOPBACK = frozenset({"127.0.0.1", "0.0.0.0", "[::1]", "[::]"})


def _a_name(value: str) -> bool:
    """Whether a host key's value is a name (not an address, nor a number)."""
    return len(value) > 1 and any(c.isalpha() for c in value) and ":" not in value


def _address(match: re.Match[str]) -> str:
    return match.group(0) if match.group(0) in LOOPBACK else "<address>"


class Anonymizer:
    """What one export rewrites, the same in every set it holds: ids, hosts, users."""

    def __init__(self, workloads: Mapping[str, str], key: bytes) -> None:
        """``workloads``: each set id to export, in order, with its workload's name; ``key``:
        the archive's secret that hosts' labels are hashed with."""
        self._key = key
        self._hosts: dict[str, str] = {}
        self._ids: dict[str, str] = {}
        for set_id, workload in workloads.items():
            host = host_of(set_id, workload)
            if not host:
                raise UserError(
                    f"result set {set_id}: its id is not one gapbench gives "
                    "(<time>-<host>-<workload>-<hex>), so its host cannot be rewritten"
                )
            start = set_id.index("-") + 1  # the host follows the time stamp
            self._ids[set_id] = set_id[:start] + self._host(host) + set_id[start + len(host) :]
        # A user named as a workload would be rewritten inside the ids themselves.
        self._words = WORDS | {*workloads.values(), *map(slug, workloads.values())}
        users = set()
        with contextlib.suppress(Exception):  # no login: a container's uid without a name
            users.add(getpass.getuser())
        users |= {os.environ.get(v, "") for v in ("LOGNAME", "USER", "USERNAME")}
        with contextlib.suppress(RuntimeError):
            users.add(Path.home().name)
        self._users = {u for u in users if self._personal(u)}
        # The raw names a host goes by (a full domain name, an underscore the id cannot hold),
        # each to its id's form: this machine's own, and those a set names under a host key.
        self._aliases: dict[str, str] = {}
        mine = socket.gethostname()
        if this_host() in self._hosts:
            for raw in (mine, mine.split(".")[0], socket.getfqdn()):
                self._alias(raw, this_host())
        self._learning = False
        self._compile()

    @property
    def learning(self) -> bool:
        """While True, strings are only read for the users and hosts they name (and left as
        they are); set False once every set was read, so every name learnt is rewritten."""
        return self._learning

    @learning.setter
    def learning(self, on: bool) -> None:
        self._learning = on
        if not on:
            self._compile()

    def _alias(self, raw: str, host: str) -> None:
        if raw and raw not in self._words and raw not in SYSTEM_USERS:
            self._aliases[raw] = host

    def _compile(self) -> None:
        # One pass over ids and hosts, so that a new name is never read again as an old one.
        hosts = "|".join(re.escape(h) for h in sorted(self._hosts, key=len)[::-1])
        named = [
            "(?P<id>" + "|".join(re.escape(i) for i in sorted(self._ids, key=len)[::-1]) + ")",
            rf"(?<![A-Za-z0-9])(?P<stamp>{_STAMP})-(?P<made_on>{hosts})-(?=[A-Za-z0-9])",
        ]
        names = {*self._hosts, *self._aliases}
        free = [re.escape(h) for h in sorted(names, key=len)[::-1] if h not in self._words]
        if free:  # a host named as one of our words is left where it is a measured fact
            named.append(
                rf"(?<![A-Za-z0-9-])(?P<host>{'|'.join(free)})"
                r"(?:\.[A-Za-z][A-Za-z0-9-]*)*(?![A-Za-z0-9-])"  # with its domain, if any
            )
        self._named = re.compile("|".join(named))
        self._done: dict[tuple[str, bool], str] = {}

    def new_id(self, set_id: str) -> str:
        return self._ids[set_id]

    def _host(self, host: str) -> str:
        if host not in self._hosts:
            digest = hmac.new(self._key, host.encode(), hashlib.sha256).hexdigest()
            self._hosts[host] = f"host-{digest[:8]}"
        return self._hosts[host]

    def _personal(self, user: str) -> bool:
        """Whether ``user`` is a person's name to rewrite (not a system account or our word)."""
        return len(user) > 1 and user not in SYSTEM_USERS and user not in self._words

    def _renamed(self, match: re.Match[str]) -> str:
        if found := match.group("id"):
            return self._ids[found]
        if stamp := match.group("stamp"):
            return f"{stamp}-{self._hosts[match.group('made_on')]}-"
        host = match.group("host")
        return self._hosts[self._aliases.get(host, host)]

    def text(self, text: str, setting: bool = False) -> str:
        """``text`` with every id, host, personal value, path, URL user, address and user
        rewritten; a ``setting`` (a value of the set's config) that is exactly a host's name
        is a word of the config that the host happens to share, and stays."""
        if self._learning:
            for match in _FOUND.finditer(text):
                _found(match, self._users)
            return text
        if (done := self._done.get((text, setting))) is not None:
            return done
        if setting and (text in self._hosts or text in self._aliases):
            return text
        users = set(self._users)
        found = self._named.sub(self._renamed, text)
        found = _VARIABLE.sub(lambda m: f"{m.group(1)}={REMOVED}", found)
        found = _IPV4.sub(_address, found)
        found = _FOUND.sub(lambda m: _found(m, users), found)
        for user in sorted(users, key=len, reverse=True):
            if self._personal(user):
                found = re.sub(rf"(?<![A-Za-z0-9]){re.escape(user)}(?![A-Za-z0-9])", USER, found)
        self._done[(text, setting)] = found
        return found

    def value(self, value: Any, key: str = "", setting: bool = False) -> Any:
        """JSON ``value`` (found under ``key``; ``setting``: inside the set's config) with every
        string, keys too, rewritten."""
        if isinstance(value, str) and self._learning:  # read for names, left as it is
            if key.lower() in HOST_KEYS and _a_name(value):
                host = self._host(slug(value.split(".")[0]))
                for raw in (value, value.split(".")[0]):
                    self._alias(raw, self._hosts_of(host))
            return self.text(value, setting)
        if isinstance(value, str):
            if key in PERSONAL:
                return REMOVED
            if key.lower() in HOST_KEYS and value:
                if not _a_name(value):  # an address: a network's, unless loopback
                    return _IPV4.sub(_address, value) if _IPV4.fullmatch(value) else REMOVED
                return self._host(slug(value.split(".")[0]))
            if key in PATH_KEYS and value:
                return _as_path(self.text(value).replace("\\", "/"))
            return self.text(value, setting)
        if isinstance(value, list):
            return [self.value(v, key, setting) for v in value]
        if isinstance(value, dict):
            inside = setting or key == "config"
            return {self.text(str(k)): self.value(v, str(k), inside) for k, v in value.items()}
        return value

    def _hosts_of(self, new: str) -> str:
        """The id's form of the host renamed ``new``."""
        return next(old for old, renamed in self._hosts.items() if renamed == new)


def _found(match: re.Match[str], users: set[str]) -> str:
    """What a URL, address or path found in a text becomes; a home folder's user is noted."""
    if match.group("email"):
        return REMOVED
    if url := match.group("url"):
        scheme, _, rest = url.partition("://")
        if scheme.lower() == "file":
            return _as_path(rest, users)
        rest = re.sub(r"^[^/@]*@", "", rest)  # a user and password
        return f"{scheme}://{_ADDRESS.sub(_address, rest, count=1)}"
    return _as_path((match.group("windows") or match.group("posix")).replace("\\", "/"), users)


def _as_path(path: str, users: set[str] | None = None) -> str:
    """A path as shared: a file's own name kept, never a folder's (it may be a user's)."""
    parts = [p for p in path.split("/") if p and not p.endswith(":")]
    for folder, user in itertools.pairwise(parts):
        if folder in HOMES and users is not None:
            users.add(user)
    if parts and parts[0].startswith("~") and len(parts[0]) > 1 and users is not None:
        users.add(parts[0][1:])
    name = parts[-1] if len(parts) > 1 else ""
    if "." not in name.strip(".") or (len(parts) == 2 and parts[0] in HOMES):
        return PATH
    return f"{PATH}/{name}"


def anonymize_set(folder: Path, files: Iterable[str], anonymizer: Anonymizer) -> None:
    """Rewrite the staged copy of a set in ``folder`` (its ``files``, a manifest or failure
    record among them) in place, its manifest last with the checksums of what changed."""
    names = list(files)
    for name in names:
        if name in (MANIFEST, FAILED):
            continue
        path = folder / name
        if name.startswith(f"{PROJECTIONS}/") or name.endswith(".json"):
            _rewrite_json(path, anonymizer)
        elif name.endswith(".parquet"):
            _rewrite_parquet(path, anonymizer)
        else:
            _rewrite_text(path, anonymizer)
    if FAILED in names:
        _rewrite_json(folder / FAILED, anonymizer)
    if MANIFEST not in names:
        return
    body = _json(folder / MANIFEST)
    if anonymizer.learning:
        anonymizer.value(body)
        return
    kept = {k: body[k] for k in BOOKKEEPING if k in body}
    rewritten = anonymizer.value({k: v for k, v in body.items() if k not in BOOKKEEPING})
    work = (rewritten.get("config") or {}).get("work")
    if isinstance(work, dict) and work != (body.get("config") or {}).get("work"):
        with contextlib.suppress(DecodeError):  # an old set's work: no digest of it is checked
            work["work_sha256"] = from_dict(Work, work).fields_digest()
    sums = kept.get("checksums")
    if isinstance(sums, dict):  # recomputed: a rewritten file must still verify
        kept["checksums"] = {f: checksum_of(folder / f) for f in sums}
    payload = json.dumps({**rewritten, **kept}, indent=1, sort_keys=True, default=str)
    (folder / MANIFEST).write_bytes(payload.encode())


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (ValueError, RecursionError) as exc:
        raise UserError(f"{path.name} cannot be anonymized: it is not JSON ({exc})") from None


def _rewrite_json(path: Path, anonymizer: Anonymizer) -> None:
    rewritten = anonymizer.value(_json(path))
    if not anonymizer.learning:
        path.write_bytes(json.dumps(rewritten, indent=1).encode())


def _rewrite_text(path: Path, anonymizer: Anonymizer) -> None:
    try:
        text = path.read_bytes().decode()
    except UnicodeDecodeError:
        raise UserError(f"{path.name} cannot be anonymized: it is not text") from None
    rewritten = anonymizer.text(text)
    if not anonymizer.learning:
        path.write_bytes(rewritten.encode())


_PLAIN = (pa.string(), pa.large_string())


def _textual(kind: pa.DataType) -> bool:
    """Whether values of this Arrow type hold strings anywhere."""
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return True
    if pa.types.is_dictionary(kind):
        return _textual(kind.value_type)
    return any(_textual(kind.field(i).type) for i in range(kind.num_fields))


def _rewrite_parquet(path: Path, anonymizer: Anonymizer) -> None:
    """Every string cell rewritten, a row group at a time (a big set is never held whole);
    the file is replaced only where a cell changed, its schema and metadata kept."""
    source = pq.ParquetFile(path)
    schema = source.schema_arrow
    textual = [i for i, f in enumerate(schema) if _textual(f.type)]
    if not textual:
        return
    if anonymizer.learning:  # read for the names its strings hold; nothing written
        names = [schema.field(i).name for i in textual]
        for group in range(source.num_row_groups):
            for column in source.read_row_group(group, columns=names).columns:
                plain = column.type in _PLAIN  # each distinct string once
                for v in (pc.unique(column) if plain else column).to_pylist():
                    anonymizer.value(v)
        return
    draft, changed = path.with_name(f"{path.name}.anonymized"), False
    with pq.ParquetWriter(draft, schema) as writer:
        for group in range(source.num_row_groups):
            table = source.read_row_group(group)
            for i in textual:
                column, field = table.column(i), schema.field(i)
                plain = pa.types.is_string(field.type) or pa.types.is_large_string(field.type)
                distinct = pc.unique(column).to_pylist() if plain else ()
                if plain and not any(v is not None and anonymizer.text(v) != v for v in distinct):
                    continue  # nothing to rewrite: the common case, each value read once
                values = column.to_pylist()
                rewritten = [anonymizer.value(v) for v in values]
                if rewritten != values:
                    table = table.set_column(i, field, pa.array(rewritten, type=field.type))
                    changed = True
            writer.write_table(table)
    if changed:
        os.replace(draft, path)
    else:
        draft.unlink()
