"""`gapbench validate`: the projection arithmetic checked against real runs on this machine.

Each condition changes one component between a setting A and a setting B; the workloads that
take part declare theirs (``Workload.conditions``, ``Workload.virtual_check``), so a
third-party workload can take part too. The component's speedup is measured the way a vendor
measures it: each stage alone, in isolation, under A and under B (its compute time per call).
That speedup, as a claim, is projected from a set run under A and checked against a set run
under B, pair by pair over K replicates, beside the noise floor: a second set under A against
the first, measured the same way.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from harness import plugins
from harness.analysis.outputs import output_agreement
from harness.archive.result_set import ResultSet
from harness.archive.schema import RunLength
from harness.archive.store import Archive
from harness.archive.tables import by_replicate
from harness.errors import UserError
from harness.experiments.components import components
from harness.experiments.outcome import Outcome, Trial
from harness.experiments.vendor import Transferred, class_moves, vendor_claim
from harness.machine.cores import whole
from harness.machine.fingerprint import Fingerprint
from harness.machine.threads import threads
from harness.measure.config import RunConfig
from harness.measure.replicates import run
from harness.projection.claims import Claim, parse_key
from harness.projection.project import project
from harness.projection.request_model import request_models, steps
from harness.projection.transfer import resolve
from harness.record.virtual import Virtual
from harness.words import Category
from harness.workload import Condition, Workload

PROFILE_REQUESTS = 4  # the profiling pass that classes set A's compute
VIRTUAL = "virtual"  # the name --only gives the virtual speedup checks


def _taking_part() -> list[type[Workload]]:
    """Every registered workload that declares a condition or a virtual check: the buyer's
    pipelines (the suite) first, then the self-checks, each group by name. One that will not
    load takes no part (`gapbench workloads` says why) rather than stopping the others."""
    found = []
    for name in plugins.registered():
        try:
            found.append(plugins.load(name))
        except UserError:
            continue
    taking = [cls for cls in found if cls.conditions or cls.virtual_check]
    return sorted(taking, key=lambda cls: (not cls.in_suite, cls.name))


def trials(cores: int) -> list[Trial]:
    """Every declared condition, its "all cores" settings counted on ``cores``."""
    out = []
    for cls in _taking_part():
        for c in cls.conditions:
            out.append(Trial(cls.name, replace(c, a=c.a.on(cores), b=c.b.on(cores))))
    names = [t.condition.name for t in out]
    repeated = sorted({n for n in names if names.count(n) > 1} | ({VIRTUAL} & set(names)))
    if repeated:
        raise UserError(f"two workloads declare a validation condition named {repeated[0]!r}")
    return out


def virtual_checks() -> list[tuple[str, Virtual]]:
    """(workload, virtual speedup) for every workload that declares one."""
    return [(cls.name, cls.virtual_check) for cls in _taking_part() if cls.virtual_check]


def condition_names() -> list[str]:
    """What ``--only`` may name: every declared condition, and the virtual checks."""
    return [t.condition.name for t in trials(1)] + ([VIRTUAL] if virtual_checks() else [])


def check_only(only: tuple[str, ...]) -> None:
    """Refuse a condition no workload declares, naming those that are."""
    known = condition_names()
    unknown = [n for n in only if n not in known]
    if unknown:
        raise UserError(f"unknown condition {unknown[0]!r} (one of {', '.join(sorted(known))})")


@dataclass(frozen=True)
class Plan:
    """How much to measure: replicates per set, and each replicate's requests."""

    size: str
    replicates: int
    measurement: RunLength
    inputs: int  # requests whose stage inputs the component benchmark runs on
    rounds: int  # alternating A/B rounds of it
    separate_processes: bool  # replicates each in a fresh process, or one after another here

    @classmethod
    def of(cls, quick: bool) -> Plan:
        if quick:  # what CI runs: replicates in this process, where they start in no time
            few = RunLength(warmup=2, min_requests=12, min_duration_s=0)
            return cls("quick", 5, few, 4, 4, separate_processes=False)
        # The workloads' quick sizes either way: a condition changes how the work runs, and
        # more requests per replicate, not bigger requests, are what tighten its figures.
        many = RunLength(warmup=5, min_requests=64, min_duration_s=2.0)
        return cls("quick", 5, many, 12, 9, separate_processes=True)


def _replicate(result: ResultSet, replicate: int) -> ResultSet:
    keep = result.intervals["replicate"] == replicate
    requests = result.requests[result.requests["replicate"] == replicate]
    # The first replicate's profile classes every replicate's compute: the same work.
    return ResultSet.of(
        result.manifest, result.intervals[keep], requests, result.telemetry, None, result.operators
    )


