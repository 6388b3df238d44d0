"""The micro-benchmarks behind ``gapbench calibrate``: what a vendor publishes (a large square
GEMM, STREAM), measured here, and the costs a pipeline pays around its math (an operator's
dispatch, JSON, a round trip to another process).

Each measure runs a warm-up, then ``repeats`` timed blocks; a block repeats the operation until
it has taken at least ``block_s``, so a fast operation is not timed at the clock's resolution.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from harness import __version__
from harness.machine import calibration as cal
from harness.machine.calibration import Calibration, Figure, GemmShape
from harness.machine.fingerprint import Fingerprint
from harness.machine.threads import threads as intra_op_threads


@dataclass(frozen=True)
class Effort:
    """How long each measure is given."""

    repeats: int
    block_s: float
    gemm_max_n: int  # the largest square GEMM tried while looking for the peak
    stream_bytes: int  # each STREAM array, well past the last-level cache
    round_trips: int

    @classmethod
    def of(cls, quick: bool) -> Effort:
        if quick:  # tests: the numbers are rough, the code paths are the same
            return cls(3, 0.02, 256, 8 << 20, 200)
        return cls(5, 0.2, 2048, 128 << 20, 2000)


def timed(operation: Callable[[], object], effort: Effort, sync: Callable[[], None]) -> list[float]:
    """Seconds per operation in each of ``effort.repeats`` blocks, after one warm-up block."""
    operation()
    sync()
    start = time.perf_counter()
    calls = 0
    while time.perf_counter() - start < effort.block_s / 4 or calls < 1:
        operation()
        calls += 1
    sync()
    per_call = (time.perf_counter() - start) / calls
    count = max(1, round(effort.block_s / max(per_call, 1e-9)))
    out = []
    for _ in range(effort.repeats):
        start = time.perf_counter()
        for _ in range(count):
            operation()
        sync()
        out.append((time.perf_counter() - start) / count)
    return out


def figure(measure: str, values: Sequence[float], **where: object) -> Figure:
    return Figure(
        measure,
        statistics.median(values),
        min(values),
        max(values),
        cal.UNITS[measure],
        len(values),
        **where,  # type: ignore[arg-type]
    )


def rate(measure: str, work: float, seconds: list[float], **where: object) -> Figure:
    """A throughput figure: ``work`` units per call over each block's time per call."""
    return figure(measure, [work / s for s in seconds], **where)


def _device_sync(device: str) -> Callable[[], None]:
    if device.startswith("cuda"):
        import torch

        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def gemm(shape: GemmShape, effort: Effort, device: str = "cpu") -> list[float]:
    import torch

    dtype = getattr(torch, shape.dtype)
    a = torch.randn(shape.m, shape.k, device=device).to(dtype)
    b = torch.randn(shape.k, shape.n, device=device).to(dtype)
    with torch.inference_mode():
        return timed(lambda: torch.mm(a, b), effort, _device_sync(device))


def peak_gemm(dtype: str, effort: Effort, device: str = "cpu", threads: int = 0) -> Figure:
    """The square GEMM's best rate over sizes doubling from 256 up to ``effort.gemm_max_n``
    (the size is kept beside it), stopping short of a size whose one call would outlast a
    block: an emulated dtype (bfloat16 on a CPU without it) is slow at every size."""
    best: Figure | None = None
    n = 256
    while n <= effort.gemm_max_n:
        shape = GemmShape(n, n, n, dtype)
        seconds = gemm(shape, effort, device)
        found = rate(
            cal.GEMM,
            shape.flops / 1e9,
            seconds,
            device=device,
            dtype=dtype,
            threads=threads,
            shape=shape.label,
        )
        if best is None or found.value > best.value:
            best = found
        n *= 2
        if 8 * shape.flops / 1e9 / found.value > effort.block_s:
            break
    assert best is not None
    return best


def stream(effort: Effort, device: str = "cpu", threads: int = 0) -> list[Figure]:
    """STREAM's copy and triad on float32 arrays of ``effort.stream_bytes`` each."""
    import torch

    n = effort.stream_bytes // 4
    a, b, c = (torch.rand(n, device=device) for _ in range(3))
    sync = _device_sync(device)
    copy = timed(lambda: a.copy_(b), effort, sync)
    triad = timed(lambda: torch.add(b, c, alpha=3.0, out=a), effort, sync)
    where = {"device": device, "dtype": "float32", "threads": threads}
    measure = cal.COPY if device == "cpu" else cal.DEVICE_COPY
    return [
        rate(measure, 2 * n * 4 / 1e9, copy, **where),
        *([rate(cal.TRIAD, 3 * n * 4 / 1e9, triad, **where)] if device == "cpu" else []),
    ]


def dispatch(effort: Effort, device: str = "cpu") -> Figure:
    """One operator on one-element tensors: the framework's cost of an operator with no work,
    the floor under every small operator of a pipeline."""
    import torch

    x, y = torch.ones(1, device=device), torch.ones(1, device=device)
    with torch.inference_mode():
        seconds = timed(lambda: torch.add(x, y), effort, lambda: None)
    return figure(cal.DISPATCH, [s * 1e6 for s in seconds], device=device, threads=1)


