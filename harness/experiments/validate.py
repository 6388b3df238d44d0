"""`gapbench validate`: the projection arithmetic checked against real runs on this machine.

Each condition changes one component between a setting A and a setting B. The component's
speedup is measured the way a vendor measures it: each stage alone, in isolation, under A and
under B (its compute time per call). That speedup, as a claim, is projected from a set run
under A and checked against a set run under B, pair by pair over K replicates, beside the
noise floor: a second set under A against the first, measured the same way.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from harness.analysis.breakdown import ok_requests, stages_of
from harness.projection.claims import Claim, parse_key
from harness.experiments.components import Condition, Setting, components, threads
from harness.record.probes import Category
from harness.projection.project import cores_of, machine_cores, project
from harness.projection.request_model import build, steps
from harness.measure.replicates import RunConfig, run
from harness.measure.process import Measurement
from harness.archive.store import Archive, ResultSet

TARGET = 0.03  # the replay model's median error, or the noise floor where that is larger


def conditions(cores: int) -> tuple[Condition, ...]:
    many = Setting(f"{cores} threads", threads=cores)
    one = Setting("1 thread", threads=1)
    return (
        Condition("threads", "rag", one, many, "compute threads 1 -> all cores"),
        Condition(
            "backend",
            "rag",
            Setting("torch"),
            Setting("onnxruntime", backend="onnxruntime"),
            "model stages on torch -> onnxruntime",
        ),
        Condition("contention", "branches", one, many, "two parallel branches, 1 -> all threads"),
    )


@dataclass(frozen=True)
class Plan:
    """How much to measure: replicates per set, and each replicate's requests."""

    size: str
    replicates: int
    measurement: Measurement
    inputs: int  # requests whose stage inputs the component benchmark runs on
    rounds: int  # alternating A/B rounds of it
    separate_processes: bool  # replicates each in a fresh process, or one after another here

    @classmethod
    def of(cls, quick: bool) -> Plan:
        if quick:  # what CI runs: replicates in this process, where they start in no time
            few = Measurement(warmup=2, min_requests=12, min_duration_s=0)
            return cls("quick", 5, few, 4, 4, separate_processes=False)
        # The workloads' quick sizes either way: a condition changes how the work runs, and
        # more requests per replicate, not bigger requests, are what tighten its figures.
        many = Measurement(warmup=5, min_requests=64, min_duration_s=2.0)
        return cls("quick", 5, many, 12, 9, separate_processes=True)


@dataclass(frozen=True)
class Outcome:
    """One condition: component speedups, the sets, and the paired errors."""

    condition: Condition
    component: dict[str, float]  # stage -> isolated compute speedup, A over B
    sets: dict[str, str]  # "a", "b", "a_again" -> set id
    measured: list[float]  # per replicate: B's p50 over A's (the delivered speedup)
    naive: list[float]  # per replicate: the projected speedup
    replay: list[float]
    noise: list[float]  # per replicate: |A again / A - 1|
    # The replay from components measured inside the two sets instead of alone: the same
    # arithmetic without the component benchmark's own error (warm caches, one input shape).
    in_pipeline: list[float]

    def error(self, model: str) -> float:
        """Median over replicates of |projected / measured - 1|."""
        projected = {"naive": self.naive, "replay": self.replay, "in_pipeline": self.in_pipeline}[
            model
        ]
        return statistics.median(
            abs(p / m - 1) for p, m in zip(projected, self.measured, strict=True)
        )

    @property
    def noise_floor(self) -> float:
        return statistics.median(self.noise)

    @property
    def passes(self) -> bool:
        return self.error("replay") <= max(TARGET, self.noise_floor)

    def to_dict(self) -> dict[str, Any]:
        return {
            "condition": asdict(self.condition),
            "component_speedups": self.component,
            "sets": self.sets,
            "measured_speedup": statistics.median(self.measured),
            "naive_speedup": statistics.median(self.naive),
            "replay_speedup": statistics.median(self.replay),
            "naive_error": self.error("naive"),
            "replay_error": self.error("replay"),
            "in_pipeline_replay_speedup": statistics.median(self.in_pipeline),
            "in_pipeline_replay_error": self.error("in_pipeline"),
            "noise_floor": self.noise_floor,
            "target": max(TARGET, self.noise_floor),
            "passes": self.passes,
            "per_replicate": {
                "measured": self.measured,
                "naive": self.naive,
                "replay": self.replay,
                "noise": self.noise,
                "in_pipeline": self.in_pipeline,
            },
        }


def _replicate(result: ResultSet, replicate: int) -> ResultSet:
    keep = result.intervals["replicate"] == replicate
    requests = result.requests[result.requests["replicate"] == replicate]
    return ResultSet(result.manifest, result.intervals[keep], requests, result.telemetry)


def _p50s(result: ResultSet) -> dict[int, float]:
    ok = result.requests[result.requests["ok"]]
    return {int(r): float(g["latency_s"].median()) for r, g in ok.groupby("replicate")}


