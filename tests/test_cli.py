"""The command line: the README's plugin end to end, JSON output, and one-line bad input."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from harness import plugins
from harness.archive.store import Archive
from harness.cli import main
from harness.errors import UserError

README = Path(__file__).resolve().parents[1] / "README.md"
FAST = ["--quick", "--min-requests", "20", "--min-duration", "0", "--warmup", "2", "--no-progress"]


@pytest.fixture(scope="module")
def plugin_file(tmp_path_factory) -> Path:
    """The README's minimal plugin, exactly as documented."""
    text = README.read_text()
    block = re.search(r"<!-- minimal-plugin -->\n```python\n(.*?)```", text, re.S)
    assert block, "README lost its minimal plugin"
    path = tmp_path_factory.mktemp("plugin") / "matmul_service.py"
    path.write_text(block.group(1))
    return path


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_readme_plugin_runs_archives_and_shows(plugin_file, tmp_path, capsys):
    results = str(tmp_path / "results")
    ref = f"{plugin_file}:MatmulService"
    status, out, err = run_cli(capsys, "run", ref, *FAST, "--results", results, "--json")
    assert status == 0, err
    (summary,) = json.loads(out)
    assert summary["workload"] == "matmul-service"
    assert summary["requests"] >= 20 and summary["errors"] == 0
    assert [s["stage"] for s in summary["stages"]][:3] == ["parse", "multiply", "respond"]
    assert summary["config"]["work"]["code_hash"]
    verdict = summary["verdict"]
    assert set(verdict["problems"]) <= set(verdict["busy"]), verdict  # a busy machine aside
    assert "faster" in summary["answer"]["sentence"]
    shares = sum(s["share"] for s in summary["stages"])
    assert shares == pytest.approx(1.0)

    status, out, _ = run_cli(capsys, "show", "latest", "--results", results, "--json")
    assert status == 0 and json.loads(out)["id"] == summary["id"]
    status, out, _ = run_cli(capsys, "show", summary["id"][:18], "--results", results)
    assert status == 0 and "per stage" in out and "multiply" in out
    assert " 1 process: " in out and "process(es)" not in out
    status, out, _ = run_cli(capsys, "results", "--results", results, "--json")
    assert [r["id"] for r in json.loads(out)] == [summary["id"]]


def test_replicates_run_in_separate_processes(plugin_file, tmp_path, capsys):
    results = str(tmp_path / "results")
    ref = f"{plugin_file}:MatmulService"
    status, out, err = run_cli(capsys, "run", ref, *FAST, "--repeat", "2", "--results", results)
    assert status == 0, err
    loaded = Archive(results).load("latest")
    assert sorted(loaded.requests["replicate"].unique()) == [0, 1]
    pids = {r.pid for r in loaded.manifest.replicates}
    assert len(pids) == 2
    assert "range over 2 replicates" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "no-such-workload"], "unknown workload 'no-such-workload'"),
        (["run", "--device", "tpu"], "invalid choice: 'tpu'"),
        (["run", "/nonexistent/plugin.py:X"], "does not exist"),
        (["run", "no_such_module_xyz:X"], "cannot import workload module"),
        (["show", "missing-set"], "no result set 'missing-set'"),
        (["run", "--repeat", "0", "rag"], "--repeat must be 1 or more"),
        pytest.param(
            ["run", "--device", "cuda", "rag"],
            "torch sees no CUDA device",
            marks=pytest.mark.skipif(_cuda(), reason="this machine has CUDA"),
        ),
        (["run", "harness.workload:Workload"], "has no name"),
        (["show", "x", "--results", "nosuchproto://x"], "cannot open the archive"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["run", "--backend", "tensorflow", "rag"], "invalid choice: 'tensorflow'"),
        (["run", "--providers", "CPUExecutionProvider", "rag"], "--backend onnxruntime only"),
        (
            ["run", "--backend", "onnxruntime", "--providers", "FooExecutionProvider", "rag"],
            "onnxruntime here has no FooExecutionProvider",
        ),
        (["run", "--backend", "onnxruntime", "calibration"], "runs on torch, not on onnxruntime"),
        (["--frob"], "unrecognized arguments: --frob (see gapbench --help)"),
        (["run", "--frob", "rag"], "unrecognized arguments: --frob (see gapbench run --help)"),
        ([], "give a verb"),
        (["run", "--repeat", "101", "rag"], "--repeat must be 100 or less"),
        (["run", "--min-duration", "-1", "rag"], "--min-duration must be 0 or more"),
        (["run", "--seed", "-3", "rag"], "--seed must be 0 or more"),
        (["project", "latest", "--speedup", "compute=5000"], "up to 1000, not 5000"),
        (["project", "latest", "--speedup", "compute=1e-9"], "from 0.001 up to 1000"),
        (["run", "--min-duration", "nan", "rag"], "--min-duration must be a finite number"),
        (["run", "--seed", "99999999999", "rag"], "4294967295 or less (from 0 to 4294967295)"),
        (["project", "latest", "--speedup", "compute=2", "--threads", "0"], "--threads must be"),
        (["trace", "latest"], "needs -o FILE"),
        (["trace", "latest", "-o", "t.json", "--endpoint", "x"], "goes with --format otel"),
        (["validate", "--only", "nothing"], "unknown condition 'nothing' (one of backend,"),
        (["run", "--backend", "onnxruntime", "--providers", " ,", "rag"], "name each provider"),
        (["project", "latest", "--claim", ""], "the claim file's path is empty"),
        (["run", "rag", "--params", ""], "--params: the file's path is empty"),
        (["project", "latest", "--speedup", "compute=abc"], "the factor 'abc' is not a number"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, capsys):
    if argv[:1] in (["run"], ["show"], ["project"], ["trace"]) and "--results" not in argv:
        argv = [*argv, "--results", str(tmp_path)]
    status, out, err = run_cli(capsys, *argv)
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("gapbench: error: ")
    assert message in err
    assert "Traceback" not in err + out


