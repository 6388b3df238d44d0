"""The environment variables that set thread pools, pinning, visible devices or the allocator."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping

from harness.errors import UserError

# Intra-op threads one may ask for: of a run here, or of a claim's candidate machine.
THREADS = (1, 4096)

THREAD_VARIABLE_PREFIXES = (
    "OMP_",
    "KMP_",
    "GOMP_",
    "MKL_",
    "OPENBLAS_",
    "GOTO_",
    "BLIS_",
    "VECLIB_",
    "NUMEXPR_",
    "DNNL_",
    "ONEDNN_",
    "TBB_",
    "CUDA_VISIBLE_DEVICES",
    "CUDA_DEVICE_ORDER",
    "CUDA_LAUNCH_BLOCKING",
    "PYTORCH_CUDA_ALLOC_CONF",
    "LD_PRELOAD",
)
"""Variables that set thread pools, pinning, visible devices or the allocator (LD_PRELOAD of
tcmalloc, jemalloc or libiomp): each can change a result by more than a hardware difference."""

THREAD_COUNT_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "GOTO_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
"""The thread counts of the math libraries' pools, all of them; setting a run's threads sets
every one, and a count above the cores warns."""


def thread_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``environ`` that change threads or devices, sorted by name."""
    return {k: v for k, v in sorted(environ.items()) if k.startswith(THREAD_VARIABLE_PREFIXES)}


@contextlib.contextmanager
def threads(count: int | None) -> Iterator[None]:
    """Intra-op threads for this process and the worker processes it starts."""
    import torch

    saved_env = {k: os.environ.get(k) for k in THREAD_COUNT_VARIABLES}
    saved = torch.get_num_threads()
    try:
        for key in THREAD_COUNT_VARIABLES:
            if count is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = str(count)
        if count is not None:
            torch.set_num_threads(count)
        yield
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        torch.set_num_threads(saved)


def whole_threads(value: object, where: str) -> int | None:
    """A thread count as a file gives it: None, or a whole number in ``THREADS``; anything else
    is a UserError naming ``where``."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not THREADS[0] <= value <= THREADS[1]
    ):
        raise UserError(f"{where}: a whole number of threads, {THREADS[0]} to {THREADS[1]}")
    return value
