"""Shared test helpers: a fake clock, hand-built intervals, and a private export cache."""

from __future__ import annotations

import functools
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from harness.archive.schema import Manifest
from harness.archive.store import load
from harness.machine.fingerprint import Fingerprint, detect
from harness.record.probes import Interval
from harness.words import Kind
from harness.workload import Stage

SETS = Path(__file__).parent / "fixtures" / "sets"
RAG_SET = SETS / "20261201T215455Z-vm-rag-c709d037"  # torch, two replicates, schema 2
ORT_SET = SETS / "20261201T215505Z-vm-rag-1bc331af"  # onnxruntime, one replicate
CALIBRATION_SET = SETS / "20261201T215528Z-vm-calibration-38fa5490"
FIRST_V2_SET = SETS / "20261201T224847Z-vm-rag-a99df2bf"  # version 2 before it gained facts
LAST_V1_SET = SETS / "20261201T224811Z-vm-rag-15385168"


class FakeClock:
    """A clock that moves only when told to, so every split has an exact expected value."""

    def __init__(self, start: int = 0) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now

    def advance(self, ns: int) -> None:
        self.now += ns


@pytest.fixture(scope="session", autouse=True)
def export_cache(tmp_path_factory: pytest.TempPathFactory):
    """One ONNX export cache for the whole session (worker processes inherit it), never the
    user's own: a graph exported by one test is a cache hit for the next."""
    folder = tmp_path_factory.mktemp("gapbench-cache")
    before = os.environ.get("GAPBENCH_CACHE")
    os.environ["GAPBENCH_CACHE"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("GAPBENCH_CACHE", None)
    else:
        os.environ["GAPBENCH_CACHE"] = before


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_000)


def interval(
    kind: Kind,
    start: int,
    end: int,
    *,
    stage: str = "",
    category: str = "",
    resource: str = "",
    label: str = "",
    span: int = 0,
    parent: int = -1,
    thread: int = 1,
    nbytes: int = 0,
) -> Interval:
    """An interval of request 0, written out by hand."""
    return Interval(
        request=0,
        span=span,
        parent=parent,
        kind=kind.value,
        stage=stage,
        category=category,
        resource=resource,
        label=label,
        start_ns=start,
        end_ns=end,
        nbytes=nbytes,
        thread=thread,
        task="",
    )


@functools.cache
def _fixture_manifest() -> Manifest:
    return load(str(RAG_SET)).manifest


def make_manifest(
    stages: tuple[Stage, ...] | None = None,
    *,
    set_id: str = "hand-built",
    device: str = "cpu",
    cores: float = 4.0,
    stage_threads: dict[str, int] | None = None,
    replicates: int = 1,
    execution: dict[str, Any] | None = None,
    work: dict[str, Any] | None = None,
    **fields: Any,
) -> Manifest:
    """A manifest for hand-built intervals: a real one (the fixture rag set, read through the
    store) with what the test states replaced; ``execution`` and ``work`` replace those
    config fields, ``fields`` the manifest's own."""
    base = _fixture_manifest()
    facts = replace(base.replicates[0], stage_threads=stage_threads or {}, agreement=None)
    config = replace(
        base.config,
        execution=replace(base.execution, device=device, **(execution or {})),
        work=replace(base.work, **(work or {})),
    )
    own = {
        "id": set_id,
        "stages": base.stages if stages is None else tuple(stages),
        "config": config,
        "fingerprint": replace(base.fingerprint, usable_cores=float(cores)),
        "replicates": tuple(replace(facts, replicate=i) for i in range(replicates)),
        "agreement": None,
        "profile": None,
    }
    return replace(base, **{**own, **fields})


@functools.cache
def live_fingerprint() -> Fingerprint:
    """This machine's fingerprint, taken once per session."""
    return detect()


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small orders file for the tool server's lookup tool, built once per module."""
    from workloads.tool_server import build_database

    path = tmp_path_factory.mktemp("tools") / "orders.sqlite"
    build_database(path, seed=0, rows=20_000)
    return path