def validate(
    plan: Plan,
    archive: Archive,
    fingerprint: dict[str, Any],
    *,
    device: str = "cpu",
    only: tuple[str, ...] = (),
    say: Callable[[str], None] = lambda text: None,
) -> list[Outcome]:
    """Run every condition (or those named in ``only``) and judge its projections."""
    cores = max(int(cores_of(fingerprint)), 1)
    outcomes = []
    for condition in conditions(cores):
        if only and condition.name not in only:
            continue
        say(f"{condition.name}: each stage alone under {condition.a.label} and {condition.b.label}")
        component = components(condition, device, plan.size, plan.inputs, plan.rounds)
        claim = _claim(condition, component, "each stage alone, under both settings")
        sets = {}
        for key, setting in (("a", condition.a), ("b", condition.b), ("a_again", condition.a)):
            say(f"{condition.name}: {plan.replicates} replicates under {setting.label} ({key})")
            config = RunConfig(
                condition.workload,
                device=device,
                size=plan.size,
                repeat=plan.replicates,
                measurement=plan.measurement,
                show_progress=False,
                backend=setting.backend,
                separate_processes=plan.separate_processes,
            )
            with threads(setting.threads):
                sets[key] = run(config, archive, fingerprint)
        a, b, again = (_p50s(sets[k]) for k in ("a", "b", "a_again"))
        measured, naive, replayed, noise, inside = [], [], [], [], []
        for r in sorted(set(a) & set(b) & set(again)):
            base = _replicate(sets["a"], r)
            projection = project(base, claim)
            measured.append(a[r] / b[r])
            naive.append(projection.speedup("naive"))
            replayed.append(projection.speedup("replay"))
            noise.append(abs(again[r] / a[r] - 1))
            a_ms, b_ms = _stage_compute(base), _stage_compute(_replicate(sets["b"], r))
            seen = {s: a_ms[s] / b_ms[s] for s in component if b_ms.get(s)}
            inside.append(
                project(base, _claim(condition, seen, "inside the sets")).speedup("replay")
            )
        outcomes.append(
            Outcome(
                condition,
                component,
                {k: s.id for k, s in sets.items()},
                measured,
                naive,
                replayed,
                noise,
                inside,
            )
        )
    return outcomes


VIRTUAL_STAGE, VIRTUAL_FACTOR = "generate", 1.5  # RAG's largest stage, made virtually faster


@dataclass(frozen=True)
class VirtualOutcome:
    """COZ-style: the other stages stretched by ``factor``, the latency rescaled, beside the
    projection of the same speedup; reported apart from the target."""

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


def virtual_check(
    plan: Plan, archive: Archive, fingerprint: dict[str, Any], device: str = "cpu"
) -> VirtualOutcome:
    """RAG's generate stage made virtually 1.5x faster, against the projection of 1.5x."""
    sets = {}
    for key, virtual in (("a", ""), ("stretched", f"{VIRTUAL_STAGE}={VIRTUAL_FACTOR}")):
        config = RunConfig(
            "rag",
            device=device,
            size=plan.size,
            repeat=plan.replicates,
            measurement=plan.measurement,
            show_progress=False,
            virtual=virtual,
            separate_processes=plan.separate_processes,
        )
        sets[key] = run(config, archive, fingerprint)
    claim = Claim(
        name=f"{VIRTUAL_STAGE} {VIRTUAL_FACTOR}x",
        speedups=tuple(
            (parse_key(f"stage:{VIRTUAL_STAGE}/{category}"), VIRTUAL_FACTOR)
            for category in ("compute", "movement")
        ),
        source="gapbench validate: virtual speedup",
    )
    a, stretched = _p50s(sets["a"]), _p50s(sets["stretched"])
    virtual, naive, replayed = [], [], []
    for r in sorted(set(a) & set(stretched)):
        projection = project(_replicate(sets["a"], r), claim)
        virtual.append(a[r] / (stretched[r] / VIRTUAL_FACTOR))
        naive.append(projection.speedup("naive"))
        replayed.append(projection.speedup("replay"))
    ids = {k: s.id for k, s in sets.items()}
    return VirtualOutcome(VIRTUAL_STAGE, VIRTUAL_FACTOR, ids, virtual, naive, replayed)


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
    stages = stages_of(result)
    cores = machine_cores(result)
    facts = result.manifest.get("replicates", [])
    totals: dict[str, float] = {}
    count = 0
    for replicate, intervals in ok_requests(result.intervals, result.requests):
        count += 1
        threads = facts[replicate].get("stage_threads", {}) if replicate < len(facts) else {}
        for step in steps(build(intervals, stages, cores, threads)):
            if step.category == Category.COMPUTE.value:
                totals[step.stage] = totals.get(step.stage, 0.0) + step.work / 1e6
    return {stage: total / max(count, 1) for stage, total in totals.items()}
