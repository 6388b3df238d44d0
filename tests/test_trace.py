"""Trace export: a real run's intervals as Chrome/Perfetto JSON and as OpenTelemetry spans."""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections import Counter, defaultdict
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pandas as pd
import pytest
from conftest import live_fingerprint, make_manifest

from harness.archive.result_set import ResultSet
from harness.archive.schema import ClockAnchor, RunLength
from harness.archive.store import Archive
from harness.errors import UserError
from harness.measure.config import RunConfig
from harness.measure.replicates import run
from harness.report.otel import ENDPOINT_VARIABLES, write_otel
from harness.report.trace import clock_offsets, write_chrome
from harness.words import Kind
from harness.workload import Stage

# Sequential and parallel stages, fan-out branches on pool threads, and an async stage whose
# tasks interleave on one thread (their probes overlap partially): every shape a trace must draw.
PLUGIN = """
import asyncio
import json
import time

from harness.workload import Stage, Workload


class TraceDemo(Workload):
    name = "trace-demo"
    stages = (
        Stage("parse", layer="ingress"),
        Stage("embed", layer="inference", after=("parse",)),
        Stage("lookup", layer="tools", after=("parse",)),
        Stage("generate", layer="inference", after=("embed", "lookup")),
    )

    def requests(self, ctx):
        return [json.dumps({"id": i}).encode() for i in range(8)]

    def work(self):
        return {"model": "demo-lm"}

    def parse(self, ctx, payload):
        with ctx.movement(nbytes=len(payload), label="json.loads"):
            return json.loads(payload)

    def embed(self, ctx, request):
        with ctx.compute(label="encode"):
            return sum(i * i for i in range(5000)) + request["id"]

    def lookup(self, ctx, request):
        def call(n):
            with ctx.wait(label="tool server"):
                time.sleep(0.0005)
            return n

        return ctx.fan_out(call, range(3), label="tool calls")

    async def generate(self, ctx, vector, results):
        async def token(i):
            with ctx.compute(label="token"):
                await asyncio.sleep(0)
                return i

        return await ctx.gather(*(token(i) for i in range(3)))
"""


@pytest.fixture(scope="module")
def result(tmp_path_factory) -> ResultSet:
    """A small set measured for real (5 requests after one warm-up) and loaded back."""
    folder = tmp_path_factory.mktemp("trace")
    plugin = folder / "trace_demo.py"
    plugin.write_text(PLUGIN)
    measurement = RunLength(warmup=1, min_requests=5, min_duration_s=0)
    config = RunConfig(
        f"{plugin}:TraceDemo",
        device="cpu",
        size="quick",
        measurement=measurement,
        show_progress=False,
    )
    written = run(config, Archive(folder / "results"), fingerprint=live_fingerprint())
    return Archive(folder / "results").load(written.id)


@pytest.fixture(autouse=True)
def no_collector(monkeypatch):
    """No test may export to a collector configured in the environment."""
    for name in (*ENDPOINT_VARIABLES, "OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_TRACES_SAMPLER"):
        monkeypatch.delenv(name, raising=False)


def _ns(value_us: float) -> int:
    return round(value_us * 1000)


def test_chrome_trace_has_every_interval_at_its_recorded_time(result, tmp_path):
    path = tmp_path / "trace.json"
    count = write_chrome(result, path)
    document = json.loads(path.read_text())
    assert document["displayTimeUnit"] == "ms"
    assert document["otherData"]["result_set"] == result.id
    events = [e for e in document["traceEvents"] if e["ph"] == "X"]
    assert count == len(events) == len(result.intervals)

    # Each interval is one event at its own time: µs from the first interval, exact to the ns.
    offset = clock_offsets(result)[0]
    origin = int(result.intervals["start_ns"].min()) + offset
    expected = Counter(
        (
            row.request,
            row.kind,
            row.stage,
            row.start_ns + offset - origin,
            row.end_ns - row.start_ns,
        )
        for row in result.intervals.itertuples()
    )
    seen = Counter(
        (e["args"]["request"], e["args"]["kind"], e["args"]["stage"], _ns(e["ts"]), _ns(e["dur"]))
        for e in events
    )
    assert seen == expected
    assert min(_ns(e["ts"]) for e in events) == 0

    categories = {c for c in result.intervals["category"] if c}
    assert categories == {"compute", "movement", "scheduling"}
    assert {e["cat"] for e in events if e["args"]["category"]} == categories
    kinds = {e["args"]["kind"] for e in events}
    assert {"request", "stage", "probe", "wait", "branch", "slice"} <= kinds


