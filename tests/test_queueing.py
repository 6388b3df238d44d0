"""The queue model against simulated queues: exact where the theory is exact (M/M/c, and M/G/1
by Pollaczek-Khinchine), and Allen-Cunneen's approximation within its known error elsewhere."""

from __future__ import annotations

import heapq
import math

import numpy as np
import pytest

from harness.analysis.queueing import erlang_c, predict_wait
from harness.errors import UserError

# The simulated mean wait's own error is 2 to 3% at these loads: the 6% below is two of it.
CUSTOMERS = 100_000


def _simulated_wait(rate: float, service: np.ndarray, servers: int, seed: int) -> float:
    """Mean wait in queue of a first-come-first-served queue with Poisson arrivals, simulated
    customer by customer (an independent truth: no formula in it)."""
    arrivals = np.cumsum(np.random.default_rng(seed).exponential(1 / rate, len(service)))
    free = [0.0] * servers  # when each server is next free
    waited = 0.0
    for arrival, took in zip(arrivals.tolist(), service.tolist(), strict=True):
        start = max(arrival, heapq.heappop(free))
        waited += start - arrival
        heapq.heappush(free, start + took)
    return waited / len(service)


def test_erlang_c_matches_its_textbook_form():
    def textbook(c: int, a: float) -> float:
        top = a**c / math.factorial(c) * c / (c - a)
        return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)

    for c, a in ((1, 0.5), (2, 1.5), (4, 3.2), (16, 12.0)):
        assert erlang_c(c, a) == pytest.approx(textbook(c, a), rel=1e-12)
    assert erlang_c(2000, 1900.0) < 1  # where the factorials would overflow


@pytest.mark.parametrize(("servers", "load"), [(1, 0.7), (4, 0.8)])
def test_exponential_service_is_exact_m_m_c(servers, load):
    rng = np.random.default_rng(1)
    service = rng.exponential(0.01, CUSTOMERS)
    rate = load * servers / 0.01
    predicted = predict_wait(rate, service, servers)
    assert predicted.service_cv2 == pytest.approx(1, abs=0.02)
    simulated = _simulated_wait(rate, service, servers, seed=2)
    assert predicted.mean_wait_s == pytest.approx(simulated, rel=0.06)


def test_one_server_of_constant_service_is_pollaczek_khinchine():
    service = np.full(CUSTOMERS, 0.01)
    rate = 0.75 / 0.01
    predicted = predict_wait(rate, service, 1)
    assert predicted.mean_wait_s == pytest.approx(0.75 * 0.01 / (2 * 0.25))  # the formula
    assert predicted.mean_wait_s == pytest.approx(
        _simulated_wait(rate, service, 1, seed=3), rel=0.06
    )


def test_constant_service_on_several_servers_is_within_allen_cunneen_s_error():
    # Allen-Cunneen is an approximation for c > 1; for M/D/c at these loads its error is
    # known to be a few percent: 15% bounds it with the simulation's own error.
    service = np.full(CUSTOMERS, 0.01)
    rate = 0.8 * 4 / 0.01
    simulated = _simulated_wait(rate, service, 4, seed=4)
    assert predict_wait(rate, service, 4).mean_wait_s == pytest.approx(simulated, rel=0.15)


def test_a_queue_past_its_capacity_grows_without_bound_and_bad_input_is_refused():
    assert math.isinf(predict_wait(300.0, np.full(10, 0.01), 2).mean_wait_s)  # 1.5 servers worth
    for service in (np.array([]), np.array([0.01, 0.0]), np.array([np.nan])):
        with pytest.raises(UserError):
            predict_wait(10.0, service, 1)
    with pytest.raises(UserError):
        predict_wait(0.0, np.full(10, 0.01), 1)
