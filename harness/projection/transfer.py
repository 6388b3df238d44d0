"""A claim about classes of compute (or two machines' specs) made into speedups per stage.

Each stage's compute is split by class (``harness.analysis.roofline``); a class speeds up by
its ratio, so the stage's compute speeds up by ``1 / sum(share / ratio)`` over its classes.
Beside it, the naive reading of the same claim: one ratio (the compute-bound one, a vendor's
headline) on all compute. The class left with the most time once the claim is applied is the
one that limits the gain.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd

from harness.analysis.roofline import CLASSES, COMPUTE_BOUND, DISPATCH, OPAQUE, Roofline, roofline
from harness.archive.result_set import ResultSet
from harness.errors import UserError
from harness.machine.calibration import Calibration
from harness.projection.claims import Claim, Target, parse_key
from harness.projection.spec import LINK, Calibrated, Spec
from harness.words import Category, Resource

ONE_THREAD_CLASSES = (DISPATCH, OPAQUE)  # the interpreter's and the framework's: one thread


@dataclass(frozen=True)
class Transfer:
    """A claim by class on one set: the per-class ratios, the two readings as claims, and
    what each stage's compute becomes."""

    claim: Claim
    ratios: dict[str, tuple[float, str]]  # class (and link) -> ratio, where it came from
    stages: pd.DataFrame  # stage, class, ms, share, ratio, left_ms (ms / ratio)
    naive: Claim  # one ratio on all compute
    aware: Claim  # each stage's compute by its classes
    limiting: str  # the class with the most time left under the claim
    notes: tuple[str, ...]  # what was assumed
    roofline: Roofline

    def left(self) -> dict[str, float]:
        """Per class, ms per request left under the claim, over every stage."""
        return {str(k): float(v) for k, v in self.stages.groupby("class")["left_ms"].sum().items()}


def _class_ratio(claim: Claim, klass: str, stage: str, layer: str) -> tuple[float, str] | None:
    """The class key of the claim that applies to ``stage``: stage scope over layer over none."""
    best: tuple[Target, float] | None = None
    for target, factor in claim.speedups:
        matched = target.klass == klass and target.in_scope(stage, layer)
        if matched and (best is None or target.rank > best[0].rank):
            best = (target, factor)
    return (best[1], best[0].key) if best else None


def resolve(result: ResultSet, claim: Claim, calibration: Calibration | None = None) -> Transfer:
    """``claim`` on ``result`` as speedups per stage from its classes of compute; a UserError
    when the set has no profile to class its compute by."""
    if result.manifest.execution.device != "cpu":
        raise UserError(
            f"claim {claim.name!r} speaks of classes of compute, which gapbench reads from host "
            f"operators: {result.id} ran on {result.manifest.execution.device}, whose kernels "
            "the profiling pass does not class yet; give the device's speedup as a key instead"
        )
    found = roofline(result, calibration)
    if found is None:
        raise UserError(
            f"claim {claim.name!r} speaks of classes of compute, and {result.id} has no profile "
            "to class them by: run it again with --profile (and gapbench calibrate)"
        )
    facts = result.manifest.replicates[0]
    layers = {s.name: s.layer for s in result.manifest.stages}
    threads = max(facts.stage_threads.values(), default=1)
    notes: list[str] = []
    spec = claim.spec.spec(threads) if isinstance(claim.spec, Calibrated) else claim.spec
    ratios = spec.ratios(_dtype(found), threads) if spec is not None else {}
    candidate_threads = spec.candidate_threads if spec is not None else None
    if spec is not None:
        for klass in CLASSES:
            if klass not in ratios:
                notes.append(f"{klass}: no number on both sheets speaks of it: taken as 1.0")
        if not spec.measured and not (spec.reference.get("cores") and spec.candidate.get("cores")):
            notes.append(
                f"the sheets give no cores: their whole-chip peak ratio is taken for stages "
                f"that ran on {threads} thread{'s' if threads != 1 else ''}"
            )
        if spec.measured:
            notes.append(
                f"calibrations read at {spec.reference_threads} thread(s) on the reference and "
                f"{spec.candidate_threads} on the candidate"
            )
            notes.append(
                "measured on both machines at the sizes a vendor quotes (large GEMM, STREAM); "
                "this pipeline's own operators are timed here only, and their efficiency "
                "against the peak is assumed to carry over"
            )
    notes += _far_below(found)
    rows = []
    for stage, klass, ms, share in found.classes[["stage", "class", "ms", "share"]].itertuples(
        index=False
    ):
        key = ""  # the claim's class key that applied (a spec's ratio has none)
        given = ratios.get(klass) if spec is not None else None
        if given is None and spec is None:
            given = _class_ratio(claim, klass, stage, layers.get(stage, ""))
            key = given[1] if given else ""
        ratio = given[0] if given else 1.0
        rows.append((stage, klass, ms, share, ratio, ms / ratio, key))
    columns = ["stage", "class", "ms", "share", "ratio", "left_ms", "key"]
    stages = pd.DataFrame(rows, columns=columns)
    speedups, key_threads = [], []
    for stage, rows_of in stages.groupby("stage", sort=True):
        left = float(rows_of["left_ms"].sum())
        total = float(rows_of["ms"].sum())
        if total <= 0 or left <= 0:
            continue
        key = f"stage:{stage}/{Category.COMPUTE.value}"
        speedups.append((parse_key(key), total / left))
        asked = _stage_threads(claim, candidate_threads, rows_of)
        if asked is not None:
            key_threads.append((key, asked))
    others = [(t, f) for t, f in claim.speedups if not t.klass]
    if LINK in ratios:
        link_key = f"{Resource.LINK.value}.{Category.MOVEMENT.value}"
        others.append((parse_key(link_key), ratios[LINK][0]))
    aware = replace(
        claim,
        name=f"{claim.name} (by class)",
        speedups=tuple(others + speedups),
        key_threads=tuple(key_threads),
        threads=None,
        spec=None,
    )
    naive = replace(
        claim,
        name=f"{claim.name} (one ratio)",
        speedups=(*others, *_one_ratio(claim, ratios, spec, _dtype(found))),
        key_threads=(),
        threads=candidate_threads or claim.threads,
        spec=None,
    )
    left = stages.groupby("class")["left_ms"].sum()
    limiting = str(left.idxmax()) if len(left) else ""
    return Transfer(claim, ratios, stages, naive, aware, limiting, tuple(notes), found)


