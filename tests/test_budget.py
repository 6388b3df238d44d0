"""A long computation's budget: it stops in one line, saying how far it got, and never early
when its pace fits."""

from __future__ import annotations

import itertools
import re

import pytest
from conftest import CALIBRATION_SET

from harness.archive.names import load
from harness.cli import main
from harness.errors import UserError
from harness.projection.budget import Budget
from harness.projection.claims import from_arguments
from harness.projection.project import BASES, project


def ticking(step: float):
    """A clock that moves ``step`` seconds at each reading."""
    counter = itertools.count()
    return lambda: next(counter) * step


def test_a_pace_that_fits_runs_to_the_end():
    budget = Budget(10.0, clock=ticking(0.001))
    assert list(budget.each(range(5000), "counting")) == list(range(5000))


def test_a_pace_that_would_outrun_it_stops_early_saying_how_far_it_got():
    # The clock is read every 32 items: 0.1 s each time, 32,000 items take 100 s, against a
    # budget of 10 s; the pace is judged after a second.
    budget = Budget(10.0, clock=ticking(0.1))
    seen = []
    with pytest.raises(UserError) as caught:
        seen.extend(budget.each(range(32_000), "the replay of claim 'x'"))
    said = str(caught.value)
    assert said.startswith("the replay of claim 'x' would outrun the budget of 10 s (--budget)")
    needed = re.search(r"it needs about ([\d,]+) s", said)
    assert "of 32,000 requests" in said and needed and 90 <= int(needed.group(1)) <= 120
    assert len(seen) < 32_000 / 5  # stopped well before a tenth of the way


def test_time_spent_in_earlier_loops_counts():
    budget = Budget(2.0, clock=ticking(1.0))
    list(budget.each(range(1), "first"))  # two readings: two seconds gone
    with pytest.raises(UserError, match=r"^second ran out of the budget of 2 s"):
        list(budget.each(range(10), "second"))


def test_a_projection_past_its_budget_is_one_line(tmp_path, capsys):
    result = load(str(CALIBRATION_SET))
    BASES.pop(result, None)
    claim = from_arguments(["host-cpu.compute=2"])
    with pytest.raises(UserError, match="ran out of the budget of 1 s"):
        project(result, claim, budget=Budget(1.0, clock=ticking(10.0)))
    for bad in ("0", "nan", "1e9"):
        status = main(["project", str(CALIBRATION_SET), "--speedup", "host-cpu.compute=2",
                       "--budget", bad, "--no-keep"])  # fmt: skip
        err = capsys.readouterr().err
        assert status == 2 and "--budget must be" in err and err.count("\n") == 1


def test_the_library_holds_the_ranges_the_command_line_states(capsys):
    from harness.projection.claims import Claim, parse_key

    for seconds in (float("nan"), 0.0, 1e9):  # NaN would never stop; 0 would stop at once
        with pytest.raises(UserError, match="--budget must be"):
            Budget(seconds)
    target = parse_key("host-cpu.compute")
    for factor in (1e-308, 1e308, float("nan")):  # a claim made in code, past the parser
        with pytest.raises(UserError, match=r"claim 'c': key 'host-cpu.compute' must be"):
            Claim("c", ((target, factor),))
    with pytest.raises(UserError, match=r"threads must be 4096 or less"):
        Claim("c", ((target, 2.0),), threads=100_000)
    result = load(str(CALIBRATION_SET))
    for size in (-1, 10**8):
        with pytest.raises(UserError, match="sample size must be"):
            project(result, Claim("c", ((target, 2.0),)), sample_size=size)
    # one range of threads for a run here and a claim's candidate alike
    for verb in (["run", "calibration"], ["project", str(CALIBRATION_SET), "--speedup", "x=2"]):
        assert main([*verb, "--threads", "4097", "--results", "memory://t"]) == 2
        assert "--threads must be 4096 or less" in capsys.readouterr().err