def _p50s(result: ResultSet) -> dict[int, float]:
    ok = result.requests[result.requests["ok"]]
    return {r: float(g["latency_s"].median()) for r, g in by_replicate(ok)}


def _config(plan: Plan, workload: str, device: str, **execution: Any) -> RunConfig:
    return RunConfig(
        workload,
        device=device,
        size=plan.size,
        repeat=plan.replicates,
        measurement=plan.measurement,
        show_progress=False,
        separate_processes=plan.separate_processes,
        **execution,
    )


def check_condition(
    trial: Trial,
    plan: Plan,
    archive: Archive,
    fingerprint: Fingerprint,
    device: str,
    say: Callable[[str], None],
) -> Outcome:
    """One condition: its components alone, then A, B and A again, and the paired errors."""
    condition = trial.condition
    a_label, b_label = condition.a.label, condition.b.label
    say(f"{condition.name}: each stage alone under {a_label} and {b_label}")
    component = components(trial.workload, condition, device, plan.size, plan.inputs, plan.rounds)
    claim = _claim(condition, component, "each stage alone, under both settings")
    vendor = vendor_claim(condition, archive, fingerprint)
    sets = {}
    for key, setting in (("a", condition.a), ("b", condition.b), ("a_again", condition.a)):
        say(f"{condition.name}: {plan.replicates} replicates under {setting.label} ({key})")
        # A and B profiled: each class's time on both sides says which one moved unlike the
        # micro-benchmark it was claimed from.
        profile = PROFILE_REQUESTS if key in ("a", "b") and vendor is not None else 0
        config = _config(
            plan,
            trial.workload,
            device,
            backend=setting.backend,
            params=dict(setting.params),
            profile=profile,
        )
        with threads(setting.threads):
            sets[key] = run(config, archive, fingerprint)
    a, b, again = (_p50s(sets[k]) for k in ("a", "b", "a_again"))
    measured, naive, replayed, noise, inside = [], [], [], [], []
    one_ratio, by_class, transfer, lock = [], [], None, []
    for r in sorted(set(a) & set(b) & set(again)):
        base = _replicate(sets["a"], r)
        projection = project(base, claim)
        if vendor is not None and base.operators is not None:
            transfer = resolve(base, vendor)
            one_ratio.append(project(base, transfer.naive).speedup("replay"))
            by_class.append(project(base, transfer.aware).speedup("replay"))
        measured.append(a[r] / b[r])
        naive.append(projection.speedup("naive"))
        replayed.append(projection.speedup("replay"))
        if projection.lock is not None:  # the other end, where the set shows the lock
            lock.append(projection.speedup("lock"))
        noise.append(abs(again[r] / a[r] - 1))
        a_ms, b_ms = _stage_compute(base), _stage_compute(_replicate(sets["b"], r))
        seen = {s: a_ms[s] / b_ms[s] for s in component if b_ms.get(s)}
        inside.append(project(base, _claim(condition, seen, "inside the sets")).speedup("replay"))
    ids = {k: s.id for k, s in sets.items()}
    said = None
    if transfer is not None:
        moved = class_moves(transfer, sets["a"], sets["b"])
        said = Transferred(one_ratio, by_class, transfer.limiting, transfer.notes, moved)
    agree = output_agreement(sets["a"], sets["b"])
    return Outcome(
        trial, component, ids, measured, naive, replayed, noise, inside, said, agree, lock
    )


@dataclass(frozen=True)
class VirtualOutcome:
    """COZ-style: the other stages stretched by ``factor``, the latency rescaled, beside the
    projection of the same speedup; reported apart from the target."""

    workload: str
    stage: str
    factor: float
    sets: dict[str, str]
    virtual: list[float]  # per replicate: A's p50 over the stretched p50 / factor
    naive: list[float]
    replay: list[float]

    def error(self, model: str) -> float:
        projected = self.naive if model == "naive" else self.replay
        return statistics.median(
            abs(p / v - 1) for p, v in zip(projected, self.virtual, strict=True)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "stage": self.stage,
            "factor": self.factor,
            "sets": self.sets,
            "virtual_speedup": statistics.median(self.virtual),
            "naive_speedup": statistics.median(self.naive),
            "replay_speedup": statistics.median(self.replay),
            "naive_error": self.error("naive"),
            "replay_error": self.error("replay"),
            "per_replicate": {"virtual": self.virtual, "naive": self.naive, "replay": self.replay},
        }


