"""What queueing theory predicts a request waits, from the service times a set measured.

Poisson arrivals at ``rate`` to ``servers`` workers, first come first served: the wait of
M/M/c is Erlang's C formula, exact for exponential service; for any other service time
(M/G/c) the Allen-Cunneen approximation scales it by ``(Ca² + Cs²) / 2``, the squared
coefficients of variation of the arrivals (1 for Poisson) and of the service times. With one
server it is the Pollaczek-Khinchine formula, exact for M/G/1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harness.errors import UserError


@dataclass(frozen=True)
class QueuePrediction:
    """The mean wait in queue a model predicts, with what it was made from."""

    mean_wait_s: float  # inf when the queue grows without bound (utilisation 1 or more)
    p_wait: float  # the chance an arrival finds every server busy
    utilisation: float  # rate x mean service / servers
    service_mean_s: float
    service_cv2: float  # squared coefficient of variation of the service times
    servers: int


def erlang_c(servers: int, offered: float) -> float:
    """The chance an arrival waits in M/M/``servers`` at ``offered`` load (rate x mean
    service, in servers' worth): Erlang's C, through the Erlang B recursion, which stays
    finite where the factorials of the textbook form overflow."""
    if offered >= servers:
        return 1.0
    blocked = 1.0
    for k in range(1, servers + 1):
        blocked = offered * blocked / (k + offered * blocked)
    return servers * blocked / (servers - offered * (1 - blocked))


def predict_wait(rate: float, service_s: np.ndarray, servers: int) -> QueuePrediction:
    """Allen-Cunneen's M/G/c mean wait for Poisson arrivals at ``rate`` per second, from the
    measured ``service_s`` (seconds, one per request) on ``servers`` workers."""
    service = np.asarray(service_s, dtype=float)
    if not len(service) or not np.isfinite(service).all() or (service <= 0).any():
        raise UserError("a queue prediction needs measured service times, each above zero")
    if not (math.isfinite(rate) and rate > 0) or servers < 1:
        raise UserError(f"a queue needs a positive rate and servers, not {rate:g}, {servers}")
    mean = float(service.mean())
    cv2 = float(service.var() / mean**2)
    offered = rate * mean
    utilisation = offered / servers
    if utilisation >= 1:
        return QueuePrediction(math.inf, 1.0, utilisation, mean, cv2, servers)
    waits = erlang_c(servers, offered)
    mm_c = waits / (servers / mean - rate)  # M/M/c's mean wait
    return QueuePrediction(mm_c * (1 + cv2) / 2, waits, utilisation, mean, cv2, servers)
