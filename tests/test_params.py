"""Workload parameters: declared, typed on the command line or in TOML, checked, archived."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.archive.store import Archive
from harness.cli import main
from harness.errors import UserError
from harness.measure.config import RunConfig, plan
from harness.params import EXECUTION, Given, Param, resolve, split

PLUGIN = """
from harness.workload import Param, Stage, Workload


class Tunable(Workload):
    name = "tunable"
    stages = (Stage("crunch", layer="inference"),)
    params = (
        Param("rows", 8, "rows of the matrix", low=1, high=64),
        Param("mode", "fast", "how", changes="execution", choices=("fast", "slow")),
        Param("scale", 1.5, "a factor", low=0.0, high=10.0),
        Param("check", False, "verify the answer", changes="execution"),
    )
    seen = []

    def setup(self, ctx):
        Tunable.seen.append(dict(ctx.params))

    def requests(self, ctx):
        return [ctx.params["rows"]] * 4

    def crunch(self, ctx, rows):
        with ctx.compute():
            return sum(range(rows * 100)) * ctx.params["scale"]
"""
FAST = ["--quick", "--min-requests", "8", "--min-duration", "0", "--warmup", "0", "--no-progress"]
PARAMS = (
    Param("rows", 8, low=1, high=64),
    Param("mode", "fast", changes=EXECUTION, choices=("fast", "slow")),
    Param("scale", 1.5, low=0.0, high=10.0),
    Param("check", False, changes=EXECUTION),
)


@pytest.fixture
def plugin(tmp_path) -> str:
    path = tmp_path / "tunable.py"
    path.write_text(PLUGIN)
    return f"{path}:Tunable"


def test_values_typed_from_text_and_checked_against_their_declaration():
    given = Given.read(["rows=32", "mode=slow", "scale=2", "check=yes"])
    assert given.values("w", PARAMS) == {"rows": 32, "mode": "slow", "scale": 2.0, "check": True}
    assert resolve(PARAMS, {}) == {"rows": 8, "mode": "fast", "scale": 1.5, "check": False}
    work, execution = split(PARAMS, resolve(PARAMS, {"rows": 3}))
    assert work == {"rows": 3, "scale": 1.5} and execution == {"check": False, "mode": "fast"}


@pytest.mark.parametrize(
    ("item", "says"),
    [
        ("rows=0", "parameter rows must be 1 or more (from 1 to 64), not 0"),
        ("rows=65", "64 or less"),
        ("rows=2.5", "rows=2.5: not a whole number (1 to 64)"),
        ("rows=", "not a whole number"),
        ("mode=medium", "parameter mode=medium: one of fast | slow"),
        ("scale=nan", "finite"),
        ("check=maybe", "not true or false (true | false)"),
        ("colour=red", "unknown parameter 'colour' (w takes check, mode, rows, scale)"),
        ("=3", "expected NAME=VALUE"),
        ("rows", "expected NAME=VALUE"),
    ],
)
def test_a_bad_name_or_value_is_one_line_naming_it(item, says):
    with pytest.raises(UserError) as caught:
        given = Given.read([item])
        given.check_names({"w": PARAMS})
        given.values("w", PARAMS)
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_a_toml_file_gives_common_and_per_workload_values_and_set_wins(tmp_path):
    file = tmp_path / "p.toml"
    file.write_text('rows = 4\nmode = "slow"\n[w]\nscale = 3\n')
    given = Given.read(["w.rows=5"], str(file))
    assert given.values("w", PARAMS) == {"rows": 5, "mode": "slow", "scale": 3.0, "check": False}
    file.write_text("rows = 'four'\n")
    with pytest.raises(UserError, match="rows='four': not a whole number"):
        Given.read([], str(file)).values("w", PARAMS)
    file.write_text("rows = \n")
    with pytest.raises(UserError, match="not TOML"):
        Given.read([], str(file))
    with pytest.raises(UserError, match="no such file"):
        Given.read([], str(tmp_path / "missing.toml"))


def test_a_declaration_without_range_or_with_a_bad_default_is_refused():
    with pytest.raises(UserError, match="give it a range or choices"):
        Param("n", 3)
    with pytest.raises(UserError, match=re.escape("one of a | b")):
        Param("s", "c", choices=("a", "b"))
    with pytest.raises(UserError, match="changes work or execution"):
        Param("s", "a", changes="both")


def test_plan_refuses_a_parameter_no_workload_of_the_run_takes(plugin):
    template = RunConfig(workload="")
    (config,) = plan([plugin], template, Given.read(["rows=16"]))
    assert config.params["rows"] == 16 and config.params["mode"] == "fast"
    with pytest.raises(UserError, match="unknown parameter 'depth'"):
        plan([plugin], template, Given.read(["depth=2"]))
    with pytest.raises(UserError, match="workload 'rag', which this run does not run"):
        plan([plugin], template, Given.read(["rag.rows=2"]))
    with pytest.raises(UserError, match="--threads must be 1 or more"):
        RunConfig(workload="", threads=0)


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_values_reach_the_workload_and_the_set_under_work_or_execution(plugin, tmp_path, capsys):
    results = str(tmp_path / "results")
    status, out, err = _run(
        capsys, "run", plugin, *FAST, "--results", results, "--set", "rows=16",
        "--set", "mode=slow", "--threads", "1", "--json",
    )  # fmt: skip
    assert status == 0, err
    (summary,) = json.loads(out)
    work, execution = summary["config"]["work"], summary["config"]["execution"]
    assert work["params"] == {"rows": 16, "scale": 1.5}
    assert execution["params"] == {"check": False, "mode": "slow"}
    assert execution["threads"] == 1 and execution["thread_variables"]["OMP_NUM_THREADS"] == "1"
    loaded = Archive(results).load(summary["id"])
    assert loaded.manifest.work.digest_holds
    assert loaded.manifest.work.params == {"rows": 16, "scale": 1.5}


def test_compare_refuses_other_work_and_names_other_execution(plugin, tmp_path, capsys):
    results = str(tmp_path / "results")
    ids = []
    for extra in (["rows=16"], ["rows=16", "mode=slow"], ["rows=17"]):
        sets = [a for v in extra for a in ("--set", v)]
        status, out, err = _run(capsys, "run", plugin, *FAST, "--results", results, *sets, "--json")
        assert status == 0, err
        ids.append(json.loads(out)[0]["id"])
    status, out, err = _run(capsys, "compare", ids[0], ids[1], "--results", results, "--json")
    assert status == 0, err
    assert "params.mode" in out
    status, _, err = _run(capsys, "compare", ids[0], ids[2], "--results", results)
    assert status == 2 and "different work (params.rows 16 -> 17" in err and err.count("\n") == 1


def test_bad_parameters_exit_2_before_any_work(plugin, tmp_path, capsys):
    results = tmp_path / "results"
    for argv in (["--set", "rows=99"], ["--set", "nope=1"], ["--params", "missing.toml"]):
        status, _, err = _run(capsys, "run", plugin, *FAST, "--results", str(results), *argv)
        assert status == 2 and err.count("\n") == 1, err
    assert not results.exists() or not any(Path(results).iterdir())


def test_workloads_lists_parameters(plugin, capsys, monkeypatch):
    from harness import plugins

    monkeypatch.setattr(plugins, "registered", lambda: {"tunable": plugin})
    status, out, _ = _run(capsys, "workloads", "--json")
    assert status == 0
    listed = json.loads(out)["tunable"]["params"]
    assert [p["name"] for p in listed] == ["rows", "mode", "scale", "check"]
    assert listed[1] == {
        "name": "mode",
        "type": "str",
        "default": "fast",
        "allowed": "fast | slow",
        "changes": "execution",
        "help": "how",
    }
    status, out, _ = _run(capsys, "workloads")
    assert "rows=8 (1 to 64; work)" in out


def test_without_threads_the_variables_the_user_set_stand(plugin, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    results = str(tmp_path / "results")
    status, out, err = _run(capsys, "run", plugin, *FAST, "--results", results, "--json")
    assert status == 0, err
    execution = json.loads(out)[0]["config"]["execution"]
    assert execution["thread_variables"]["OMP_NUM_THREADS"] == "1"