def _one_ratio(
    claim: Claim, ratios: dict[str, tuple[float, str]], spec: Spec | None, dtype: str
) -> list[tuple[Target, float]]:
    """The naive reading: a spec's headline (the whole chips' peak ratio, as a datasheet puts
    it) on all compute; class keys each as their scope's whole compute (the largest where a
    scope has several)."""
    if spec is not None:
        peak = spec.ratio("peak_gflops_bf16" if dtype == "bfloat16" else "peak_gflops_fp32")
        headline = peak or spec.ratio("peak_gflops_fp32") or ratios.get(COMPUTE_BOUND, (1.0,))[0]
        return [(parse_key(Category.COMPUTE.value), headline)]
    scoped: dict[str, float] = {}
    for target, factor in claim.speedups:
        if target.klass:
            scope = f"{target.scope}:{target.scope_name}/" if target.scope else ""
            key = f"{scope}{Category.COMPUTE.value}"
            scoped[key] = max(factor, scoped.get(key, 0.0))
    return [(parse_key(key), factor) for key, factor in scoped.items()]


def _dtype(found: Roofline) -> str:
    """The type most of the compute-bound FLOPs were in (its peak is the one that applies)."""
    dtypes = found.dtypes
    return max(dtypes, key=dtypes.__getitem__) if dtypes else "float32"


def _stage_threads(claim: Claim, candidate: int | None, rows: pd.DataFrame) -> float | None:
    """The cores a stage's compute asks under the claim: each class's threads weighted by its
    time left (the interpreter's classes one thread); None when the claim gives none."""
    given = dict(claim.key_threads)
    base = candidate or claim.threads or given.get("*")
    if base is None and not given:
        return None
    weighted = total = 0.0
    for klass, left, key in rows[["class", "left_ms", "key"]].itertuples(index=False):
        own = given.get(key) if key else None  # [threads] for the class key that applied
        if own is None:
            own = 1.0 if klass in ONE_THREAD_CLASSES else base
        weighted += (own or 1.0) * left
        total += left
    return weighted / total if total else None


FAR_BELOW = 0.25  # a class's operators reaching less of their roof than this are bound elsewhere


def _far_below(found: Roofline) -> list[str]:
    """Say where a class's operators reach little of their roof: what bounds them then is not
    the peak or the bandwidth (small operators, caches, one thread), and their ratio may not
    follow the one claimed for the class."""
    out = []
    for row in found.stages.to_dict(orient="records"):
        for what, got, roof, unit in (
            ("compute-bound", row["gflops"], row["peak_gflops"], "GEMM peak"),
            ("memory-bound", row["gbs"], row["bandwidth_gbs"], "STREAM triad"),
        ):
            if got == got and roof and got < FAR_BELOW * roof:  # NaN: no such work
                out.append(
                    f"{row['stage']}: its {what} operators reach {got / roof:.0%} of the {unit}: "
                    f"something else bounds them, and they may not follow the {what} ratio"
                )
    return out
