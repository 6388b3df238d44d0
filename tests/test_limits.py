"""Where the model of the machine ends: the lock and oversubscribed pools, said with a range."""

from __future__ import annotations

import pytest
from conftest import measured_set

from harness.archive.schema import RunLength
from harness.machine.cores import cores, whole
from harness.projection.claims import from_arguments
from harness.projection.limits import LOCK, locked
from harness.projection.project import project
from harness.projection.request_model import CPU, all_steps, request_models


@pytest.fixture(scope="module")
def side_by_side(tmp_path_factory):
    length = RunLength(warmup=2, min_requests=12, min_duration_s=0)
    return measured_set(tmp_path_factory.mktemp("lock"), "python-beside-native", length)


def test_a_locked_model_takes_turns_on_one_lock(side_by_side):
    _, model = next(request_models(side_by_side))
    held = locked(model)
    assert held.capacity[LOCK] == 1.0
    pools = {s.pool for n in held.stages for s in all_steps(n.timeline)}
    assert CPU not in pools and LOCK in pools
    assert {s.pool for n in model.stages for s in all_steps(n.timeline)} >= {CPU}  # a copy


def test_a_python_branch_beside_a_native_one_shows_the_signs_and_a_range(side_by_side):
    claim = from_arguments(["stage:multiply/compute=2"], threads=2)
    projection = project(side_by_side, claim)
    assert projection.limits, "a Python branch beside a torch one shows what is not modelled"
    assert projection.lock is not None
    # Under one lock the branches take turns, so multiply's claimed 2x shortens the request by
    # what it saves itself: never a loss, never more than the claim.
    assert 1.0 <= projection.speedup("lock") <= 2.0
    assert 1.0 <= projection.speedup("replay") <= 2.0
    if whole(cores().usable) >= 2:  # two branches, two threads for one: more than two cores
        assert any("cores" in line for line in projection.limits)