def test_plugin_file_that_fails_to_import_is_one_line(tmp_path, capsys):
    broken = tmp_path / "broken.py"
    broken.write_text("import not_a_real_module_abc\n")
    status, _, err = run_cli(capsys, "run", f"{broken}:X", "--results", str(tmp_path))
    assert status == 2 and "ModuleNotFoundError" in err and err.count("\n") == 1


def test_bad_input_loses_nothing_already_archived(plugin_file, tmp_path, capsys):
    results = str(tmp_path / "results")
    ref = f"{plugin_file}:MatmulService"
    assert run_cli(capsys, "run", ref, *FAST, "--results", results)[0] == 0
    before = Archive(results).ids()
    assert run_cli(capsys, "run", ref, "nope", *FAST, "--results", results)[0] == 2
    assert Archive(results).ids() == before


RESERVED_STAGE = """
from harness.workload import Stage, Workload


class NamesAStageWork(Workload):
    name = "names-a-stage-work"
    stages = (Stage("work", layer="inference"),)

    def work(self, ctx, payload):
        return payload
"""


def test_a_stage_that_would_replace_a_contract_method_is_refused(tmp_path, capsys):
    plugin = tmp_path / "reserved.py"
    plugin.write_text(RESERVED_STAGE)
    status, _, err = run_cli(capsys, "run", f"{plugin}:NamesAStageWork", "--results", str(tmp_path))
    assert status == 2 and err.count("\n") == 1
    assert "stage 'work' would replace Workload.work" in err


FAILING_PLUGIN = """
import sys

from harness.workload import Stage, Workload


class Fails(Workload):
    name = "fails"
    stages = (Stage("only", layer="inference"),)
    where = ""

    def setup(self, ctx):
        if self.where == "setup":
            raise ValueError("setup broke")

    def requests(self, ctx):
        return [1, 2]

    def only(self, ctx, payload):
        if self.where == "exit":
            sys.exit(3)
        raise ValueError("stage broke")


class FailsInSetup(Fails):
    where = "setup"


class SaysNothing(Fails):
    def execution(self):
        return None


class FailsInTeardown(Fails):
    def only(self, ctx, payload):
        return payload

    def teardown(self):
        raise RuntimeError("teardown broke")


class Exits(Fails):
    where = "exit"


class FailsOften(Fails):
    calls = 0

    def only(self, ctx, payload):
        self.calls += 1
        if self.calls % 3 == 0:  # past the first requests, a third fail: over the error rate
            raise ValueError("every third broke")
        return payload
"""