def check_virtual(
    workload: str,
    virtual: Virtual,
    plan: Plan,
    archive: Archive,
    fingerprint: Fingerprint,
    device: str,
) -> VirtualOutcome:
    """A stage made virtually ``factor`` times faster, against the projection of the same."""
    sets = {}
    for key, stretched in (("a", ""), ("stretched", f"{virtual.stage}={virtual.factor}")):
        config = _config(plan, workload, device, virtual=stretched)
        sets[key] = run(config, archive, fingerprint)
    claim = Claim(
        name=f"{virtual.stage} {virtual.factor:g}x",
        speedups=tuple(
            (parse_key(f"stage:{virtual.stage}/{category.value}"), virtual.factor)
            for category in (Category.COMPUTE, Category.MOVEMENT)
        ),
        source="gapbench validate: virtual speedup",
    )
    a, stretched_p50 = _p50s(sets["a"]), _p50s(sets["stretched"])
    measured, naive, replayed = [], [], []
    for r in sorted(set(a) & set(stretched_p50)):
        projection = project(_replicate(sets["a"], r), claim)
        measured.append(a[r] / (stretched_p50[r] / virtual.factor))
        naive.append(projection.speedup("naive"))
        replayed.append(projection.speedup("replay"))
    ids = {k: s.id for k, s in sets.items()}
    return VirtualOutcome(workload, virtual.stage, virtual.factor, ids, measured, naive, replayed)


@dataclass(frozen=True)
class Validation:
    """Every condition checked, the virtual checks apart, and how long it all took."""

    outcomes: tuple[Outcome, ...]
    virtual: tuple[VirtualOutcome, ...]
    seconds: float
    # Conditions that could not be checked, and why: the others' minutes are kept.
    failed: tuple[tuple[str, str], ...] = ()

    @property
    def passed(self) -> int:
        """Conditions whose replay is within max(3%, noise floor)."""
        return sum(o.passes for o in self.outcomes)

    @property
    def pairs(self) -> int:
        """Paired replicates behind each figure."""
        found = [len(o.measured) for o in self.outcomes] + [len(v.virtual) for v in self.virtual]
        return max(found, default=0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "passed": self.passed,
            "pairs": self.pairs,
            "conditions": [o.to_dict() for o in self.outcomes],
            "virtual": [v.to_dict() for v in self.virtual],
            "failed": [{"condition": name, "why": why} for name, why in self.failed],
        }


def validate(
    plan: Plan,
    archive: Archive,
    fingerprint: Fingerprint,
    *,
    device: str = "cpu",
    only: tuple[str, ...] = (),
    say: Callable[[str], None] = lambda text: None,
    clock: Callable[[], float] = lambda: 0.0,
) -> Validation:
    """Run every declared condition and virtual check (or those named in ``only``)."""
    check_only(only)
    started = clock()
    outcomes, failed = [], []
    for trial in trials(whole(fingerprint.cores)):
        if only and trial.condition.name not in only:
            continue
        try:
            outcomes.append(check_condition(trial, plan, archive, fingerprint, device, say))
        except UserError as exc:  # a workload that failed: the other conditions still count
            say(f"{trial.condition.name}: could not be checked: {exc}")
            failed.append((trial.condition.name, str(exc)))
    virtual = []
    if not only or VIRTUAL in only:
        for workload, check in virtual_checks():
            say(f"{VIRTUAL}: {workload}'s other stages stretched, against the same projection")
            virtual.append(check_virtual(workload, check, plan, archive, fingerprint, device))
    return Validation(tuple(outcomes), tuple(virtual), clock() - started, tuple(failed))


def _claim(condition: Condition, component: dict[str, float], how: str) -> Claim:
    return Claim(
        name=f"{condition.name}: {condition.b.label}",
        speedups=tuple((parse_key(f"stage:{s}/compute"), f) for s, f in component.items()),
        source=f"gapbench validate: {how}",
        threads=condition.b.threads,
    )


def _stage_compute(result: ResultSet) -> dict[str, float]:
    """Compute ms per request of each stage in a set, with the contention it met taken out
    (the replay model's work: what the stage's compute would take alone)."""
    totals: dict[str, float] = {}
    count = 0
    for _, model in request_models(result):
        count += 1
        for step in steps(model):
            if step.category == Category.COMPUTE.value:
                totals[step.stage] = totals.get(step.stage, 0.0) + step.work / 1e6
    return {stage: total / max(count, 1) for stage, total in totals.items()}