def test_chrome_tracks_nest_and_are_named(result, tmp_path):
    path = tmp_path / "trace.json"
    write_chrome(result, path)
    document = json.loads(path.read_text())
    names = {
        (e["pid"], e["tid"]): e["args"]["name"]
        for e in document["traceEvents"]
        if e["ph"] == "M" and e["name"] == "thread_name"
    }
    tracks: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    for e in document["traceEvents"]:
        if e["ph"] == "X":
            assert (e["pid"], e["tid"]) in names
            start = _ns(e["ts"])
            tracks[(e["pid"], e["tid"])].append((start, start + _ns(e["dur"])))
    for key, spans in tracks.items():
        open_ends: list[int] = []
        for start, end in sorted(spans, key=lambda s: (s[0], -s[1])):
            while open_ends and open_ends[-1] <= start:
                open_ends.pop()
            assert not open_ends or end <= open_ends[-1], f"partial overlap on {names[key]}"
            open_ends.append(end)
    labels = set(names.values())
    assert "requests" in labels
    assert {label.split(" · ")[0] for label in labels} >= {"parse", "embed", "lookup", "generate"}
    # Branches run on the fan-out pool: the lookup stage has tracks on more than one thread.
    assert len({label for label in labels if label.startswith("lookup · thread")}) >= 2
    processes = [e for e in document["traceEvents"] if e.get("name") == "process_name"]
    assert [p["args"]["name"] for p in processes] == ["trace-demo · replicate 0"]


def _spans(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_otel_file_has_one_trace_per_request_with_stage_and_probe_parents(result, tmp_path):
    from opentelemetry import trace

    global_provider = trace.get_tracer_provider()
    path = tmp_path / "spans.jsonl"
    count = write_otel(result, path)
    assert trace.get_tracer_provider() is global_provider  # a private provider was used
    spans = _spans(path)
    intervals = result.intervals[result.intervals["kind"] != Kind.SLICE.value]
    assert count == len(spans) == len(intervals)

    by_id = {s["spanId"]: s for s in spans}
    traces: dict[str, list[dict]] = defaultdict(list)
    for span in spans:
        traces[span["traceId"]].append(span)
    assert len(traces) == len(result.requests)
    for members in traces.values():
        (root,) = [s for s in members if not s["parentSpanId"]]
        assert root["name"] == "trace-demo request"
        assert root["attributes"]["gapbench.kind"] == "request"
        request = root["attributes"]["gapbench.request"]
        stages = {s["name"]: s for s in members if s["attributes"]["gapbench.kind"] == "stage"}
        assert set(stages) == {"parse", "embed", "lookup", "generate"}
        for span in members:
            attributes = span["attributes"]
            assert attributes["gapbench.request"] == request
            assert attributes["gapbench.replicate"] == 0
            assert attributes["gapbench.result_set"] == result.id
            assert span["parentSpanId"] in ("", *by_id)
            if attributes["gapbench.kind"] == "stage":
                assert span["parentSpanId"] == root["spanId"]
                assert attributes["gapbench.layer"]
            if attributes["gapbench.kind"] in ("probe", "branch"):
                # Up the parents, the first stage reached is the probe's own.
                ancestor = by_id[span["parentSpanId"]]
                while ancestor["attributes"]["gapbench.kind"] != "stage":
                    ancestor = by_id[ancestor["parentSpanId"]]
                assert ancestor is stages[attributes["gapbench.stage"]]
                assert (
                    attributes.get("gapbench.category") or attributes["gapbench.kind"] == "branch"
                )
        for name in ("parse", "embed"):
            (probe,) = [s for s in members if s["parentSpanId"] == stages[name]["spanId"]]
            assert probe["name"] == {"parse": "json.loads", "embed": "encode"}[name]
        assert stages["parse"]["attributes"]["gapbench.layer"] == "ingress"
        loads = next(s for s in members if s["name"] == "json.loads")
        assert loads["attributes"]["gapbench.bytes"] > 0
        assert loads["attributes"]["gapbench.category"] == "movement"
        assert loads["attributes"]["gapbench.resource"] == "host-memory"
        assert stages["embed"]["attributes"]["gen_ai.operation.name"] == "embeddings"
        assert stages["embed"]["attributes"]["gen_ai.request.model"] == "demo-lm"
        assert stages["generate"]["attributes"]["gen_ai.operation.name"] == "text_completion"
        assert stages["lookup"]["attributes"]["gen_ai.operation.name"] == "execute_tool"
        assert stages["lookup"]["attributes"]["gen_ai.tool.name"] == "lookup"
        assert "gen_ai.operation.name" not in stages["parse"]["attributes"]

    # Span times are the recorded ns plus the replicate's clock anchor, exactly.
    offset = clock_offsets(result)[0]
    expected = Counter(
        (row.request, row.kind, row.start_ns + offset, row.end_ns + offset)
        for row in intervals.itertuples()
    )
    seen = Counter(
        (
            s["attributes"]["gapbench.request"],
            s["attributes"]["gapbench.kind"],
            s["startTimeUnixNano"],
            s["endTimeUnixNano"],
        )
        for s in spans
    )
    assert seen == expected


class _Receiver(BaseHTTPRequestHandler):
    """An OTLP/HTTP traces endpoint that keeps what it is sent."""

    received: ClassVar[list] = []

    def do_POST(self):  # the name http.server calls
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path != "/v1/traces":
            self.send_response(404)
            self.end_headers()
            return
        message = trace_service_pb2.ExportTraceServiceRequest()
        message.ParseFromString(body)
        self.received.append(message)
        reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    """A local OTLP/HTTP receiver on a free port, stopped when the test ends."""
    handler = type("Receiver", (_Receiver,), {"received": []})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _received_spans(messages) -> list:
    return [
        span
        for message in messages
        for resource_spans in message.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]


def test_otlp_http_export_reaches_a_receiver(result, receiver):
    url, received = receiver
    count = write_otel(result, endpoint=f"{url}/v1/traces")
    spans = _received_spans(received)
    assert count == len(spans) == int((result.intervals["kind"] != Kind.SLICE.value).sum())
    names = Counter(span.name for span in spans)
    assert names["trace-demo request"] == len(result.requests)
    assert names["generate"] == len(result.requests)
    assert len({span.trace_id for span in spans}) == len(result.requests)
    layers = {
        attribute.value.string_value
        for span in spans
        for attribute in span.attributes
        if attribute.key == "gapbench.layer"
    }
    assert layers == {"ingress", "inference", "tools"}
    service = received[0].resource_spans[0].resource.attributes
    assert any(a.key == "service.name" and a.value.string_value == "gapbench" for a in service)


def test_otlp_endpoint_from_the_environment_and_a_base_url(result, receiver, monkeypatch):
    url, received = receiver
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
    count = write_otel(result)
    assert count == len(_received_spans(received))
    received.clear()
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    assert write_otel(result, endpoint=url) == count == len(_received_spans(received))


def test_otel_without_a_target_or_the_sdk_is_one_clear_error(result, monkeypatch):
    with pytest.raises(UserError, match="OTLP/HTTP endpoint"):
        write_otel(result)
    with pytest.raises(UserError, match="not an OTLP/HTTP endpoint"):
        write_otel(result, endpoint="localhost:4318")
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace.export", None)
    with pytest.raises(UserError, match=r"pip install gapbench\[otel\]"):
        write_otel(result, "spans.jsonl")


def test_an_unreachable_collector_is_one_clear_error(result, monkeypatch):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "1")  # seconds: give up quickly
    url = f"http://127.0.0.1:{port}/v1/traces"
    with pytest.raises(UserError, match=f"exporting spans to {url} failed") as caught:
        write_otel(result, endpoint=url)
    assert "\n" not in str(caught.value)