def test_a_failing_plugin_is_named_in_one_line_or_in_the_verdict(tmp_path, capsys):
    plugin = tmp_path / "fails.py"
    plugin.write_text(FAILING_PLUGIN)
    results = str(tmp_path / "results")
    # The workload failed, not the command (exit 1), and the archive keeps why.
    status, out, err = run_cli(capsys, "run", f"{plugin}:FailsInSetup", *FAST, "--results", results)
    assert status == 1 and err.count("\n") == 1 and "Traceback" not in out + err
    assert "workload 'fails': setup: ValueError: setup broke at fails.py:" in err
    assert "(recorded as " in err and Archive(results).listings()[0].failed is not None
    status, _, err = run_cli(capsys, "run", f"{plugin}:SaysNothing", *FAST, "--results", results)
    assert status == 1 and "execution() returned None, not a dict" in err
    status, out, err = run_cli(
        capsys, "run", f"{plugin}:FailsInTeardown", *FAST, "--results", results, "--json"
    )
    assert status == 0, err
    (summary,) = json.loads(out)
    assert summary["requests"] == 20 and summary["errors"] == 0  # what it measured is kept
    assert any("teardown: RuntimeError: teardown broke" in n for n in summary["verdict"]["notes"])
    for name, said in (
        ("Fails", "only: ValueError: stage broke at fails.py:"),
        ("Exits", "SystemExit"),
    ):
        # FAST asks for 20 requests; with more asked for, the first 20 failing stop it.
        status, out, err = run_cli(
            capsys, "run", f"{plugin}:{name}", *FAST, "--min-requests", "500",
            "--results", results, "--json",
        )  # fmt: skip
        assert status == 1 and "no request of" in err and "succeeded" in err
        (summary,) = json.loads(out)
        problem = summary["verdict"]["problems"][0]
        assert problem.startswith("20 of 20 requests failed (100.0%); most often: ")
        assert said in problem and "(x20)" in problem
        assert "its first requests all failed" in " ".join(summary["verdict"]["problems"])
    status, _, err = run_cli(capsys, "run", f"{plugin}:FailsOften", *FAST, "--results", results)
    assert status == 1 and err.count("\n") == 1, err  # archived, and invalid: said to scripts
    assert "is invalid: " in err and "requests failed" in err and "every third broke" in err


def test_debug_gives_the_traceback_behind_the_line(tmp_path, capfd):
    plugin = tmp_path / "fails.py"
    plugin.write_text(FAILING_PLUGIN)
    argv = ["run", f"{plugin}:FailsInSetup", *FAST, "--results", str(tmp_path / "results")]
    status = main(["--debug", *argv])
    err = capfd.readouterr().err  # the worker process's stderr as well as this one's
    assert status == 1 and "Traceback" in err and "ValueError: setup broke" in err
    assert err.strip().splitlines()[-1].startswith("gapbench: error: workload 'fails': setup")
    assert "GAPBENCH_DEBUG" not in os.environ  # as it was before main()
    assert main(argv) == 1 and "Traceback" not in capfd.readouterr().err


def test_registered_workloads_are_found():
    assert "rag" in plugins.registered()
    with pytest.raises(UserError, match="not a gapbench Workload"):
        plugins.load("json:JSONDecoder")


def test_workloads_lists_stages(capsys):
    status, out, _ = run_cli(capsys, "workloads", "--json")
    assert status == 0
    rag = json.loads(out)["rag"]
    assert rag["ref"] == "workloads.rag:Rag"
    assert rag["stages"][0]["layer"] == "ingress"


INTERRUPTED_PLUGIN = """
from harness.workload import Stage, Workload


class StopsAtFive(Workload):
    name = "stops-at-five"
    stages = (Stage("only", layer="inference"),)

    def requests(self, ctx):
        return list(range(10))

    def only(self, ctx, n):
        if n == 5:
            raise KeyboardInterrupt  # as Ctrl-C would, in the middle of a request
        with ctx.compute():
            return n
"""


