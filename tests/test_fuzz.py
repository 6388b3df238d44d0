"""Bad input by the hundred: the parsers a user types into either answer or refuse in one line.

Whatever hypothesis makes of `--speedup`, `--set`, a claim file or a manifest, the outcome is a
value or a UserError whose message is one line, never another exception and never a hang.
"""

from __future__ import annotations

import json
import shutil
import signal

import pytest
from conftest import FIRST_V8_SET, RAG_SET
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.archive.store import Archive
from harness.errors import UserError
from harness.params import Given, Param
from harness.projection import claims

PARAMS = (
    Param("n", 3, low=1, high=64),
    Param("x", 0.5, low=0.0, high=1.0),
    Param("mode", "a", changes="execution", choices=("a", "b")),
    Param("flag", False),
)
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(["", " ", "1e-308", "1e308", "nan", "-inf", "0x10", "1_000", "١٢"]),
)
KEYS = st.one_of(
    TEXT,
    st.sampled_from(
        ["host-cpu.compute", "compute", "device.compute", "stage:generate.compute", "layer:x"]
    ),
)


BOUND_S = 10  # the longest any one parse or load may take, on a busy 2-core machine


class Hung(BaseException):  # not an Exception: no handler of gapbench's may swallow it
    pass


def _refused_in_one_line(call) -> None:
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(Hung(call)))
    signal.alarm(BOUND_S)
    try:
        call()
    except UserError as exc:
        assert str(exc) and "\n" not in str(exc), repr(str(exc))
    finally:
        signal.alarm(0)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(KEYS, NUMBERS).map(lambda kv: f"{kv[0]}={kv[1]}") | TEXT, max_size=4))
def test_speedup_arguments_answer_or_refuse_in_one_line(pairs):
    _refused_in_one_line(lambda: claims.from_arguments(pairs))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["n", "x", "mode", "flag", "w.n", "v.x", ""]) | TEXT, NUMBERS | TEXT
        ).map(lambda kv: f"{kv[0]}={kv[1]}")
        | TEXT,
        max_size=4,
    )
)
def test_parameters_answer_or_refuse_in_one_line(sets):
    def parse():
        given_ = Given.read(sets)
        given_.check_names({"w": PARAMS})
        given_.values("w", PARAMS)

    _refused_in_one_line(parse)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(max_size=300))
def test_claim_files_answer_or_refuse_in_one_line(tmp_path, body):
    path = tmp_path / "claim.toml"
    path.write_text(body)
    _refused_in_one_line(lambda: claims.load(path))


def _mutations(folder):
    """A real manifest and the path of every value in it, into lists as into objects."""
    manifest = json.loads((folder / "manifest.json").read_text())

    def paths(body, prefix=()):
        items = body.items() if isinstance(body, dict) else enumerate(body)
        for key, value in items:
            yield (*prefix, key)
            if isinstance(value, dict | list):
                yield from paths(value, (*prefix, key))

    return manifest, list(paths(manifest))


# A set as schema 2 wrote it, and one of the current schema with its checksums.
WRITTEN = {folder.name: _mutations(folder) for folder in (RAG_SET, FIRST_V8_SET)}
PLACES = [(name, path) for name, (_, paths) in WRITTEN.items() for path in paths]


@pytest.fixture(scope="module")
def archive_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzzed")
    for folder in (RAG_SET, FIRST_V8_SET):
        shutil.copytree(folder, root / folder.name)
    return root


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.sampled_from(PLACES),
    st.one_of(
        st.none(),
        st.just("drop"),
        st.integers(),
        st.text(max_size=5),
        st.lists(st.integers(), max_size=2),
        st.floats(allow_nan=True),
    ),
)
def test_a_manifest_with_any_key_dropped_or_mistyped_loads_or_is_refused_in_one_line(
    archive_dir, place, value
):
    name, path = place
    body = json.loads(json.dumps(WRITTEN[name][0]))
    node = body
    for key in path[:-1]:
        node = node[key]
    if value == "drop":
        del node[path[-1]]
    else:
        node[path[-1]] = value
    (archive_dir / name / "manifest.json").write_text(json.dumps(body))
    archive = Archive(archive_dir)
    _refused_in_one_line(lambda: archive.load(name))
    _refused_in_one_line(archive.listings)
    _refused_in_one_line(lambda: archive.verify(name))
