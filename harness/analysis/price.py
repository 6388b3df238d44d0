"""What a set's throughput costs: the user's price for each machine, per request.

Prices are the user's (a cloud's list price, a lease, an amortised purchase), given per set
(``SET=USD``) or per host in a file; gapbench never guesses one. A set's cost is read at its own
pace: one request at a time, the machine is paid for while it waits between requests too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.analysis.machines import differences
from harness.analysis.throughput import Throughput
from harness.archive.names import host_of
from harness.archive.result_set import ResultSet
from harness.errors import UserError
from harness.params import toml_file

MAX_PRICE_PER_HOUR = 1e6  # USD: anything above is a typing slip


@dataclass(frozen=True)
class Cost:
    """A set's price an hour and what it buys at the set's throughput."""

    usd_per_hour: float
    requests_per_dollar: float
    usd_per_million_requests: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "usd_per_hour": self.usd_per_hour,
            "requests_per_dollar": self.requests_per_dollar,
            "usd_per_million_requests": self.usd_per_million_requests,
        }


def cost(throughput: Throughput, usd_per_hour: float) -> Cost | None:
    """What ``usd_per_hour`` buys at the set's pace; None when the set served nothing."""
    per_s = throughput.requests_per_s
    if not per_s > 0:  # NaN too: no time measured
        return None
    per_dollar = per_s * 3600.0 / usd_per_hour
    return Cost(usd_per_hour, per_dollar, 1e6 / per_dollar)


def checked_price(value: Any, where: str) -> float:
    """A price in dollars an hour: a number above 0 and at most ``MAX_PRICE_PER_HOUR``."""
    if isinstance(value, bool):
        raise UserError(f"{where}: {value!r} is not a price in dollars an hour")
    try:
        usd = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{where}: {value!r} is not a price in dollars an hour") from None
    if not 0 < usd <= MAX_PRICE_PER_HOUR:  # NaN fails this too
        raise UserError(f"{where}: a price is above 0 and at most {MAX_PRICE_PER_HOUR:,.0f} USD")
    return usd


def prices(
    results: Sequence[ResultSet], given: Sequence[str] = (), file: str | None = None
) -> dict[str, float]:
    """USD an hour by set id: ``given`` as ``SET=USD`` (an id or a unique prefix among
    ``results``), else the price ``file`` gives the set's host (TOML: ``[hosts] NAME = USD``)."""
    found: dict[str, float] = {}
    for text in given:
        name, sep, value = text.partition("=")
        where = f"--price-per-hour {text!r}"
        if not sep or not name.strip():
            raise UserError(f"{where}: give SET=USD (a set's id or a unique prefix, and dollars)")
        matches = [r.id for r in results if r.id.startswith(name.strip())]
        if len(matches) != 1:
            said = "no set compared here" if not matches else f"{len(matches)} sets compared here"
            raise UserError(f"{where}: {name.strip()!r} names {said}: give more of its id")
        if matches[0] in found:
            raise UserError(f"{where}: {matches[0]} is priced twice: give one price a set")
        found[matches[0]] = checked_price(value, where)
    rest = [r for r in results if r.id not in found]  # a set priced by itself needs no host
    return {**(_by_host(rest, file) if file is not None and rest else {}), **found}


def _by_host(results: Sequence[ResultSet], file: str) -> dict[str, float]:
    """The prices ``file`` gives the sets' hosts (by the host each id names), checked: it must
    price one of them, and a host name must not stand for different machines."""
    body = toml_file(file, "--prices")
    hosts = body.get("hosts")
    if not isinstance(hosts, dict) or set(body) - {"hosts"}:
        raise UserError(f"--prices {file}: give one [hosts] table of NAME = USD an hour")
    by_host = {str(h): checked_price(v, f"--prices {file}: host {h!r}") for h, v in hosts.items()}
    named = {r.id: host_of(r.id, r.manifest.workload) for r in results}
    priced = [r for r in results if named[r.id] in by_host]
    if not priced:
        here = ", ".join(sorted(set(named.values()))) or "none"
        raise UserError(f"--prices {file}: it prices no host of these sets (hosts: {here})")
    for host in sorted({named[r.id] for r in priced}):
        machines = differences([r for r in priced if named[r.id] == host])
        if not machines.same_machine:  # one name, several machines: which is the price for?
            raise UserError(
                f"--prices {file}: host {host!r} names sets run on different machines "
                f"({', '.join(machines.hardware.index)} differ): price them by set with "
                "--price-per-hour SET=USD"
            )
    return {r.id: by_host[named[r.id]] for r in priced}