def test_interrupted_run_is_archived_as_incomplete(tmp_path, capsys):
    path = tmp_path / "stops.py"
    path.write_text(INTERRUPTED_PLUGIN)
    results = str(tmp_path / "results")
    argv = ["run", f"{path}:StopsAtFive", "--warmup", "0", "--no-progress", "--results", results]
    status, out, _ = run_cli(capsys, *argv)
    assert status == 130
    loaded = Archive(results).load("latest")
    assert loaded.manifest.complete is False and loaded.manifest.interrupted is True
    assert list(loaded.requests["request"]) == [0, 1, 2, 3, 4]
    assert "incomplete" in out


def test_interrupt_during_warm_up_archives_an_empty_incomplete_set(tmp_path, capsys):
    path = tmp_path / "stops.py"
    path.write_text(INTERRUPTED_PLUGIN)
    results = str(tmp_path / "results")
    argv = ["run", f"{path}:StopsAtFive", "--warmup", "8", "--no-progress", "--results", results]
    status, out, err = run_cli(capsys, *argv)
    assert status == 130, err
    loaded = Archive(results).load("latest")
    assert loaded.manifest.complete is False and len(loaded.requests) == 0
    assert "nothing to project" in out


SECOND_SETUP_INTERRUPTED = """
import os
from pathlib import Path

from harness.workload import Stage, Workload


class SecondSetupStops(Workload):
    name = "second-setup-stops"
    stages = (Stage("only", layer="inference"),)

    def setup(self, ctx):
        counter = Path(os.environ["GAPBENCH_TEST_COUNTER"])
        count = int(counter.read_text() or 0) + 1 if counter.exists() else 1
        counter.write_text(str(count))
        if count == 2:
            raise KeyboardInterrupt  # Ctrl-C while the second replicate sets up

    def requests(self, ctx):
        return [1, 2, 3]

    def only(self, ctx, n):
        with ctx.compute():
            return n
"""


def test_an_interrupted_replicate_keeps_the_finished_ones(tmp_path, capsys, monkeypatch):
    path = tmp_path / "second.py"
    path.write_text(SECOND_SETUP_INTERRUPTED)
    monkeypatch.setenv("GAPBENCH_TEST_COUNTER", str(tmp_path / "counter"))
    results = str(tmp_path / "results")
    argv = ["run", f"{path}:SecondSetupStops", *FAST, "--repeat", "3", "--results", results]
    status, _, err = run_cli(capsys, *argv)
    assert status == 130, err
    loaded = Archive(results).load("latest")
    assert loaded.manifest.complete is False
    assert list(loaded.requests["replicate"].unique()) == [0]
    assert len(loaded.manifest.replicates) == 1


def test_the_default_suite_leaves_out_self_checks():
    assert "calibration" in plugins.registered()
    assert plugins.suite() == ["agent", "batch-inference", "rag"]


def test_trace_writes_a_perfetto_file(plugin_file, tmp_path, capsys):
    results = str(tmp_path / "results")
    assert (
        run_cli(capsys, "run", f"{plugin_file}:MatmulService", *FAST, "--results", results)[0] == 0
    )
    out_file = tmp_path / "trace.json"
    argv = ["trace", "latest", "-o", str(out_file), "--results", results, "--json"]
    status, out, err = run_cli(capsys, *argv)
    assert status == 0, err
    written = json.loads(out)
    events = [e for e in json.loads(out_file.read_text())["traceEvents"] if e["ph"] == "X"]
    assert written["events"] == len(events) == len(Archive(results).load("latest").intervals)
    status, _, err = run_cli(capsys, "trace", "latest", "--results", results)
    assert status == 2 and "needs -o FILE" in err
    # what exists is never replaced unasked: not an earlier trace, not a set's own manifest
    set_folder = Path(results) / written["id"]
    for existing in (out_file, set_folder / "manifest.json"):
        before = existing.read_bytes()
        status, _, err = run_cli(
            capsys, "trace", "latest", "-o", str(existing), "--results", results
        )
        said = "inside the archive" if existing.parent == set_folder else "exists"
        assert status == 2 and said in err and existing.read_bytes() == before
    assert run_cli(capsys, *argv, "--force")[0] == 0


