"""A pure-Python branch beside a native one: where the interpreter lock meets more threads.

``split`` hands the request to ``count`` and ``multiply``, which run at the same time on their
own stage threads. ``count`` tallies words in pure Python: it holds the interpreter lock all
the while it runs, handing it over only at the interpreter's switch interval. ``multiply`` is
a chain of torch matrix products: each releases the lock while it computes and takes it back
to dispatch the next, so it waits on the Python branch between its products. More intra-op
threads speed ``multiply`` up alone; beside ``count`` the lock and the cores decide. A
projection that models cores and not the lock has to say so here.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from harness.workload import (
    ALL_THREADS,
    ONE_THREAD,
    Condition,
    SetupContext,
    Stage,
    StageContext,
    Workload,
)

# (words counted, matrix side, products): about as long each, on one thread of this machine
SIZES = {"quick": (60_000, 384, 8), "default": (120_000, 512, 8)}
TEXTS = 8  # distinct texts the requests take turns with, built once: split only hands one over
WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa")


class PythonBesideNative(Workload):
    """split -> (count in Python, multiply in torch) -> join."""

    name = "python-beside-native"
    description = "a pure-Python branch beside a torch branch: the interpreter lock (a check)"
    stages = (
        Stage("split", "ingress"),
        Stage("count", "assembly", after=("split",)),
        Stage("multiply", "inference", after=("split",)),
        Stage("join", "assembly", after=("count", "multiply")),
    )
    in_suite = False  # a check of what the projection does not model, not a buyer's pipeline
    conditions = (
        Condition(
            "lock",
            ONE_THREAD,
            ALL_THREADS,
            "a Python branch beside a torch one, 1 -> all threads",
        ),
    )

    words: int
    side: int
    steps: int
    weight: Tensor
    seed: int
    texts: list[list[str]]

    def setup(self, ctx: SetupContext) -> None:
        self.words, self.side, self.steps = SIZES[ctx.size]
        self.seed = ctx.seed
        generator = torch.Generator().manual_seed(ctx.seed)
        scale = self.side**-0.5  # keeps products of unit-variance matrices from blowing up
        self.weight = (torch.randn(self.side, self.side, generator=generator) * scale).to(
            ctx.device
        )
        rng = random.Random(ctx.seed)
        self.texts = [
            [rng.choice(WORDS) + str(rng.randrange(50)) for _ in range(self.words)]
            for _ in range(TEXTS)
        ]

    def requests(self, ctx: SetupContext) -> Sequence[int]:
        return list(range(64))

    def work(self) -> Mapping[str, Any]:
        return {"words": self.words, "side": self.side, "steps": self.steps, "seed": self.seed}

    def outputs(self, response: tuple[int, float]) -> Mapping[str, Any]:
        return {"distinct": response[0], "sum": round(response[1], 3)}

    def split(self, ctx: StageContext, payload: int) -> tuple[list[str], Tensor]:
        with ctx.compute(label="input"):
            text = self.texts[payload % TEXTS]
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + payload)
            x = torch.randn(self.side, self.side, generator=generator)
        if ctx.on_device:
            with ctx.transfer(x.nbytes, label="h2d input"):
                x = x.to(ctx.device)
        return text, x

    def count(self, ctx: StageContext, given: tuple[list[str], Tensor]) -> int:
        with ctx.compute(label="tally", resource="host-cpu"):
            tally: Counter[str] = Counter()
            for word in given[0]:
                tally[word.upper()] += 1
        return len(tally)

    def multiply(self, ctx: StageContext, given: tuple[list[str], Tensor]) -> Tensor:
        x = given[1]
        with ctx.compute(label="matmuls"), torch.inference_mode():
            for _ in range(self.steps):
                x = torch.tanh(x @ self.weight)
        return x

    def join(self, ctx: StageContext, distinct: int, product: Tensor) -> tuple[int, float]:
        with ctx.compute(label="sum"):
            total = float(product.sum())
        return distinct, total