def _device_set() -> ResultSet:
    """Hand-built: one request whose probes ran on a CUDA stream, in two replicates."""
    from conftest import interval

    from harness.archive.tables import intervals_frame
    from harness.record.gpu_timing import ANCHOR
    from harness.words import QUEUE_WAIT

    rows = [
        interval(Kind.REQUEST, 0, 100, span=9),
        interval(Kind.WAIT, 0, 5, stage="embed", label=QUEUE_WAIT, span=8),
        interval(Kind.STAGE, 5, 90, stage="embed", span=1),
        interval(Kind.PROBE, 10, 40, stage="embed", span=2, parent=1, category="compute",
                 resource="device", label="matmul"),
        interval(Kind.PROBE, 40, 50, stage="embed", span=3, parent=1, category="movement",
                 resource="link", label="d2h", nbytes=4096),
        # The device runs behind the host: the matmul ends after its probe did.
        interval(Kind.DEVICE, 15, 60, stage="embed", span=4, parent=2, category="compute",
                 resource="device", label="matmul", thread=0),
        interval(Kind.DEVICE, 60, 70, stage="embed", span=5, parent=3, category="movement",
                 resource="link", label="d2h", thread=0),
        interval(Kind.DEVICE, 95, 96, span=6, resource="device", label=ANCHOR),
    ]  # fmt: skip
    frame = intervals_frame(rows)
    intervals = pd.concat([frame.assign(replicate=0), frame.assign(replicate=1)])
    requests = pd.DataFrame({"replicate": [0, 1], "request": [0, 0], "error": ["", ""]})
    anchors = [ClockAnchor(0, 10**18), ClockAnchor(0, 10**18 + 500)]
    hand_built = make_manifest(
        (Stage("embed", "inference"),), workload="gpu-demo", work={"workload_config": {}}
    )
    facts = hand_built.replicates[0]
    manifest = replace(
        hand_built,
        replicates=tuple(
            replace(facts, replicate=i, clock_anchor=a) for i, a in enumerate(anchors)
        ),
    )
    return ResultSet.of(manifest, intervals.reset_index(drop=True), requests)