def test_project_and_compare_from_the_command_line(plugin_file, tmp_path, capsys):
    results = str(tmp_path / "results")
    ref = f"{plugin_file}:MatmulService"
    ids = []
    for seed in ("0", "0", "1"):
        argv = ["run", ref, *FAST, "--seed", seed, "--repeat", "3", "--results", results, "--json"]
        status, out, err = run_cli(capsys, *argv)
        assert status == 0, err
        ids.append(json.loads(out)[0]["id"])
    base, again, other = ids
    # the same work twice: compared with an interval over replicates
    status, out, err = run_cli(capsys, "compare", base, again, "--results", results, "--json")
    assert status == 0, err
    compared = json.loads(out)["candidates"][0]
    assert compared["end_to_end"]["interval"] is not None
    assert {"base", "candidate"} == set(compared["verdicts"])
    # other work is refused, in one line; side by side it is flagged
    status, out, err = run_cli(capsys, "compare", base, other, "--results", results)
    assert status == 2 and "were given different work (seed" in err and err.count("\n") == 1
    status, out, err = run_cli(capsys, "show", base, other, "--results", results)
    assert status == 0 and "not comparable" in out
    # a projection is printed and kept beside the set
    argv = ["project", base, "--speedup", "host-cpu.compute=2", "--results", results]
    status, out, err = run_cli(capsys, *argv)
    assert status == 0, err
    assert "which key applied" in out and "of the claimed gain survives" in out
    assert len(Archive(results).projections(base)) == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('name = "x"\n[speedup]\n"host-gpu" = 2\n', "key 'host-gpu': 'host-gpu' is not a resource"),
        (
            'name = "x"\n[speedup]\n"compute" = -1\n',
            "key 'compute': a speedup must be a positive",
        ),
        ('name = "x"\n[speedup]\n"layer/compute" = 2\n', "key 'layer/compute': a scope is"),
        ('[speedup]\n"compute" = 2\n', "key 'name': every claim needs a name"),
        ('name = "x"\nspeed = 2\n', "key 'speed': not a claim field"),
        ("name = [", "not valid TOML"),
        ('name = 5\n[speedup]\n"compute" = 2\n', "key 'name': a name is a non-empty string"),
        ('name = "x"\n[speedup]\n', "no speedups: give at least one KEY = factor"),
        ('name = "x"\n', "no [speedup] table"),
        ('name = "x"\ndate = "soon"\n[speedup]\n"compute" = 2\n', "key 'date': a date such as"),
    ],
)
def test_a_malformed_claim_names_its_file_and_key(body, message, tmp_path, capsys):
    claim = tmp_path / "claim.toml"
    claim.write_text(body)
    argv = ["project", "latest", "--claim", str(claim), "--results", str(tmp_path)]
    status, _, err = run_cli(capsys, *argv)
    assert status == 2 and err.count("\n") == 1
    assert str(claim) in err and message in err


def test_a_set_s_folder_names_it_everywhere_and_a_set_is_not_compared_with_itself(tmp_path, capsys):
    from conftest import RAG_SET

    folder = tmp_path / RAG_SET.name
    shutil.copytree(RAG_SET, folder)
    argv = ["project", str(folder), "--speedup", "host-cpu.compute=2", "--json"]
    status, out, err = run_cli(capsys, *argv)
    assert status == 0, err
    assert json.loads(out)[0]["set_id"] == RAG_SET.name
    assert len(Archive(tmp_path).projections(RAG_SET.name)) == 2  # kept beside the old one
    status, _, err = run_cli(capsys, "compare", str(folder), str(folder))
    assert status == 2 and "a set compared with itself says nothing" in err and err.count("\n") == 1


def test_plugins_written_against_the_earlier_contract_still_import():
    from harness.record.probes import Recorder
    from harness.workload import RunContext, SetupContext, StageContext

    assert RunContext is SetupContext
    ctx = StageContext(RunContext(), Recorder(0), "s", 0)
    assert ctx.run is ctx.setup


def test_results_of_an_archive_that_does_not_exist_says_so(tmp_path, capsys):
    status, _, err = run_cli(capsys, "results", "--results", str(tmp_path / "nowhere"))
    assert status == 2 and "there is no archive at" in err and err.count("\n") == 1
    broken = tmp_path / "broken" / "20260101T000000Z-vm-x-00000000"
    broken.mkdir(parents=True)
    (broken / "manifest.json").write_text("{not json")
    status, out, err = run_cli(capsys, "results", "--results", str(tmp_path / "broken"))
    assert status == 2 and "can be read" in err and "00000000" in out


