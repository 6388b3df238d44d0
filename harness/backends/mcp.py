"""A tool server over MCP that gapbench starts, talks to, restarts and always stops.

The server is a subprocess: over stdio (the SDK starts it and owns its pipes), or over
streamable HTTP on a socket this process binds to 127.0.0.1 on a free port and hands to the
child, so nothing listens beyond loopback and no port is raced for. The MCP client is async; it
lives on an event loop thread of its own, and stage threads call it through ``call``, which
blocks for at most the call timeout. A server that crashed or hung is restarted before the next
call (its clock offset measured again), and the call that met it fails with the reason.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.record.remote import META_KEY, ClockOffset, estimate_offset

STDIO, HTTP = "stdio", "http"
TRANSPORTS = (STDIO, HTTP)
CLOCK_TOOL = "gapbench_clock"  # the server's clock and pid, for the offset and for tests
OFFSET_ROUND_TRIPS = 16
START_TIMEOUT_S = 120.0  # a server imports torch and builds its models before it answers


class ToolFailure(Exception):
    """A tool call that failed in the transport: the server crashed, hung or could not start."""


@dataclass(frozen=True)
class Reply:
    """One tool call's reply and when the client's event loop sent it and got it back."""

    is_error: bool
    text: str  # the reply's text content (a structured result's JSON)
    structured: Any
    meta: Mapping[str, Any] | None
    sent_ns: int  # when the call began on the client's loop, after the hand-over to it
    received_ns: int  # when the reply was in, before the hand-back to the calling thread


@dataclass
class ToolServer:
    """A started tool server and its client; ``start`` it, ``call`` tools, ``close`` it."""

    command: Sequence[str]  # the server program and its arguments; --transport/--fd are added
    transport: str = STDIO
    call_timeout_s: float = 30.0
    env: Mapping[str, str] = field(default_factory=dict)
    log: Path | None = None  # where the server's stderr goes (None: discarded)
    restarts: int = 0
    offsets: list[ClockOffset] = field(default_factory=list)  # one per start, in order
    pid: int | None = None
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _session: Any = field(default=None, repr=False)  # the connected mcp.Client
    _stop: asyncio.Event | None = field(default=None, repr=False)
    _done: concurrent.futures.Future | None = field(default=None, repr=False)
    _process: subprocess.Popen | None = field(default=None, repr=False)  # HTTP's server
    _stderr: Any = field(default=None, repr=False)  # the log file the server writes to
    # Held through a restart: a call waits for the server rather than meet it half-started.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _broken: str = ""  # why the server is down for good (a restart that failed)

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ValueError(f"unknown transport {self.transport!r} (one of {TRANSPORTS})")

    @property
    def offset(self) -> ClockOffset | None:
        """The running server's clock offset (its latest start's)."""
        return self.offsets[-1] if self.offsets else None

    def start(self) -> None:
        """Start the server, connect, and measure its clock offset; on any failure the server
        is stopped before the error (a ToolFailure; Ctrl-C stays a KeyboardInterrupt)."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="gapbench-mcp", daemon=True)
        self._thread.start()
        ready: concurrent.futures.Future = concurrent.futures.Future()
        self._done = asyncio.run_coroutine_threadsafe(self._hold(ready), loop)
        try:
            ready.result(timeout=START_TIMEOUT_S)
            self.offsets.append(self._measure_offset())
        except KeyboardInterrupt:
            self.close()
            raise
        except Exception as exc:
            tail = self._tail()
            self.close()
            raise ToolFailure(f"the tool server did not start: {_said(exc)}{tail}") from exc

    def call(self, name: str, arguments: Mapping[str, Any]) -> Reply:
        """Call tool ``name``; a ToolFailure when the transport failed, after the server was
        restarted (once, however many calls in flight met the failure), so the next call
        finds it running."""
        with self._lock:  # not while a restart is under way
            loop, generation = self._loop, self.restarts
        try:
            return self._call_now(loop, name, arguments)
        except ToolFailure:
            with self._lock:
                # A server that would not start again is not retried: calls fail at once.
                if self.restarts == generation and not self._broken:
                    self._restart()
            raise

    def _call_now(
        self, loop: asyncio.AbstractEventLoop | None, name: str, arguments: Mapping[str, Any]
    ) -> Reply:
        if loop is None or loop.is_closed():
            raise ToolFailure(self._broken or "the tool server is not running")
        try:
            future = asyncio.run_coroutine_threadsafe(self._call(name, dict(arguments)), loop)
        except RuntimeError:  # its loop closed between the check and the call
            raise ToolFailure(self._broken or "the tool server stopped") from None
        try:
            return future.result(timeout=self.call_timeout_s + 5)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise ToolFailure(f"tool {name} gave no reply in {self.call_timeout_s:g} s") from None
        except concurrent.futures.CancelledError:
            raise ToolFailure(f"tool {name}: the client stopped") from None

    def close(self) -> None:
        """Stop the client and the server, whatever state they are in; again is harmless."""
        loop, done = self._loop, self._done
        if loop is not None and done is not None and self._stop is not None:
            loop.call_soon_threadsafe(self._stop.set)
        if loop is not None and done is not None:
            try:
                done.result(timeout=10)
            except concurrent.futures.TimeoutError:
                # Still connecting (or stuck): cancelled, the SDK stops the server it started.
                done.cancel()
                with contextlib.suppress(BaseException):
                    done.result(timeout=10)
            except BaseException:  # it ended with an error: it is over all the same
                pass
        self._kill()
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(timeout=10)
            if not loop.is_running():
                loop.close()
        if self._stderr is not None:
            self._stderr.close()
        self._loop = self._thread = self._done = self._stop = self._session = None
        self._stderr = None

    # --- inside ------------------------------------------------------------------------------

    async def _hold(self, ready: concurrent.futures.Future) -> None:
        """Connect and keep the client open until told to stop: one task enters and leaves
        it, as anyio's cancel scopes require."""
        from mcp import Client

        self._stop = asyncio.Event()
        try:
            async with Client(self._target(), read_timeout_seconds=self.call_timeout_s) as client:
                self._session = client
                ready.set_result(None)
                await self._stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
        finally:
            self._session = None

    def _target(self) -> Any:
        from mcp import StdioServerParameters
        from mcp.client.stdio import stdio_client

        command = [*self.command, "--transport", self.transport]
        env = {**self.env, "PYTHONUNBUFFERED": "1"}
        self._stderr = self.log.open("a") if self.log is not None else open(os.devnull, "w")  # noqa: SIM115
        if self.transport == STDIO:
            params = StdioServerParameters(command=command[0], args=command[1:], env=env)
            return stdio_client(params, errlog=self._stderr)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Accepted connections inherit it: a reply is not held back waiting for an ACK.
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        port = listener.getsockname()[1]
        try:
            self._process = subprocess.Popen(
                [*command, "--fd", str(listener.fileno())],
                pass_fds=(listener.fileno(),),
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._stderr,
                start_new_session=True,  # its own process group: stopped whole
            )
        finally:
            listener.close()  # the child holds its own copy
        return f"http://127.0.0.1:{port}/mcp"

    async def _call(self, name: str, arguments: dict[str, Any]) -> Reply:
        client = self._session
        if client is None:
            raise ToolFailure(self._broken or "the tool server is not connected")
        sent = time.perf_counter_ns()
        try:
            result = await client.call_tool(name, arguments)
        except Exception as exc:  # MCPError (closed, timed out) or a broken stream
            raise ToolFailure(f"tool {name}: {_said(exc)}{self._tail()}") from exc
        received = time.perf_counter_ns()
        text = "".join(getattr(block, "text", "") for block in result.content)
        return Reply(result.is_error, text, result.structured_content, result.meta, sent, received)

    def _measure_offset(self) -> ClockOffset:
        """Round trips to the clock tool: the client's loop's send and receipt, and the
        server's readings as its call began and ended (its carried timing), or the clock the
        tool read where a server carries none."""
        samples = []
        for _ in range(OFFSET_ROUND_TRIPS):
            reply = self._call_now(self._loop, CLOCK_TOOL, {})
            body = reply.structured
            if reply.is_error or not isinstance(body, dict) or "now_ns" not in body:
                raise ToolFailure(f"its {CLOCK_TOOL} tool answered {reply.text[:200]!r}")
            carried: dict[str, Any] = dict((reply.meta or {}).get(META_KEY) or {})
            now = int(body["now_ns"])
            began, ended = int(carried.get("in", now)), int(carried.get("out", now))
            samples.append((reply.sent_ns, began, ended, reply.received_ns))
            self.pid = int(body["pid"])
        return estimate_offset(samples)

    def _restart(self) -> None:
        self.close()
        self._broken = ""
        self.restarts += 1
        try:
            self.start()
        except ToolFailure as exc:
            self._broken = str(exc)  # the next call says why, at once

    def _kill(self) -> None:
        """The server gone whatever it does: its process group for HTTP (its own session, so
        the group is its alone); for stdio the SDK has stopped and reaped it by now."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        self.pid = None  # a pid that ended may be another process's soon

    def _tail(self) -> str:
        if self.log is None or not self.log.exists():
            return ""
        lines = self.log.read_text(errors="replace").strip().splitlines()
        return f" (server: {lines[-1][:200]})" if lines else ""


def _said(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def server_command(module: str, *args: str) -> list[str]:
    """Run ``module`` with this interpreter: the server sees the same gapbench and torch."""
    return [sys.executable, "-m", module, *args]
