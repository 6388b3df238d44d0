"""Shared test helpers: a fake clock, hand-built intervals, and a private export cache."""

from __future__ import annotations

import os

import pytest

from harness.record.probes import Interval, Kind


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
