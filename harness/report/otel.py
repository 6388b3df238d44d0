"""Export a result set's raw intervals as OpenTelemetry spans, with the GenAI conventions."""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from harness import __version__
from harness.archive.result_set import ResultSet
from harness.errors import UserError
from harness.record.probes import Interval
from harness.record.remote import conventions
from harness.report.trace import (
    COMPACT,
    clock_offsets,
    name_of,
    refuse_overwrite,
    replicate_intervals,
    write_text,
)
from harness.words import Kind

INSTALL_HINT = "pip install gapbench[otel]"
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
EXPORT_BATCH = 512  # spans per OTLP request, far below a collector's request size limit


def write_otel(
    result: ResultSet,
    path: str | os.PathLike | None = None,
    endpoint: str | None = None,
    overwrite: bool = False,
) -> int:
    """Export the set as OpenTelemetry spans, one trace per request; returns the span count.

    The request is the root span; its stages and waits are its children; probes and branches
    are children of the span open around them (else of their stage); device work is a child of
    its probe. Slices are left out: scheduling detail, not operations. Times are the recorded
    ns put on the Unix epoch by each replicate's clock anchor. ``path`` gets one span a line
    (see :func:`span_json`); ``endpoint`` (a collector's base URL or its traces URL) gets
    OTLP/HTTP, as does ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`` when neither is given.
    """
    try:
        from opentelemetry.sdk.trace.export import SpanExportResult
    except ImportError as exc:
        raise UserError(f"exporting OpenTelemetry spans needs its SDK: {INSTALL_HINT}") from exc
    if path is None and endpoint is None and any(os.environ.get(v) for v in ENDPOINT_VARIABLES):
        endpoint = ""  # the exporter reads the standard variables itself
    if path is None and endpoint is None:
        raise UserError("give a file for the spans or an OTLP/HTTP endpoint")
    refuse_overwrite(path, overwrite)
    if endpoint == "" and not any(os.environ.get(v) for v in ENDPOINT_VARIABLES):
        raise UserError(
            "no OTLP endpoint: give its URL, or set OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT"
        )
    exporter = None
    with _sdk_log() as log:
        try:
            exporter = None if endpoint is None else _otlp_exporter(endpoint)
            spans = _spans(result)
            if path is not None:
                write_text(
                    path,
                    "".join(json.dumps(span_json(s), separators=COMPACT) + "\n" for s in spans),
                )
            for at in range(0, len(spans), EXPORT_BATCH):
                if (
                    exporter is not None
                    and exporter.export(spans[at : at + EXPORT_BATCH]) != SpanExportResult.SUCCESS
                ):
                    # The first line names the cause (refused, 404); the last is generic.
                    said = f": {log[0].split(' encountered while')[0]}" if log else ""
                    raise UserError(f"exporting spans to {endpoint or 'OTLP'} failed{said}")
        finally:
            if exporter is not None:
                exporter.shutdown()
    return len(spans)


@contextmanager
def _sdk_log() -> Iterator[list[str]]:
    """Collect the SDK's log lines (an exporter retrying, then giving up) instead of printing
    them: a failure is then said once, in the UserError's one line."""
    logger, messages = logging.getLogger("opentelemetry"), []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _otlp_exporter(endpoint: str) -> Any:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise UserError(f"exporting over OTLP/HTTP needs its exporter: {INSTALL_HINT}") from exc
    if not endpoint:
        return OTLPSpanExporter()
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UserError(f"not an OTLP/HTTP endpoint: {endpoint!r} (e.g. http://localhost:4318)")
    if parts.path in ("", "/"):  # a collector's base URL, as in OTEL_EXPORTER_OTLP_ENDPOINT
        endpoint = endpoint.rstrip("/") + "/v1/traces"
    return OTLPSpanExporter(endpoint=endpoint)


def _spans(result: ResultSet) -> list[Any]:
    """Every span of the set, started and ended at explicit times under explicit parents."""
    from opentelemetry import trace
    from opentelemetry.context import Context
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON
    from opentelemetry.trace import Status, StatusCode

    manifest = result.manifest
    workload, layers = manifest.workload, {s.name: s.layer for s in manifest.stages}
    work = manifest.work.workload_config
    model = next((v for k in ("model", "model_name") if isinstance(v := work.get(k), str)), "")
    errors = result.requests.set_index(["replicate", "request"])["error"].to_dict()
    offsets = clock_offsets(result)
    # A private provider that samples everything, whatever OTEL_TRACES_SAMPLER says, into
    # memory: the spans are exported in batches afterwards, so none is dropped unseen.
    resource = Resource.create({"service.name": "gapbench", "gapbench.workload": workload})
    provider = TracerProvider(
        sampler=ALWAYS_ON, resource=resource, shutdown_on_exit=False, id_generator=_os_random_ids()
    )
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("gapbench", __version__)
    for replicate, intervals in replicate_intervals(result):
        if (offset := offsets.get(replicate)) is None:
            raise UserError(f"result set {result.id}: replicate {replicate} has no facts")
        by_request: dict[int, list[Interval]] = defaultdict(list)
        for iv in intervals:
            if iv.kind != Kind.SLICE.value:
                by_request[iv.request].append(iv)
        for request, members in by_request.items():
            members.sort(key=lambda iv: iv.kind != Kind.REQUEST.value)  # the root first
            if members[0].kind != Kind.REQUEST.value:
                continue  # a request that never finished: nothing to hang its spans on
            common: dict[str, Any] = {"gapbench.result_set": result.id}
            common["gapbench.replicate"] = replicate
            common["gapbench.request"] = request
            parents, spans = _parents(members), dict[int, Any]()
            for i in _parent_first(parents):
                iv, parent = members[i], parents[i]
                context = Context() if parent is None else trace.set_span_in_context(spans[parent])
                attributes = common | _attributes(iv, layers.get(iv.stage, ""), model)
                start = iv.start_ns + offset
                spans[i] = tracer.start_span(
                    name_of(iv, workload), context=context, start_time=start, attributes=attributes
                )
            if error := errors.get((replicate, request)):
                spans[0].set_status(Status(StatusCode.ERROR, str(error)))
            for i, iv in enumerate(members):
                spans[i].end(end_time=iv.end_ns + offset)
    provider.force_flush()
    finished = list(memory.get_finished_spans())
    provider.shutdown()
    return finished