def test_a_projection_that_cannot_be_kept_is_printed_and_a_broken_kept_one_is_left_out(
    tmp_path, capsys
):
    from conftest import ORT_SET, RAG_SET

    folder = tmp_path / RAG_SET.name
    shutil.copytree(RAG_SET, folder)
    shutil.rmtree(folder / "projections")
    (folder / "projections").write_text("not a folder")
    argv = ["project", str(folder), "--speedup", "host-cpu.compute=2"]
    status, out, err = run_cli(capsys, *argv)
    assert status == 2 and "could not be kept" in err and err.count("\n") == 1
    assert "host-cpu.compute=2" in out  # what was projected is printed all the same
    (folder / "projections").unlink()
    (folder / "projections").mkdir()
    (folder / "projections" / "broken.json").write_text("{not json")
    (kept_before,) = (RAG_SET / "projections").glob("*.json")
    (folder / "projections" / "ok.json").write_text(kept_before.read_text())
    problems: list[str] = []
    kept = Archive(tmp_path).projections(RAG_SET.name, problems)  # as compare reads them
    assert len(kept) == 1 and len(problems) == 1 and "broken.json is unreadable" in problems[0]
    status, out, err = run_cli(capsys, "compare", str(folder), str(ORT_SET))
    assert status == 0 and "broken.json" in err and "faster" in out, err  # noted, not fatal
    assert "broken.json is unreadable" in Archive(tmp_path).verify(RAG_SET.name)
    with pytest.raises(UserError, match=r"broken\.json"):
        Archive(tmp_path).projections(RAG_SET.name)


def test_rm_removes_sets_deliberately_and_nothing_else(tmp_path, capsys, monkeypatch):
    from conftest import ORT_SET, RAG_SET

    for kept in (RAG_SET, ORT_SET):
        shutil.copytree(kept, tmp_path / kept.name)
    results = str(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal: rm cannot ask
    status, _, err = run_cli(capsys, "rm", RAG_SET.name, "--results", results)
    assert status == 2 and "--yes" in err and (tmp_path / RAG_SET.name).exists()
    for bad in (["latest"], [RAG_SET.name, "nosuchset"]):
        status, _, err = run_cli(capsys, "rm", *bad, "--yes", "--results", results)
        assert status == 2 and err.count("\n") == 1
    assert (tmp_path / RAG_SET.name).exists()  # all named, or none removed
    status, out, err = run_cli(capsys, "rm", RAG_SET.name[:20], "--yes", "--results", results)
    assert status == 0 and f"removed {RAG_SET.name}" in out, err
    assert not (tmp_path / RAG_SET.name).exists()
    assert [s.id for s in Archive(results).listings()] == [ORT_SET.name]


def test_a_damaged_file_is_named_on_load_and_by_verify(plugin_file, tmp_path, capsys):
    from conftest import RAG_SET

    results = tmp_path / "results"
    argv = ["run", f"{plugin_file}:MatmulService", *FAST, "--results", str(results), "--json"]
    status, out, err = run_cli(capsys, *argv)
    assert status == 0, err
    set_id = json.loads(out)[0]["id"]
    shutil.copytree(RAG_SET, results / RAG_SET.name)  # older: no checksums, nothing to check
    status, out, err = run_cli(capsys, "verify", "--results", str(results), "--json")
    assert status == 0, err
    assert [r["ok"] for r in json.loads(out)] == [True, True]
    manifest = json.loads((results / set_id / "manifest.json").read_text())
    assert set(manifest["checksums"]) == set(manifest["tables"].values())
    requests = results / set_id / manifest["tables"]["requests"]
    requests.write_bytes(requests.read_bytes()[:-10])  # truncated
    status, _, err = run_cli(capsys, "show", set_id, "--results", str(results))
    assert status == 2 and "is damaged" in err and requests.name in err
    assert err.count("\n") == 1
    status, out, err = run_cli(capsys, "verify", "--results", str(results))
    assert status == 2 and "1 of 2 result sets are damaged" in err
    assert f"BAD  {set_id}" in out and f"ok   {RAG_SET.name}" in out
