"""The agent workload's MCP tool server: four tools that each do real work, timed inside.

``python -m workloads.tool_server --transport stdio|http [--fd N] --db FILE ...`` serves:

- ``search_docs``: the query encoded by the RAG workload's encoder, then exact top-k over its
  corpus (CPU bound: the server runs on the host's CPU);
- ``lookup``: a customer's orders from a SQLite file of 100k+ rows, by an indexed column;
- ``fetch_remote``: a wait on a simulated remote service whose latency is drawn, seeded by the
  URL, from a log-normal distribution (wait bound);
- ``enrich_records``: records in, records out, kilobytes of JSON each way (serialisation).

Each tool's work is timed by server probes and carried back in the reply's ``_meta``
(``harness.record.remote``); ``gapbench_clock`` reads the server's clock for the client's
offset. Over HTTP the server takes a socket the parent bound to 127.0.0.1 (``--fd``), so it
never listens beyond loopback. It exits when its parent does.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

from harness.record.remote import META_KEY, ServerClock, server_probe, timed_call

CUSTOMERS = 20_000
ORDERS = 120_000  # rows of the lookup table (an index on customer_id)
PRODUCTS = ("widget", "gadget", "gizmo", "doohickey", "sprocket", "flange", "grommet")


def build_database(path: Path, seed: int, rows: int = ORDERS) -> None:
    """A SQLite file of ``rows`` orders of ``CUSTOMERS`` customers, indexed by customer."""
    import numpy as np

    rng = np.random.default_rng([seed, 7])
    customers = rng.integers(0, CUSTOMERS, rows)
    products = rng.integers(0, len(PRODUCTS), rows)
    amounts = np.round(rng.lognormal(3.0, 1.0, rows), 2)
    days = rng.integers(0, 3650, rows)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    with sqlite3.connect(partial) as db:
        db.execute(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, "
            "product TEXT, amount REAL, day INTEGER)"
        )
        db.executemany(
            "INSERT INTO orders VALUES (?, ?, ?, ?, ?)",
            (
                (i, int(c), PRODUCTS[int(p)], float(a), int(d))
                for i, (c, p, a, d) in enumerate(
                    zip(customers, products, amounts, days, strict=True)
                )
            ),
        )
        db.execute("CREATE INDEX orders_by_customer ON orders (customer_id)")
    partial.replace(path)  # whole or absent: a half-built file is never read


def remote_latency_s(url: str, median_ms: float, seed: int) -> float:
    """The simulated service's latency for ``url``: log-normal (sigma 0.5) about the median,
    seeded by the URL, so every run waits the same for the same request."""
    digest = hashlib.sha256(f"{seed}:{url}".encode()).digest()
    u1 = (int.from_bytes(digest[:8], "little") + 1) / (2**64 + 1)
    u2 = (int.from_bytes(digest[8:16], "little") + 1) / (2**64 + 1)
    normal = math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2)
    return median_ms / 1e3 * math.exp(0.5 * normal)


class Tools:
    """The tools' state: models, corpus and database, built once when the server starts."""

    def __init__(self, args: argparse.Namespace) -> None:
        import torch

        from workloads import text
        from workloads.models import Encoder
        from workloads.rag import RagConfig, corpus_embeddings

        if args.threads:
            torch.set_num_threads(args.threads)
        self.clock = ServerClock(args.clock_skew_ns)
        self.seed, self.remote_ms = args.seed, args.remote_ms
        self.tokenizer = text.Tokenizer()
        self.config = RagConfig.for_size(args.size, self.tokenizer.vocab_size)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(args.seed)  # the RAG workload's encoder: built first there too
            self.encoder = Encoder(self.config.encoder).eval()
        self.corpus = corpus_embeddings(self.config, args.seed)
        self.db_path = args.db
        self._local = threading.local()  # a SQLite connection per worker thread

    def search_docs(self, query: str, k: int) -> dict[str, Any]:
        import torch

        with server_probe(self.clock, "compute", "tokenize"):
            words = self.tokenizer.encode(query)[:62]
            ids = torch.tensor([[2, *words, 3]], dtype=torch.int64)
        with server_probe(self.clock, "compute", "encode"), torch.inference_mode():
            embedding = self.encoder(ids, torch.ones_like(ids))[0]
        with server_probe(self.clock, "compute", "top-k"), torch.inference_mode():
            top = torch.topk(self.corpus @ embedding, k)
        return {"ids": top.indices.tolist(), "scores": [round(s, 6) for s in top.values.tolist()]}

    def lookup(self, customer_id: int) -> dict[str, Any]:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)
        with server_probe(self.clock, "compute", "sql query"):
            rows = db.execute(
                "SELECT id, product, amount, day FROM orders WHERE customer_id = ? "
                "ORDER BY day DESC LIMIT 20",
                (customer_id,),
            ).fetchall()
        return {"customer_id": customer_id, "orders": [list(r) for r in rows]}

    def fetch_remote(self, url: str) -> dict[str, Any]:
        latency = remote_latency_s(url, self.remote_ms, self.seed)
        with server_probe(self.clock, "scheduling", "remote service"):
            time.sleep(latency)
        return {"url": url, "status": 200, "latency_ms": round(latency * 1e3, 3)}

    def enrich_records(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        with server_probe(self.clock, "compute", "enrich"):
            out = []
            for record in records:
                amount = float(record.get("amount", 0.0))
                out.append(
                    {
                        **record,
                        "amount_with_tax": round(amount * 1.2, 2),
                        "band": "high" if amount > 50 else "low",
                        "checksum": hashlib.md5(repr(sorted(record.items())).encode()).hexdigest(),
                    }
                )
        return {"records": out}


def build_server(args: argparse.Namespace) -> Any:
    from mcp.server import MCPServer

    tools = Tools(args)

    async def timing(ctx: Any, call_next: Any) -> Any:
        if ctx.method != "tools/call":
            return await call_next(ctx)
        result, meta = await timed_call(tools.clock, lambda: call_next(ctx))
        if isinstance(result, dict):
            result = {**result, "_meta": {**(result.get("_meta") or {}), META_KEY: meta}}
        return result

    server = MCPServer("gapbench-tools", log_level="WARNING", middleware=[timing])

    @server.tool()
    def gapbench_clock() -> dict[str, int]:
        """The server's probe clock in ns and its pid."""
        return {"now_ns": tools.clock(), "pid": os.getpid()}

    @server.tool()
    def search_docs(query: str, k: int = 3) -> dict[str, Any]:
        """The k passages of the corpus closest to the query (ids and scores)."""
        if not 1 <= k <= 10:
            raise ValueError("k must be 1 to 10")
        return tools.search_docs(query, k)

    @server.tool()
    def lookup(customer_id: int) -> dict[str, Any]:
        """A customer's most recent orders."""
        return tools.lookup(customer_id)

    @server.tool()
    def fetch_remote(url: str) -> dict[str, Any]:
        """What a remote service answers for the URL (simulated latency)."""
        return tools.fetch_remote(url)

    @server.tool()
    def enrich_records(records: list[dict[str, Any]]) -> dict[str, Any]:
        """The records with tax, a band and a checksum added."""
        return tools.enrich_records(records)

    if args.faults:

        @server.tool()
        def gapbench_fault(kind: str) -> dict[str, Any]:
            """Misbehave on purpose (tests only): crash, or hang."""
            if kind == "crash":
                os._exit(3)
            threading.Event().wait()  # hang: never answers
            return {}

    return server


def _exit_with_parent() -> None:
    """A server whose parent died must not outlive it (an HTTP one holds no pipe to see EOF)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workloads.tool_server", description=__doc__)
    parser.add_argument("--transport", choices=("stdio", "http"), default="stdio")
    parser.add_argument("--fd", type=int, help="a listening socket on 127.0.0.1 (http)")
    parser.add_argument("--db", type=Path, required=True, help="the lookup tool's SQLite file")
    parser.add_argument("--size", choices=("quick", "default"), default="quick")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--remote-ms", type=float, default=8.0)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads")
    parser.add_argument("--clock-skew-ns", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--faults", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    _exit_with_parent()
    server = build_server(args)
    if args.transport == "stdio":
        server.run("stdio")
        return 0
    if args.fd is None:
        parser.error("--transport http needs --fd")
    import uvicorn

    app = server.streamable_http_app(host="127.0.0.1", json_response=True)
    uvicorn.Server(uvicorn.Config(app, fd=args.fd, log_level="warning")).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