def _os_random_ids() -> Any:
    """Ids from the OS's randomness: the SDK's default draws from ``random``, which the runner
    seeds, so every set exported in one process would repeat the same trace ids."""
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class OsRandomIds(RandomIdGenerator):
        def generate_span_id(self) -> int:
            return secrets.randbits(64) or 1

        def generate_trace_id(self) -> int:
            return secrets.randbits(128) or 1

    return OsRandomIds()


def _parents(members: Sequence[Interval]) -> list[int | None]:
    """Per interval, its parent's index: the span open around it, else its stage, else the
    request (``members[0]``, which has none)."""
    by_span = {iv.span: i for i, iv in enumerate(members)}
    stages = {iv.stage: i for i, iv in enumerate(members) if iv.kind == Kind.STAGE.value}
    parents: list[int | None] = [None]
    for i, iv in enumerate(members[1:], start=1):
        if by_span.get(iv.parent, i) != i:
            parents.append(by_span[iv.parent])
        elif iv.kind in (Kind.PROBE.value, Kind.BRANCH.value) and iv.stage in stages:
            parents.append(stages[iv.stage])
        else:
            parents.append(0)  # stages, the waits before them, the device clock anchor
    return parents


def _parent_first(parents: list[int | None]) -> list[int]:
    """Indices in an order where every parent comes before its children."""

    def depth(i: int) -> int:
        steps = 0
        while (parent := parents[i]) is not None and steps <= len(parents):
            i, steps = parent, steps + 1
        return steps

    return sorted(range(len(parents)), key=depth)


def _attributes(iv: Interval, layer: str, model: str) -> dict[str, Any]:
    """gapbench.* attributes, plus the GenAI semantic conventions on the stages they fit."""
    attributes: dict[str, Any] = {"gapbench.kind": iv.kind}
    if iv.stage:
        attributes |= {"gapbench.stage": iv.stage, "gapbench.layer": layer}
    for key, value in (("category", iv.category), ("resource", iv.resource), ("label", iv.label)):
        if value:
            attributes[f"gapbench.{key}"] = value
    if iv.nbytes:
        attributes["gapbench.bytes"] = iv.nbytes
    if iv.cpu_ns >= 0:
        attributes["gapbench.cpu_ns"] = iv.cpu_ns
    if iv.kind != Kind.STAGE.value:
        return attributes | conventions(iv.kind, iv.category, iv.resource, iv.label)
    name = iv.stage.lower()
    if layer == "tools":
        return attributes | {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": iv.stage}
    if layer == "inference" and ("embed" in name or "encode" in name):
        attributes["gen_ai.operation.name"] = "embeddings"
    elif layer == "inference" and ("generate" in name or "decode" in name):
        attributes["gen_ai.operation.name"] = "text_completion"
    if model and "gen_ai.operation.name" in attributes:
        attributes["gen_ai.request.model"] = model
    return attributes


def span_json(span: Any) -> dict[str, Any]:
    """A finished span as one line of ``write_otel``'s file: like OTLP/JSON, but flat.

    ``traceId`` (32 hex digits), ``spanId`` and ``parentSpanId`` (16; "" for a root), ``name``,
    ``kind`` ("INTERNAL"), ``startTimeUnixNano`` and ``endTimeUnixNano`` (integers),
    ``attributes`` and ``resource`` (plain objects, not OTLP's key/value lists), ``status``
    (``{"code": "UNSET" or "ERROR", "message": ...}``).
    """
    return {
        "traceId": f"{span.context.trace_id:032x}",
        "spanId": f"{span.context.span_id:016x}",
        "parentSpanId": f"{span.parent.span_id:016x}" if span.parent else "",
        "name": span.name,
        "kind": span.kind.name,
        "startTimeUnixNano": span.start_time,
        "endTimeUnixNano": span.end_time,
        "attributes": dict(span.attributes),
        "status": {"code": span.status.status_code.name, "message": span.status.description or ""},
        "resource": dict(span.resource.attributes),
    }