def test_device_work_gets_stream_tracks_and_hangs_under_its_probe(tmp_path):
    result = _device_set()
    assert write_chrome(result, tmp_path / "trace.json") == 16
    document = json.loads((tmp_path / "trace.json").read_text())
    names = {
        (e["pid"], e["tid"]): e["args"]["name"]
        for e in document["traceEvents"]
        if e.get("name") == "thread_name"
    }
    events = [e for e in document["traceEvents"] if e["ph"] == "X"]
    on_track = defaultdict(list)
    for e in events:
        on_track[(e["pid"], names[(e["pid"], e["tid"])])].append((e["name"], _ns(e["ts"])))
    assert on_track[(1, "device stream 0")] == [("matmul", 15), ("d2h", 60)]
    assert on_track[(1, "device anchors")] == [("clock anchor", 95)]
    assert on_track[(1, "requests")] == [("request 0", 0), ("queue wait", 0)]
    # The second replicate is its own process, 500 ns later on the wall clock.
    assert on_track[(2, "device stream 0")] == [("matmul", 515), ("d2h", 560)]

    spans = _spans_of(result, tmp_path / "spans.jsonl")
    assert len(spans) == 16  # no slices here: every interval is a span
    first = [s for s in spans if s["attributes"]["gapbench.replicate"] == 0]
    by_name = {s["name"]: s for s in first}
    assert by_name["device matmul"]["parentSpanId"] == by_name["matmul"]["spanId"]
    assert by_name["device d2h"]["parentSpanId"] == by_name["d2h"]["spanId"]
    assert by_name["d2h"]["attributes"]["gapbench.bytes"] == 4096
    assert by_name["device matmul"]["endTimeUnixNano"] == 10**18 + 60
    assert by_name["device clock anchor"]["parentSpanId"] == by_name["gpu-demo request"]["spanId"]
    assert by_name["embed"]["attributes"]["gen_ai.operation.name"] == "embeddings"
    assert "gen_ai.request.model" not in by_name["embed"]["attributes"]


def _spans_of(result: ResultSet, path) -> list[dict]:
    write_otel(result, path)
    return _spans(path)


@pytest.mark.parametrize("target", ["manifest.json", "intervals", "new.json"])
def test_a_trace_is_never_written_inside_the_archive(tmp_path, capsys, target):
    import shutil

    from conftest import RAG_SET

    from harness.cli import main

    archive = tmp_path / "results"
    folder = archive / RAG_SET.name
    shutil.copytree(RAG_SET, folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    if target == "intervals":
        target = next(name for name in before if name.startswith("intervals-"))
    code = main(
        ["trace", RAG_SET.name, "-o", str(folder / target), "--force", "--results", str(archive)]
    )
    assert code == 2 and "inside the archive" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before
    assert main(["trace", RAG_SET.name, "-o", str(tmp_path), "--results", str(archive)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_a_set_named_by_its_folder_keeps_only_its_folder_from_a_trace(tmp_path, capsys):
    import shutil

    from conftest import RAG_SET

    from harness.cli import main

    downloads = tmp_path / "downloads"  # where a set was put: no archive of sets
    folder = downloads / RAG_SET.name
    shutil.copytree(RAG_SET, folder)
    archive = tmp_path / "results"  # the archive the command names, elsewhere
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    for beside in (downloads / "trace.json", downloads / "traces" / "trace.json"):
        beside.parent.mkdir(exist_ok=True)
        assert main(["trace", str(folder), "-o", str(beside), "--results", str(archive)]) == 0
        assert beside.stat().st_size > 0
    capsys.readouterr()
    for inside in (folder / "trace.json", folder / "manifest.json"):
        code = main(["trace", str(folder), "-o", str(inside), "--force", "--results", str(archive)])
        err = capsys.readouterr().err
        assert code == 2 and "inside the result set folder" in err
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before
    # The archive the command names stays kept from, whichever way the set was named.
    archive.mkdir()
    code = main(["trace", str(folder), "-o", str(archive / "t.json"), "--results", str(archive)])
    assert code == 2 and "inside the archive" in capsys.readouterr().err
