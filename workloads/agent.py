"""The agent workload: a planner chooses tool calls, a real MCP server runs them, the answer
uses their results.

``parse`` reads the request; ``plan`` runs a small decoder over the question and reads the
tools to call off the tokens it generates, so the fan-out is decided at run time and differs
between requests; ``tools`` calls them on the MCP tool server (``workloads.tool_server``, a
subprocess over stdio or streamable HTTP on loopback), one after another or all at once
(``handoffs``); ``answer`` decodes again over the question and the tools' results; ``respond``
assembles the reply.

Each call's time is split across the process boundary: the server's own work comes back in the
reply's ``_meta`` and replaces the client's blocked wait (on the `remote` resource), the
JSON-RPC request and reply (serialisation and the pipe or socket) are movement, and only the
hand-over to the client's event loop and back stays waiting.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.backends.mcp import HTTP, STDIO, ToolFailure, ToolServer, server_command
from harness.backends.onnx_export import cache_root
from harness.machine.threads import thread_variables
from harness.record.remote import OFFSET_FACT, call_label, read_carried, record_call
from harness.words import Resource
from harness.workload import Param, SetupContext, Stage, StageContext, Workload
from workloads import text
from workloads.models import Decoder, DecoderConfig
from workloads.tool_server import ORDERS, build_database

TOOLS = ("search_docs", "lookup", "fetch_remote", "enrich_records")
# The tools a planner may choose among: all four, or a fixed pair of a kind (the serialisation
# finder is checked on mixes with CPU-bound and wait-bound tools).
MIXES = {
    "planned": TOOLS,
    "cpu+wait": ("search_docs", "fetch_remote"),
    "cpu+cpu": ("search_docs", "search_docs"),
    "wait+wait": ("fetch_remote", "fetch_remote"),
}
PLAN_TOKENS = 4  # tokens the planner generates: one vote per tool
SIZES = {"quick": (64, 6), "default": (256, 16)}  # (requests, answer tokens)
RECORDS = 120  # records a request sends to enrich_records: about 10 KiB of JSON
SKEW_VARIABLE = "GAPBENCH_TOOL_CLOCK_SKEW_NS"  # tests only: the server's clock is shifted
FAULTS_VARIABLE = "GAPBENCH_TOOL_FAULTS"  # tests only: the server offers a tool that misbehaves
_REMOTE = Resource.REMOTE.value


class ToolError(Exception):
    """A tool call whose reply was an error (bad arguments): the request fails with it."""


@dataclass(frozen=True)
class Call:
    tool: str
    arguments: dict[str, Any]


@dataclass(frozen=True, eq=False)
class Asked:
    id: int
    question: str
    customer_id: int
    ids: torch.Tensor  # int64 [seq]: [BOS] question words


@dataclass(frozen=True, eq=False)
class Planned:
    asked: Asked
    calls: tuple[Call, ...]


class Agent(Workload):
    """Plan, call tools on an MCP server, answer, respond."""

    name = "agent"
    description = "an agent: a decoder plans tool calls on a real MCP server, then answers"
    stages = (
        Stage("parse", layer="ingress"),
        Stage("plan", layer="orchestration", after=("parse",)),
        Stage("tools", layer="tools", after=("plan",)),
        Stage("answer", layer="inference", after=("tools",)),
        Stage("respond", layer="assembly", after=("tools", "answer")),
    )
    code_modules = ("workloads.text", "workloads.models", "workloads.tool_server")
    params = (
        Param("transport", STDIO, "how the client reaches the tool server", "execution",
              choices=(STDIO, HTTP)),
        Param("handoffs", "serial", "tool calls one after another, or all at once",
              "execution", choices=("serial", "parallel")),
        Param("mix", "planned", "the tools the planner chooses among", choices=tuple(MIXES)),
        Param("remote_ms", 8.0, "median latency of fetch_remote's simulated service (ms)",
              low=0.0, high=10_000.0),
        Param("timeout_s", 30.0, "the longest a tool call may take before it fails",
              "execution", low=0.1, high=3_600.0),
    )  # fmt: skip

    def setup(self, ctx: SetupContext) -> None:
        self.params_set = dict(ctx.params)
        self.seed, self.size = ctx.seed, ctx.size
        self.requests_n, self.answer_tokens = SIZES[ctx.size]
        self.tokenizer = text.Tokenizer()
        self.config = DecoderConfig(vocab_size=self.tokenizer.vocab_size)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            self.decoder = Decoder(self.config).eval().to(ctx.device)
        self.device = ctx.device
        self.candidates = MIXES[ctx.params["mix"]]
        self.parallel = ctx.params["handoffs"] == "parallel"
        folder = cache_root() / "agent"
        folder.mkdir(parents=True, exist_ok=True)
        db = folder / f"orders-{ctx.seed}-{ORDERS}.sqlite"
        if not db.exists():
            build_database(db, ctx.seed)
        self._logs = tempfile.TemporaryDirectory(prefix="gapbench-tools-")
        args = ["--db", str(db), "--size", ctx.size, "--seed", str(ctx.seed)]
        args += ["--remote-ms", str(ctx.params["remote_ms"])]
        args += ["--threads", str(torch.get_num_threads())]
        if os.environ.get(SKEW_VARIABLE):
            args += ["--clock-skew-ns", os.environ[SKEW_VARIABLE]]
        if os.environ.get(FAULTS_VARIABLE):
            args += ["--faults"]
        self.server = ToolServer(
            server_command("workloads.tool_server", *args),
            transport=ctx.params["transport"],
            call_timeout_s=ctx.params["timeout_s"],
            env=thread_variables(os.environ),
            log=Path(self._logs.name) / "server.log",
        )
        started = time.perf_counter()
        try:
            self.server.start()  # stops what it started if it fails
        except BaseException:
            self._logs.cleanup()
            raise
        self.server_start_s = time.perf_counter() - started

    def teardown(self) -> None:
        self.server.close()
        self._logs.cleanup()

    def requests(self, ctx: SetupContext) -> Sequence[bytes]:
        tokenizer = text.Tokenizer()
        count, _ = SIZES[ctx.size]
        questions = text.queries(tokenizer, count, ctx.seed)
        rng = np.random.default_rng([ctx.seed, 11])
        return [
            json.dumps(
                {"id": i, "question": q, "customer_id": int(rng.integers(0, 20_000))}
            ).encode()
            for i, q in enumerate(questions)
        ]

    def work(self) -> Mapping[str, Any]:
        return {
            "requests": self.requests_n,
            "answer_tokens": self.answer_tokens,
            "plan_tokens": PLAN_TOKENS,
            "tools": list(self.candidates),
            "records": RECORDS,
            "database_rows": ORDERS,
            "decoder": asdict(self.config),
            "seed": self.seed,
        }

    def setup_facts(self) -> Mapping[str, Any]:
        return {
            "tool_server_start_s": round(self.server_start_s, 3),
            # One per start: a restarted server's offset was measured again.
            OFFSET_FACT: [offset.to_dict() for offset in self.server.offsets],
            "tool_server_restarts": self.server.restarts,
        }

    def outputs(self, response: bytes) -> Mapping[str, Any]:
        body = json.loads(response)
        return {"tools": body["tools"], "tokens": body["tokens"]}

    # --- stages ---------------------------------------------------------------------------

    def parse(self, ctx: StageContext, payload: bytes) -> Asked:
        with ctx.movement(nbytes=len(payload), label="json.loads"):
            body = json.loads(payload)
        with ctx.compute(label="tokenize", resource="host-cpu"):
            words = self.tokenizer.encode(body["question"])[:48]
            ids = torch.tensor([text.BOS, *words], dtype=torch.int64)
        return Asked(int(body["id"]), body["question"], int(body["customer_id"]), ids)

    def plan(self, ctx: StageContext, asked: Asked) -> Planned:
        """Decode a few tokens over the question; each votes for one candidate tool."""
        with ctx.compute(label="planner"):
            votes = self._generate(asked.ids, PLAN_TOKENS)
        chosen = [t for vote, t in zip(votes, self._slots(), strict=True) if vote % 3 != 0]
        if not chosen:  # an agent that plans no call still looks something up
            chosen = [self.candidates[votes[0] % len(self.candidates)]]
        with ctx.compute(label="arguments", resource="host-cpu"):
            calls = tuple(self._arguments(tool, asked, i) for i, tool in enumerate(chosen))
        return Planned(asked, calls)

    def tools(self, ctx: StageContext, planned: Planned) -> list[Any]:
        """The planned calls on the tool server: all at once, or in turn (branches all the
        same: calls that could overlap, which gapbench's serialisation finder weighs)."""
        call = lambda c: self._call(ctx, c)  # noqa: E731
        return ctx.fan_out(call, planned.calls, "tool calls", parallel=self.parallel)

    def answer(self, ctx: StageContext, results: list[Any]) -> list[int]:
        """Decode the answer over a prompt made of the tools' results."""
        with ctx.compute(label="prompt", resource="host-cpu"):
            prompt = torch.tensor([text.BOS, *self._result_tokens(results)], dtype=torch.int64)
        with ctx.compute(label="decode"):
            return self._generate(prompt, self.answer_tokens, ctx.token)

    def respond(self, ctx: StageContext, results: list[Any], tokens: list[int]) -> bytes:
        with ctx.compute(label="detokenize", resource="host-cpu"):
            answer = self.tokenizer.decode(tokens)
        with ctx.movement(label="json.dumps") as probe:
            tools = [entry["tool"] for entry in results]
            body = json.dumps({"answer": answer, "tokens": tokens, "tools": tools}).encode()
            probe.nbytes = len(body)
        return body

    # --- inside ----------------------------------------------------------------------------

    def _slots(self) -> tuple[str, ...]:
        """One candidate per planner token, the candidates repeated to fill them."""
        return tuple(self.candidates[i % len(self.candidates)] for i in range(PLAN_TOKENS))

    def _generate(
        self, ids: torch.Tensor, steps: int, produced: Callable[[], None] = lambda: None
    ) -> list[int]:
        """Greedy decoding; ``produced()`` is told of each output token as it exists."""
        device = self.device
        with torch.inference_mode():
            prompt = ids[None].to(device)
            logits, keys, values = self.decoder(prompt, *self.decoder.empty_cache(1, device))
            token = logits.argmax(dim=-1)
            out = [int(token[0])]
            produced()
            for _ in range(steps - 1):
                logits, keys, values = self.decoder(token[:, None], keys, values)
                token = logits.argmax(dim=-1)
                out.append(int(token[0]))
                produced()
        return out

    def _arguments(self, tool: str, asked: Asked, index: int) -> Call:
        if tool == "search_docs":
            return Call(tool, {"query": asked.question, "k": 3})
        if tool == "lookup":
            return Call(tool, {"customer_id": asked.customer_id})
        if tool == "fetch_remote":
            return Call(tool, {"url": f"https://service.example/q/{asked.id}/{index}"})
        records = [
            {"id": asked.id * 1000 + i, "customer_id": asked.customer_id, "amount": (i * 7.3) % 97,
             "note": asked.question}
            for i in range(RECORDS)
        ]  # fmt: skip
        return Call(tool, {"records": records})

    def _call(self, ctx: StageContext, call: Call) -> Any:
        """One tool call, its time split across the process boundary (see the module's doc)."""
        sent_bytes = len(json.dumps(call.arguments))
        with ctx.wait(label=call_label(call.tool), resource=_REMOTE) as waited:
            try:
                reply = self.server.call(call.tool, call.arguments)
            except ToolFailure as exc:
                raise ToolError(str(exc)) from None
        if reply.is_error:
            raise ToolError(f"tool {call.tool} refused the call: {reply.text[:200]}")
        offset = self.server.offset
        carried = (
            read_carried(reply.meta, offset, (reply.sent_ns, reply.received_ns))
            if offset is not None
            else None
        )
        if carried is not None:
            window = (reply.sent_ns, reply.received_ns)
            sizes = (sent_bytes, len(reply.text.encode()))
            record_call(ctx.recorder, ctx.stage, waited.span, call.tool, window, carried, sizes)
        return {"tool": call.tool, "result": reply.structured}

    def _result_tokens(self, results: list[Any]) -> list[int]:
        """Token ids that stand for the tools' results: what the answer is conditioned on."""
        words = self.tokenizer.words
        ids: list[int] = []
        for entry in results:
            digest = json.dumps(entry, sort_keys=True).encode()
            ids += [words.start + b * 97 % (words.stop - words.start) for b in digest[:16]]
        return ids
