"""The answer a run ends with: the user's claim, or the most each part could give."""

from __future__ import annotations

import pytest
from conftest import FIRST_V8_SET, FIRST_V9_SET

from harness.analysis.breakdown import category_shares
from harness.archive.names import load
from harness.cli import main
from harness.projection.answer import answer
from harness.projection.claims import from_arguments


@pytest.fixture(scope="module")
def profiled():
    return load(str(FIRST_V9_SET))


def test_without_a_claim_each_part_gets_its_bound(profiled):
    said = answer(profiled)
    assert said.bounds and not said.claims
    shares = category_shares(profiled)
    for b in said.bounds:
        assert b.share == shares[(b.category, b.resource)]
        # Amdahl: with the part gone, never more than 1 / (1 - its share) at the median.
        assert b.most >= 1.0
    host = next(b for b in said.bounds if b.part == "host compute")
    assert host.most > 1 / (1 - 0.5 * host.share)
    assert "were it instant" in said.sentence and "--claim FILE" in said.sentence
    assert "1.5x" not in said.sentence


def test_a_claim_on_a_resource_the_set_never_used_says_where_to_run_it(profiled):
    (said,) = answer(profiled, [from_arguments(["device=10"])]).claims
    assert said.unused == ("device",) and said.matched_share == 0
    sentence = answer(profiled, [from_arguments(["device=10"])]).sentence
    assert "Nothing in this set ran on device" in sentence and "--device cuda" in sentence


def test_a_whole_stage_and_a_class_claim_are_answered(profiled):
    whole, by_class = answer(
        profiled, [from_arguments(["stage:forward=3"]), from_arguments(["memory-bound=2"])]
    ).claims
    assert whole.matched_share > 0 and 1 < whole.speedup <= 3
    assert by_class.matched_share > 0 and 1 < by_class.speedup <= 2
    # On a set with no profile, a class claim says how to get one instead of failing.
    (unprofiled,) = answer(load(str(FIRST_V8_SET)), [from_arguments(["memory-bound=2"])]).claims
    assert "--profile" in unprofiled.problem


def test_show_speaks_of_the_claim_given(capsys):
    assert main(["show", str(FIRST_V9_SET), "--speedup", "host-cpu.compute=2"]) == 0
    out = capsys.readouterr().out
    assert "host-cpu.compute=2: on" in out.replace("\n", " ")
