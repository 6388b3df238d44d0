"""The sentences a buyer reads: the answer of a run, a projection's headline, a comparison's
verdict. Built here alone, from numbers the library computed; the report only prints them."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.projection.answer import Answer, Said
    from harness.projection.compare import Comparison
    from harness.projection.project import Projection


def percent(share: float) -> str:
    """A share as a percentage; small ones keep a decimal: "0%" would hide a measured 0.4%."""
    return f"{share:.0%}" if share >= 0.1 or share == 0 else f"{share:.1%}"


def answer_sentence(a: Answer) -> str:
    """What the user's claims would do to this pipeline end to end, or, with none, the most a
    faster part could give; with the time no chip shortens."""
    if not a.requests:
        return "no request succeeded: there is nothing to project."
    waiting = f"{percent(a.waiting_share)} waiting"
    if a.off_cpu_share >= 0.005:
        waiting += (
            f" ({percent(a.off_cpu_share)} off the CPU in compute: the interpreter lock or "
            "preemption)"
        )
    rest = (
        f"{percent(a.movement_share)} is data movement, {waiting} and "
        f"{percent(a.unattributed_share)} unattributed."
    )
    if a.claims:
        return " ".join(_claim_sentence(c, a.device) for c in a.claims) + f" Here {rest}"
    parts = "; ".join(
        f"{b.part} is {percent(b.share)} of end-to-end time: were it instant (a {b.chip} "
        f"without limit), this pipeline would be at most {b.most:.3g}x faster at p50 "
        f"({b.interval[0]:.3g}-{b.interval[1]:.3g}, {b.interval_basis})"
        for b in a.bounds
    )
    return (
        f"{parts or 'no part of the machine holds much of the time'}. {rest} Give --claim FILE "
        "or --speedup KEY=X to project a part's real speedup."
    )


def _claim_sentence(c: Said, device: str) -> str:
    if c.problem:
        return f"{c.claim}: {c.problem}."
    unused = ""
    if c.unused:
        names = " or ".join(c.unused)
        where = "a GPU (--device cuda)" if "device" in c.unused and device == "cpu" else "it"
        unused = (
            f" Nothing in this set ran on {names}: run it on {where} to project a claim about "
            f"{names}."
        )
    if c.matched_share == 0:
        return f"{c.claim}: matches none of this set's time, so it promises no gain here.{unused}"
    low, high = c.interval
    return (
        f"{c.claim}: on {percent(c.matched_share)} of end-to-end time, it would make this "
        f"pipeline about {c.speedup:.2f}x faster at p50 ({low:.2f}-{high:.2f}, "
        f"{c.interval_basis}).{unused}"
    )


def headline(p: Projection) -> str:
    """How much of a claim's gain survives end to end, by replay beside naive Amdahl."""
    if p.matched_share == 0:
        return f"{p.claim.name}: matches none of this set's end-to-end time: no gain to project"
    replay_x, naive_x = p.speedup("replay"), p.speedup("naive")
    text = (
        f"{p.claim.name}: {p.claimed:.3g}x on {percent(p.matched_share)} of "
        f"end-to-end time gives {replay_x:.3f}x at p50 by replay (naive {naive_x:.3f}x)"
    )
    if p.lock is not None:
        text += (
            f"; {p.speedup('lock'):.3f}x had the CPU work of its side-by-side stages held one "
            "lock (the other end: the replay models cores, not the lock)"
        )
    if p.claimed <= 1.0:
        return f"{text}: the claim promises no gain"
    return f"{text}: {percent(max(p.surviving(), 0.0))} of the claimed gain survives end to end"


def comparison_sentence(c: Comparison, name: str = "CANDIDATE") -> str:
    """Whether CANDIDATE (called ``name``) is faster or slower than BASE end to end, and
    whether it is real: a difference inside the noise is said as none, not as a ratio, and a
    comparison with an invalid set says so first."""
    caveat = "" if c.trustworthy else "a set is INVALID, so this is not to be trusted: "
    e = c.end_to_end
    faster = e.ratio >= 1
    verdict = "faster" if faster else "slower"
    factor = e.ratio if faster else 1 / e.ratio
    if e.low is None or e.high is None:
        return (
            f"{caveat}{name} measured {factor:.3f}x {verdict} end to end at p50, but whether "
            "that is more than noise is unknown: fewer than 3 replicates on a side (run "
            "--repeat 3 or more)"
        )
    # The interval in the measured ratio's own terms: a slowdown's, inverted.
    low, high = (e.low, e.high) if faster else (1 / e.high, 1 / e.low)
    interval = f"95% interval {low:.3f}-{high:.3f}x {verdict}"
    if not e.significant:
        return (
            f"{caveat}{name} is not significantly faster or slower end to end at p50 "
            f"(measured {factor:.3f}x {verdict}, {interval})"
        )
    return f"{caveat}{name} is {factor:.3f}x {verdict} end to end at p50 ({interval}, significant)"