def host_device(effort: Effort, device: str) -> list[Figure]:
    """Copies between pinned host memory and the device, both ways."""
    import torch

    n = effort.stream_bytes
    host = torch.empty(n, dtype=torch.uint8, pin_memory=True)
    on_device = torch.empty(n, dtype=torch.uint8, device=device)
    sync = _device_sync(device)
    up = timed(lambda: on_device.copy_(host, non_blocking=True), effort, sync)
    down = timed(lambda: host.copy_(on_device, non_blocking=True), effort, sync)
    return [rate(cal.H2D, n / 1e9, up, device=device), rate(cal.D2H, n / 1e9, down, device=device)]


def serialisation(effort: Effort) -> list[Figure]:
    """JSON both ways on a response-like document (passages, scores, ids) of about 64 KB."""
    document = {
        "answer": "lorem ipsum " * 40,
        "passages": [{"id": i, "text": "dolor sit amet " * 20, "score": i / 7} for i in range(180)],
        "embedding": [i / 3 for i in range(384)],
    }
    text = json.dumps(document)
    megabytes = len(text.encode()) / 1e6
    dumps = timed(lambda: json.dumps(document), effort, lambda: None)
    loads = timed(lambda: json.loads(text), effort, lambda: None)
    return [rate(cal.JSON_DUMPS, megabytes, dumps), rate(cal.JSON_LOADS, megabytes, loads)]


_ECHO = """
import socket, sys
server = socket.socket(); server.bind(("127.0.0.1", 0)); server.listen(1)
print(server.getsockname()[1], flush=True)
conn, _ = server.accept(); conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
while data := conn.recv(64): conn.sendall(data)
"""
_PIPE_ECHO = """
import os
while data := os.read(0, 64): os.write(1, data)
"""


def _child(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,  # its own group, stopped whatever happens
    )


def _stop(child: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()


def round_trips(effort: Effort) -> list[Figure]:
    """A 64-byte message to another process and back: over TCP on 127.0.0.1, then pipes."""
    blocks = [effort.round_trips] * effort.repeats
    out = []
    child = _child(_ECHO)
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            out.append(_trips(cal.LOOPBACK, blocks, lambda: _echo(conn.sendall, conn.recv)))
    finally:
        _stop(child)
    child = _child(_PIPE_ECHO)
    try:
        assert child.stdin is not None and child.stdout is not None
        sent, got = child.stdin.fileno(), child.stdout.fileno()
        trip = lambda: _echo(lambda m: os.write(sent, m), lambda k: os.read(got, k))  # noqa: E731
        out.append(_trips(cal.PIPE, blocks, trip))
    finally:
        _stop(child)
    return out


def _echo(send: Callable[[bytes], object], receive: Callable[[int], bytes]) -> None:
    send(b"x" * 64)
    left = 64
    while left:
        got = receive(left)
        if not got:
            raise OSError("the echo process closed its end")
        left -= len(got)


def _trips(measure: str, blocks: list[int], trip: Callable[[], None]) -> Figure:
    for _ in range(10):  # warm-up
        trip()
    seconds = []
    for count in blocks:
        start = time.perf_counter()
        for _ in range(count):
            trip()
        seconds.append((time.perf_counter() - start) / count)
    return figure(measure, [s * 1e6 for s in seconds])


def calibrate(
    fingerprint: Fingerprint,
    thread_counts: Iterable[int],
    *,
    shapes: Sequence[GemmShape] = (),
    quick: bool = False,
    devices: Sequence[str] = (),
    say: Callable[[str], None] = lambda text: None,
) -> Calibration:
    """Measure every figure: per thread count the GEMM peak (float32, bfloat16), the GEMMs at
    ``shapes`` and STREAM; once the dispatch, JSON and round trips; on each of ``devices`` (CUDA)
    its GEMM peak, memory copy and host links."""
    import torch

    effort = Effort.of(quick)
    started = time.perf_counter()
    figures: list[Figure] = []
    for count in sorted(set(thread_counts)):
        with intra_op_threads(count):
            say(f"GEMM peak and STREAM on {count} thread{'s' if count != 1 else ''}")
            for dtype in ("float32", "bfloat16"):
                figures.append(peak_gemm(dtype, effort, threads=count))
            for shape in shapes:
                seconds = gemm(shape, effort)
                figures.append(
                    rate(
                        cal.GEMM_SHAPE,
                        shape.flops / 1e9,
                        seconds,
                        dtype=shape.dtype,
                        threads=count,
                        shape=shape.label,
                    )
                )
            figures.extend(stream(effort, threads=count))
    say("dispatch, JSON and round trips")
    figures.append(dispatch(effort))
    figures.extend(serialisation(effort))
    figures.extend(round_trips(effort))
    for device in devices:
        say(f"GEMM peak, memory and host links on {device}")
        for dtype in ("float32", "bfloat16", "float16"):
            figures.append(peak_gemm(dtype, effort, device))
        figures.extend(stream(effort, device))
        figures.append(dispatch(effort, device))
        figures.extend(host_device(effort, device))
    found = fingerprint.accelerators
    return Calibration(
        machine=cal.machine_key(fingerprint),
        cpu=fingerprint.host.host_processor_model_name,
        cores=fingerprint.cores,
        made_utc=datetime.now(timezone.utc).isoformat(),
        gapbench=__version__,
        torch=torch.__version__,
        seconds=time.perf_counter() - started,
        figures=tuple(figures),
        accelerator=found.accelerator_model_name if found and devices else "",
        quick=quick,
    )
