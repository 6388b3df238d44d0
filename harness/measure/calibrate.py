"""This machine's calibration: the kept one when it covers what is asked, else measured and
kept (``gapbench calibrate``, and a profiling pass that reads a roofline against it)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness.archive.calibrations import keep, kept, location_of
from harness.archive.store import Archive
from harness.machine.calibration import Calibration, GemmShape, machine_key
from harness.machine.cores import whole
from harness.machine.fingerprint import Fingerprint
from harness.machine.microbench import calibrate


@dataclass(frozen=True)
class Calibrated:
    """A calibration and whether it was measured now (else it was kept from before)."""

    calibration: Calibration
    measured: bool
    where: str  # the file it is kept in


def default_threads(fingerprint: Fingerprint) -> tuple[int, ...]:
    """One thread and every usable core: a vendor's single-core and whole-chip figures."""
    return tuple(sorted({1, whole(fingerprint.cores)}))


def covers(found: Calibration, threads: Sequence[int], shapes: Sequence[GemmShape]) -> bool:
    """Whether ``found`` has every thread count and every shape at each of them."""
    return set(threads) <= set(found.threads) and all(
        (s, t) in found.shapes for s in shapes for t in threads
    )


def calibration(
    archive: Archive,
    fingerprint: Fingerprint,
    *,
    threads: Sequence[int] = (),
    shapes: Sequence[GemmShape] = (),
    refresh: bool = False,
    quick: bool = False,
    rough_ok: bool = False,
    devices: Sequence[str] = (),
    say: Callable[[str], None] = lambda text: None,
) -> Calibrated:
    """The kept calibration of this machine if it covers ``threads`` and ``shapes`` and no
    ``refresh`` is asked (and, unless ``quick`` or ``rough_ok``, it was not measured quick);
    otherwise one measured now (with what was kept asked for too)."""
    threads = tuple(threads) or default_threads(fingerprint)
    found = kept(archive, machine_key(fingerprint))
    rough = found is not None and found.quick and not (quick or rough_ok)
    if found is not None and not refresh and not rough and covers(found, threads, shapes):
        return Calibrated(found, False, location_of(archive, found.machine))
    if found is not None:  # re-measured, it still has what it had
        threads = tuple(sorted(set(threads) | set(found.threads)))
        had = {shape for shape, _ in found.shapes}
        shapes = tuple(sorted(set(shapes) | had, key=lambda s: (s.dtype, s.m, s.k, s.n)))
    fresh = calibrate(fingerprint, threads, shapes=shapes, quick=quick, devices=devices, say=say)
    return Calibrated(fresh, True, keep(archive, fresh))
