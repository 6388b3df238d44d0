"""Every verb's arguments, fuzzed: the outcome is success or one line on stderr and exit 2,
never a traceback, never a hang past BOUND_S.

Arguments are drawn from each verb's own parser (its options, their choices and types), with
values from the classes of bad input users type: numbers out of range, NaN and infinities,
empty and odd text, missing and wrong files, set ids that match none or several, folders where
files go. Measuring is not what is fuzzed: `run` and `validate` stop, as a success, when every
check has passed and measuring would begin.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from conftest import (
    CALIBRATION_SET,
    FIRST_V7_SET,
    FIRST_V8_SET,
    LAST_V6_SET,
    RAG_SET,
    live_fingerprint,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.cli import build_parser, main

BOUND_S = 60  # the longest any one command may take, on a busy 2-core machine
EXAMPLES = 60  # per verb, each run
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(
        ["0", "1", "-1", "1e-308", "1e308", "nan", "inf", "", "0x10", "1_000", "\u0661"]
    ),
)
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
JUNK = st.one_of(TEXT, st.sampled_from(["--nope", "-x", "--", "-", "--json=1", "latest"]))
SETS = (RAG_SET, CALIBRATION_SET, LAST_V6_SET, FIRST_V7_SET, FIRST_V8_SET)
REFS = [
    "latest",
    "20261201",  # matches several
    "2026120",
    RAG_SET.name,
    LAST_V6_SET.name[:20],
    "nope",
    "",
    "{archive}/" + RAG_SET.name,  # a set by its folder
    "{archive}/missing",
    "{files}/claim.toml",  # a file, not a set
]
PATHS = ["{files}/claim.toml", "{files}/garbage.toml", "{files}/missing.toml", "{files}", ""]
OUTPUTS = ["{files}/out.json", "{files}/no/such/folder/out.json", "{archive}/x.json", "{files}"]
ARCHIVES = [
    "{archive}",
    "{files}/missing-archive",
    "{files}/claim.toml",
    "",
    "memory://fuzz",
    "s3://gapbench-fuzz/archive",  # no credentials: botocore's own error
    "ftp://127.0.0.1:9/archive",  # nothing listens: refused as the filesystem is made
    "zip://archive::{files}/missing.zip",
    "nosuchprotocol://x",
]
WORKLOADS = ["rag", "calibration", "agent", "branches", "nope", "json:JSONDecoder", "x.py:Y"]
SPEEDUP_KEYS = ["host-cpu.compute", "compute", "stage:embed.compute", "layer:inference", "x"]


class Reached(Exception):
    """Every check passed and measuring would begin: the fuzzed arguments were good."""


def _reached(*args, **kwargs):
    raise Reached


class Hung(BaseException):  # not an Exception: no handler of gapbench's may swallow it
    pass


def _values(action: argparse.Action) -> st.SearchStrategy[str]:
    """What a user might type for ``action``."""
    name = action.option_strings[-1] if action.option_strings else action.dest
    if action.choices:
        return st.one_of(st.sampled_from(sorted(map(str, action.choices))), TEXT)
    if name in ("--results",):
        return st.sampled_from(ARCHIVES)
    if name in ("--output",):
        return st.sampled_from(OUTPUTS)
    if name in ("--claim", "--params"):
        return st.one_of(st.sampled_from(PATHS), TEXT)
    if name == "--speedup":
        pair = st.tuples(st.sampled_from(SPEEDUP_KEYS) | TEXT, NUMBERS)
        return st.one_of(pair.map(lambda kv: f"{kv[0]}={kv[1]}"), TEXT)
    if name == "--set":
        pair = st.tuples(st.sampled_from(["docs", "k", "rag.k", "transport"]) | TEXT, NUMBERS)
        return st.one_of(pair.map(lambda kv: f"{kv[0]}={kv[1]}"), TEXT)
    if name == "--endpoint":  # never a real URL: nothing may leave the machine
        return TEXT.filter(lambda text: "://" not in text)
    if name in ("result", "base", "candidate"):
        return st.one_of(st.sampled_from(REFS), TEXT)
    if name == "workloads":
        return st.one_of(st.sampled_from(WORKLOADS), TEXT)
    if action.type in (int, float):
        return NUMBERS
    return st.one_of(TEXT, NUMBERS)


def _pieces(action: argparse.Action) -> st.SearchStrategy[list[str]]:
    """The words ``action`` adds to a command line (none, or a flag, or a flag and a value)."""
    if isinstance(action, argparse._StoreTrueAction):
        return st.just([action.option_strings[-1]])
    if not action.option_strings:  # a positional: a few values, or one
        many = action.nargs in ("*", "+")
        return st.lists(_values(action), min_size=0 if many else 1, max_size=3 if many else 1)
    values = _values(action)
    if action.nargs == "?":
        values = st.one_of(values, st.just(None))
    return values.map(lambda v: [action.option_strings[-1]] + ([] if v is None else [v]))


def _verbs() -> dict[str, argparse.ArgumentParser]:
    verbs = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(verbs.choices)


VERBS = _verbs()


# A good command of each verb, that fuzzed options are added to: so that what lies past the
# parser (loading, checking, projecting) is reached, not only the parser's own refusals.
GOOD = {
    "detect": [],
    "workloads": [],
    "calibrate": ["--quick"],
    "run": ["calibration", "--quick"],
    "results": [],
    "trace": ["latest", "-o", "{files}/out.json"],
    "verify": [],
    "rm": [RAG_SET.name, "--yes"],
    "show": ["latest"],
    "project": ["latest", "--speedup", "host-cpu.compute=2"],
    "compare": [RAG_SET.name, CALIBRATION_SET.name, "--speedup", "host-cpu.compute=2"],
    "validate": ["--quick", "--only", "threads"],
    "export": [RAG_SET.name, "--anonymize", "-o", "{files}/out.zip"],
    "import": ["{files}/claim.toml"],
    "report": [RAG_SET.name, "-o", "{files}/report.html"],
}


def _command(verb: str) -> st.SearchStrategy[list[str]]:
    """A command of ``verb``: a good one with fuzzed options added, or one drawn whole."""
    actions = [a for a in VERBS[verb]._actions if not isinstance(a, argparse._HelpAction)]
    positional = [_pieces(a) for a in actions if not a.option_strings]
    optional = [_pieces(a) for a in actions if a.option_strings]
    chosen = st.lists(st.one_of(optional), max_size=3) if optional else st.just([])
    junk = st.one_of(st.just([]), st.just([]), st.just([]), JUNK.map(lambda j: [j]))
    drawn = st.tuples(st.tuples(*positional) if positional else st.just(()), chosen, junk).map(
        lambda parts: [w for group in (*parts[0], *parts[1], parts[2]) for w in group]
    )
    added = st.tuples(chosen, junk).map(
        lambda p: [*GOOD[verb], *(w for option in p[0] for w in option), *p[1]]
    )
    return st.one_of(added, drawn).map(lambda words: [verb, *words])


@pytest.fixture(autouse=True)
def _no_measuring(monkeypatch):
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(variable, raising=False)  # an s3:// archive has no credentials
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with contextlib.suppress(ImportError):  # without the fleet extra: one line all the same
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
    monkeypatch.setattr("harness.measure.replicates.run", _reached)
    monkeypatch.setattr("harness.experiments.validate.validate", _reached)
    # Each example's archive is fresh, so each would measure the machine again: two minutes of
    # micro-benchmarks that say nothing of how the verb answers its input.
    monkeypatch.setattr("harness.measure.calibrate.calibrate", _reached)
    monkeypatch.setattr("harness.machine.fingerprint.detect", live_fingerprint)


TALLY: Counter[tuple[str, int, str]] = Counter()


def _outcome(argv: list[str], capsys) -> tuple[int, str]:
    """Run ``argv`` in a fresh archive of old sets: its exit status and its stderr."""
    root = Path(tempfile.mkdtemp(prefix="gapbench-fuzz-"))
    try:
        archive, files = root / "archive", root / "files"
        for folder in SETS:
            shutil.copytree(folder, archive / folder.name)
        files.mkdir()
        (files / "claim.toml").write_text('name = "x"\n[speedup]\n"host-cpu.compute" = 2\n')
        (files / "garbage.toml").write_bytes(b"\x00\xff[[[")
        argv = [w.replace("{archive}", str(archive)).replace("{files}", str(files)) for w in argv]
        os.environ["GAPBENCH_RESULTS"] = str(archive)  # never ./results
        signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(Hung(argv)))
        signal.alarm(BOUND_S)
        try:
            status = main(argv)
        except SystemExit as exc:  # --help and --version
            status = exc.code if isinstance(exc.code, int) else 2
        except Reached:
            status = 0
        finally:
            signal.alarm(0)
        return status, capsys.readouterr().err
    finally:
        shutil.rmtree(root, ignore_errors=True)
        os.environ.pop("GAPBENCH_RESULTS", None)


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_verb_answers_or_refuses_in_one_line(verb, capsys):
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(_command(verb))
    def check(argv):
        status, err = _outcome(argv, capsys)
        said = err.strip().splitlines()
        if status == 0:
            assert "Traceback" not in err, (argv, err)
        else:
            assert status == 2, (argv, status, err)
            assert len(said) == 1 and said[0].startswith("gapbench: error: "), (argv, err)
        TALLY[(verb, status, _kind(said[-1] if said else ""))] += 1

    check()
    if os.environ.get("GAPBENCH_FUZZ_TALLY"):  # what each class of input got, for the docs
        with open(os.environ["GAPBENCH_FUZZ_TALLY"], "a") as out:
            for (v, status, kind), n in sorted(TALLY.items()):
                if v == verb:
                    out.write(json.dumps({"verb": v, "status": status, "kind": kind, "n": n}))
                    out.write("\n")


def _kind(line: str) -> str:
    """The gist of an error line, its particulars dropped, for counting."""
    text = line.removeprefix("gapbench: error: ")
    for cut in (" (", ": ", ", not", " '", ' "'):
        text = text.split(cut, 1)[0]
    return text[:60]
