"""Two CPU-bound branches side by side: where more threads per branch meet a fixed set of cores.

``split`` hands the request to ``left`` and ``right``, which run at the same time on their own
stage threads, each a chain of matrix products in torch (its intra-op threads); ``join`` adds
their results. Alone, a branch speeds up almost linearly with threads; side by side, two
branches that each ask for every core contend for them, which a projection from a component
benchmark has to see.
"""

from __future__ import annotations

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

SIZES = {"quick": (384, 6), "default": (512, 8)}  # (matrix side, products per branch)


class Branches(Workload):
    """a -> (left, right) -> join, each branch a chain of float32 matrix products."""

    name = "branches"
    description = "two CPU-bound torch branches side by side, then a join (contention check)"
    stages = (
        Stage("split", "ingress"),
        Stage("left", "inference", after=("split",)),
        Stage("right", "inference", after=("split",)),
        Stage("join", "assembly", after=("left", "right")),
    )
    in_suite = False  # a check of the projection under contention, not a buyer's pipeline
    conditions = (
        Condition(
            "contention",
            ONE_THREAD,
            ALL_THREADS,
            "two parallel branches, 1 -> all threads",
        ),
    )

    side: int
    steps: int
    weights: tuple[Tensor, Tensor]
    seed: int

    def setup(self, ctx: SetupContext) -> None:
        self.side, self.steps = SIZES[ctx.size]
        self.seed = ctx.seed
        generator = torch.Generator().manual_seed(ctx.seed)
        scale = self.side**-0.5  # keeps products of unit-variance matrices from blowing up
        self.weights = tuple(
            (torch.randn(self.side, self.side, generator=generator) * scale).to(ctx.device)
            for _ in range(2)
        )

    def requests(self, ctx: SetupContext) -> Sequence[int]:
        return list(range(64))

    def work(self) -> Mapping[str, Any]:
        return {"side": self.side, "steps": self.steps, "seed": self.seed}

    def outputs(self, response: float) -> Mapping[str, Any]:
        return {"sum": round(response, 3)}

    def split(self, ctx: StageContext, payload: int) -> Tensor:
        with ctx.compute(label="input"):
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + payload)
            x = torch.randn(self.side, self.side, generator=generator)
        if ctx.on_device:
            with ctx.transfer(x.nbytes, label="h2d input"):
                x = x.to(ctx.device)
        return x

    def _chain(self, ctx: StageContext, x: Tensor, weight: Tensor) -> Tensor:
        with ctx.compute(label="matmuls"), torch.inference_mode():
            for _ in range(self.steps):
                x = torch.tanh(x @ weight)
        return x

    def left(self, ctx: StageContext, x: Tensor) -> Tensor:
        return self._chain(ctx, x, self.weights[0])

    def right(self, ctx: StageContext, x: Tensor) -> Tensor:
        return self._chain(ctx, x, self.weights[1])

    def join(self, ctx: StageContext, left: Tensor, right: Tensor) -> float:
        with ctx.compute(label="sum"):
            total = float((left + right).sum())
        return total
