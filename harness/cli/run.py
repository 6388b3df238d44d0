"""`gapbench run`: measure workloads on this machine and archive a result set each."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from harness import __version__
from harness.cli.capacity import (
    add_capacity,
    capacity_asked,
    capacity_length,
    capacity_load,
    run_capacity,
)
from harness.cli.load import add_load, add_slo, load_of, slo_of
from harness.cli.options import (
    add_archive,
    add_claim_sources,
    add_replay,
    add_verb,
    budget_of,
    claims_of,
    console,
    err,
    replay_sample_of,
)
from harness.errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    ArchivedThenInterrupted,
    UserError,
    WorkloadFailed,
    number,
    say_error,
)
from harness.machine.devices import DEVICES
from harness.machine.threads import THREADS
from harness.measure.config import QUICK_CAP, TIMEOUT_S
from harness.record.gpu_timing import MODES, SYNC
from harness.workload import BACKENDS

if TYPE_CHECKING:
    from harness.archive.result_set import ResultSet


def cmd_run(args: argparse.Namespace) -> int:
    from harness.analysis.summary import summarize
    from harness.archive.codec import to_dict
    from harness.archive.store import Archive
    from harness.machine.fingerprint import detect
    from harness.measure.config import (
        RunConfig,
        default_timeout,
        exit_status,
        parse_providers,
        plan,
        run_length,
    )
    from harness.measure.replicates import run
    from harness.params import Given
    from harness.projection.answer import answer
    from harness.projection.serialisation import losses
    from harness.report import terminal

    capacity = capacity_asked(args)
    size = "quick" if args.quick else "default"
    length = run_length(size, args.warmup, args.min_requests, args.min_duration)
    if capacity:
        length = capacity_length(args, length)
    template = RunConfig(
        workload="",
        device=args.device,
        size=size,
        seed=args.seed,
        repeat=args.repeat,
        measurement=length,
        show_progress=not args.no_progress,
        gpu_timing=args.gpu_timing,
        profile=args.profile,
        backend=args.backend,
        providers=parse_providers(args.providers),
        threads=args.threads,
        timeout_s=default_timeout(length) if args.timeout is None else args.timeout,
        load=capacity_load(args) if capacity else load_of(args),
    )
    given = Given.read(args.set, args.params)
    sample = replay_sample_of(args)
    budget_of(args)  # checked now, not after minutes of measuring
    slo = slo_of(args)
    claims = claims_of(args, required=False, threads=False)  # read before any work
    # Every name, option and parameter checked before any work.
    configs = plan(args.workloads, template, given)
    archive = Archive(args.results).ensure()
    fingerprint = detect()
    cpu = fingerprint.host.host_processor_model_name
    if sys.stderr.isatty():  # for a person watching; a script's stderr keeps only errors
        err().print(f"gapbench {__version__}: {cpu}; archive {archive.location}", style="dim")
    if capacity:
        return run_capacity(args, configs[0], archive, fingerprint)
    reports: list[dict] = []
    status = failing = 0
    for config in configs:
        try:
            result = run(config, archive, fingerprint)
        except ArchivedThenInterrupted as exc:
            print(f"gapbench: interrupted: {exc.set_id} is archived", file=sys.stderr)
            return EXIT_INTERRUPTED
        except KeyboardInterrupt:
            from harness import plugins

            name = plugins.load(config.workload).name
            print(
                f"gapbench: interrupted before {name} measured a request: nothing of it "
                "was archived",
                file=sys.stderr,
            )
            return EXIT_INTERRUPTED
        except WorkloadFailed as exc:  # recorded in the archive; the suite goes on
            failing = max(failing, EXIT_FAILED)
            reports.append({"failed": exc.reason, "recorded_as": exc.recorded_as})
            say_error(f"{exc.reason} (recorded as {exc.recorded_as})")
            continue
        try:
            summary = summarize(result, _judgeable(result, slo))
            said = answer(result, claims)
            found = losses(result, sample, budget_of(args))  # each set its own budget
        except UserError as exc:  # the set is archived: say so, and go on with the suite
            failing = max(failing, EXIT_BAD_INPUT)
            reports.append({"set": result.id, "error": str(exc)})
            say_error(f"{exc} (archived as {result.id}; see gapbench show --help)")
            continue
        except KeyboardInterrupt:  # while its report was being made: the set is kept
            print(f"gapbench: interrupted: {result.id} is archived", file=sys.stderr)
            return EXIT_INTERRUPTED
        reports.append(
            {**summary.to_dict(), "answer": to_dict(said), "serialisation": found.to_dict()}
        )
        if not args.json:
            console(args.wide).print(terminal.summary(summary, said, found))
        stopped = result.manifest.stopped_by
        if stopped and stopped != "interrupted":
            failing = max(failing, exit_status(stopped))
            kept = f"what finished is archived as {result.id}"
            say_error(f"{stopped} ({kept})")
        elif stopped:
            status = exit_status(stopped)
            print(
                f"gapbench: interrupted: what finished is archived as {result.id}", file=sys.stderr
            )
            break  # Ctrl-C stops the suite too
        # Archived, but nothing to show for it, or invalid for what the workload did (not for
        # noise or the machine's load, which a quiet machine mends): say so to scripts.
        broken = summary.verdict.broken
        if summary.end_to_end.n == 0:
            failing = max(failing, EXIT_FAILED)
            say_error(f"no request of {result.id} succeeded")
        elif broken and not stopped:
            failing = max(failing, EXIT_FAILED)
            say_error(f"{result.id} is invalid: {broken[0]}")
    status = status or failing
    if args.json:
        json.dump(reports, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
    return status


def _judgeable(result: ResultSet, slo: dict[str, float] | None) -> dict[str, float] | None:
    """The objectives a just-measured set can be judged by: token objectives on a workload
    that marks no tokens are left out, said in a note, rather than fail a finished run."""
    from harness.analysis.generation import marks_tokens

    if not slo or marks_tokens(result):
        return slo
    kept = {name: bound for name, bound in slo.items() if name == "e2e"}
    left = ", ".join(sorted(set(slo) - set(kept)))
    if left:
        err().print(
            f"gapbench: note: {result.id} marks no output tokens: --slo {left} left out",
            style="yellow",
        )
    return kept or None


def register(verbs: argparse._SubParsersAction) -> None:
    run = add_verb(
        verbs, "run", cmd_run, "Run workloads on this machine and archive a result set each."
    )
    run.add_argument(
        "workloads",
        nargs="*",
        metavar="WORKLOAD",
        help="registered name, module:Class or path/to/file.py:Class (default: the suite, "
        "every registered workload that is a pipeline a buyer runs: of the built-in ones, "
        "agent, batch-inference and rag; calibration and branches check gapbench itself and "
        "run only when named)",
    )
    run.add_argument(
        "--quick",
        action="store_true",
        help=(
            "small sizes and short measurement: 3 s, at least 64 and at most "
            f"{QUICK_CAP:,} requests (more only if --min-requests asks)"
        ),
    )
    run.add_argument(
        "--device",
        choices=DEVICES,
        default="auto",
        help="where the model stages run (default auto: a CUDA GPU when torch sees one)",
    )
    run.add_argument(
        "--seed", type=int, default=0, help="seed of every random choice (0 to 2^32-1)"
    )
    run.add_argument(
        "--gpu-timing",
        choices=MODES,
        default=SYNC,
        help="on CUDA: synchronize at probe edges, or time kernels with CUDA events",
    )
    run.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="K",
        help="K separate processes (replicates) into one result set (1 to 100)",
    )
    run.add_argument(
        "--warmup", type=int, metavar="N", help="warm-up requests, discarded (0 to 100000)"
    )
    run.add_argument(
        "--min-requests", type=int, metavar="N", help="measure at least N requests (1 to 10^7)"
    )
    run.add_argument(
        "--min-duration", type=float, metavar="S", help="and at least S seconds (0 to 86400)"
    )
    run.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help=f"each workload runs in a process of its own, stopped after S seconds "
        f"({number(TIMEOUT_S[0])} to {number(TIMEOUT_S[1])}; default: the measurement's "
        "safety stop plus 30 minutes); one that crashes, hangs or runs out of memory is "
        "recorded in the archive as failed, with why, and the others go on",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument(
        "--profile",
        type=int,
        nargs="?",
        const=8,
        default=0,
        metavar="N",
        help="after the timed requests, N more under a profiler (default 8, up to 10000): "
        "torch.profiler, or onnxruntime's own with --backend onnxruntime; the trace is kept "
        "with the set and checked against gapbench's compute time",
    )
    run.add_argument(
        "--backend",
        choices=BACKENDS,
        default="torch",
        help="what runs the model stages (default torch); onnxruntime exports them once, "
        "cached on disk ($GAPBENCH_CACHE, else ~/.cache/gapbench)",
    )
    run.add_argument(
        "--providers",
        metavar="LIST",
        help="onnxruntime execution providers, comma-separated, in order of preference "
        "(default: the best this onnxruntime offers for --device)",
    )
    run.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help=f"intra-op threads of the model stages ({THREADS[0]} to {THREADS[1]}; default: "
        "what torch and the OMP_NUM_THREADS family of variables give, usually one per core); "
        "sets those variables for the run's processes too",
    )
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a workload parameter (`gapbench workloads` lists them); WORKLOAD.NAME=VALUE for "
        "one workload of several; repeatable, and over --params",
    )
    run.add_argument(
        "--params",
        metavar="FILE.toml",
        help="workload parameters from a TOML file: top-level keys for every workload that "
        "takes them, a [WORKLOAD] table for one",
    )
    add_load(run)
    add_capacity(run)
    add_slo(run)
    add_replay(run)
    add_claim_sources(run)
    add_archive(run)
