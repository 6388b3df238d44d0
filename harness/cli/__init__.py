"""The `gapbench` command line: a thin table of verbs over the library."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from rich.console import Console

from harness import __version__
from harness.cli.projection import add_verbs
from harness.machine.devices import DEVICES
from harness.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, UserError
from harness.record.gpu_timing import MODES, SYNC
from harness.workload import BACKENDS


class _Parser(argparse.ArgumentParser):
    """argparse, but bad usage is one line on stderr (and exit 2), not a usage dump."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see {self.prog} --help)")


def _console() -> Console:
    # Tables are wide; a pipe's default 80 columns would wrap every row.
    console = Console()
    return console if console.is_terminal else Console(width=132)


def _out(args: argparse.Namespace, payload: Any, renderable: Callable[[], Any]) -> None:
    if args.json:
        json.dump(payload, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
    else:
        _console().print(renderable())


def cmd_detect(args: argparse.Namespace) -> int:
    from harness.machine import fingerprint as hardware
    from harness.report import terminal as render

    started = time.perf_counter()
    fingerprint = hardware.detect().to_dict()
    took = time.perf_counter() - started
    if not args.json:
        Console(stderr=True).print(f"detected in {took:.2f} s", style="dim")
    _out(args, fingerprint, lambda: render.detect(fingerprint))
    return 0


def cmd_workloads(args: argparse.Namespace) -> int:
    from harness import plugins
    from harness.report import terminal as render

    found = {}
    for name, ref in plugins.registered().items():
        try:
            cls = plugins.load(name)
        except UserError as exc:  # one broken plugin must not hide the others
            found[name] = {"ref": ref, "description": f"broken: {exc}", "stages": []}
            continue
        stages = [s.to_dict() for s in cls.stages]
        found[name] = {"ref": ref, "description": cls.description, "stages": stages}
    _out(args, found, lambda: render.workloads(found))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from harness import plugins
    from harness.machine import fingerprint as hardware
    from harness.report import terminal as render
    from harness.machine.devices import resolve_device
    from harness.measure.replicates import RunConfig, check_backend, run
    from harness.measure.process import Measurement
    from harness.archive.store import Archive
    from harness.analysis.summary import summarize

    size = "quick" if args.quick else "default"
    base = Measurement.for_size(size)
    measurement = Measurement(
        warmup=base.warmup if args.warmup is None else args.warmup,
        min_requests=base.min_requests if args.min_requests is None else args.min_requests,
        min_duration_s=base.min_duration_s if args.min_duration is None else args.min_duration,
        max_duration_s=base.max_duration_s,
    )
    if measurement.warmup < 0 or measurement.min_requests < 1 or measurement.min_duration_s < 0:
        raise UserError("--warmup must be >= 0, --min-requests >= 1, --min-duration >= 0")
    names = args.workloads or plugins.suite()
    # Refuse bad input before spending minutes (or a hardware scan) on the good part of it.
    configs = [
        RunConfig(
            workload=name,
            device=args.device,
            size=size,
            seed=args.seed,
            repeat=args.repeat,
            measurement=measurement,
            show_progress=not args.no_progress,
            gpu_timing=args.gpu_timing,
            profile=args.profile,
            backend=args.backend,
            providers=tuple(p.strip() for p in args.providers.split(",") if p.strip())
            if args.providers
            else (),
        )
        for name in names
    ]
    for config in configs:
        check_backend(plugins.load(config.workload), config.backend)
    device = resolve_device(args.device)
    if args.backend == "onnxruntime":
        from harness.backends.ort import choose_providers

        choose_providers(device, configs[0].providers if configs else ())
    archive = Archive(args.results)
    err = Console(stderr=True)
    fingerprint = hardware.detect().to_dict()
    cpu = fingerprint["host"]["host_processor_model_name"]
    err.print(f"gapbench {__version__}: {cpu}; archive {archive.location}", style="dim")
    summaries = []
    status = 0
    for config in configs:
        result = run(config, archive, fingerprint)
        summary = summarize(result)
        summaries.append(summary)
        if not args.json:
            _console().print(render.summary(summary))
        stopped = result.manifest["stopped_by"]
        if stopped and stopped != "interrupted":
            err.print(f"gapbench: error: {stopped} (what finished is archived as {result.id})")
            status = EXIT_BAD_INPUT
            break
        if stopped:
            status = EXIT_INTERRUPTED
            break
    if args.json:
        json.dump([s.to_dict() for s in summaries], sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
    return status


def cmd_results(args: argparse.Namespace) -> int:
    from harness.report import terminal as render
    from harness.archive.store import Archive

    listings = Archive(args.results).list()
    payload = [
        {
            "id": e.id,
            "complete": bool(e.manifest and e.manifest.get("complete")),
            "manifest": e.manifest,
        }
        for e in listings
    ]
    _out(args, payload, lambda: render.results(listings))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from harness.report import terminal as render
    from harness.archive.store import load
    from harness.analysis.summary import summarize

    summaries = [summarize(load(ref, args.results)) for ref in args.result]
    if len(summaries) == 1:
        summary = summaries[0]
        _out(args, summary.to_dict(), lambda: render.summary(summary))
    else:
        payload = [s.to_dict() for s in summaries]
        _out(args, payload, lambda: render.side_by_side(summaries))
    return 0


def cmd_trace(args: argparse.Namespace) -> int:
    from harness.report import trace
    from harness.archive.store import load

    result = load(args.result, args.results)
    if args.format == "chrome":
        if not args.output or args.endpoint:
            raise UserError("gapbench trace: a Chrome/Perfetto trace needs -o FILE (no --endpoint)")
        count = trace.write_chrome(result, args.output)
        where = args.output
    else:
        count = trace.write_otel(result, path=args.output, endpoint=args.endpoint)
        where = args.output or args.endpoint or "the OTLP endpoint from the environment"
    payload = {"id": result.id, "format": args.format, "events": count, "written_to": where}
    _out(args, payload, lambda: f"{count} {args.format} events of {result.id} written to {where}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gapbench",
        description="Measure AI pipelines end to end and see where each request's time goes.",
    )
    parser.add_argument("--version", action="version", version=f"gapbench {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    verbs.required = True

    def verb(name: str, handler: Callable[[argparse.Namespace], int], text: str):
        sub = verbs.add_parser(name, help=text, description=text)
        sub.add_argument("--json", action="store_true", help="machine-readable output on stdout")
        sub.set_defaults(handler=handler)
        return sub

    def archive_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--results",
            metavar="PATH",
            default=None,
            help="archive: a path or fsspec URL (default: $GAPBENCH_RESULTS, else ./results)",
        )

    verb("detect", cmd_detect, "Show the hardware fingerprint and the environment checks.")
    verb("workloads", cmd_workloads, "List the workloads found, with their stages.")

    run = verb("run", cmd_run, "Run workloads on this machine and archive a result set each.")
    run.add_argument(
        "workloads",
        nargs="*",
        metavar="WORKLOAD",
        help="registered name, module:Class or path/to/file.py:Class (default: all registered)",
    )
    run.add_argument("--quick", action="store_true", help="small sizes and short measurement")
    run.add_argument("--device", choices=DEVICES, default="auto")
    run.add_argument("--seed", type=int, default=0, help="seed of every random choice")
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
        help="K separate processes (replicates) into one result set",
    )
    run.add_argument("--warmup", type=int, metavar="N", help="warm-up requests, discarded")
    run.add_argument("--min-requests", type=int, metavar="N", help="measure at least N requests")
    run.add_argument("--min-duration", type=float, metavar="S", help="and at least S seconds")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument(
        "--profile",
        type=int,
        nargs="?",
        const=8,
        default=0,
        metavar="N",
        help="after the timed requests, N more under a profiler (default 8): torch.profiler, "
        "or onnxruntime's own with --backend onnxruntime; the trace is kept with the set and "
        "checked against gapbench's compute time",
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
    archive_option(run)

    results = verb("results", cmd_results, "List the archived result sets, newest first.")
    archive_option(results)

    trace = verb(
        "trace",
        cmd_trace,
        "Write a set's intervals as a Perfetto/Chrome trace or as OpenTelemetry spans.",
    )
    trace.add_argument("result", metavar="RESULT", help="an id, a unique prefix, or 'latest'")
    trace.add_argument("-o", "--output", metavar="FILE", help="the file to write")
    trace.add_argument(
        "--format",
        choices=("chrome", "otel"),
        default="chrome",
        help="chrome: open in ui.perfetto.dev; otel: spans with the GenAI conventions",
    )
    trace.add_argument(
        "--endpoint", metavar="URL", help="otel only: send over OTLP/HTTP instead of to a file"
    )
    archive_option(trace)

    show = verb(
        "show",
        cmd_show,
        "Show the breakdown of an archived result set, or of several side by side.",
    )
    show.add_argument(
        "result",
        metavar="RESULT",
        nargs="+",
        help="an id, a unique prefix, 'latest', or a set's folder",
    )
    archive_option(show)
    add_verbs(verb, archive_option)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one verb; bad input is one line on stderr and exit status 2."""
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except UserError as exc:
        print(f"gapbench: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("gapbench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
