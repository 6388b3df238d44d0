"""A component's speedup measured the way a vendor measures it: each stage alone, under two
settings, on the same inputs, outside any end-to-end run."""

from __future__ import annotations

import statistics
from typing import Any

from harness import plugins
from harness.machine.threads import threads
from harness.measure.profiling import compute_times
from harness.params import resolve
from harness.record.probes import Recorder
from harness.workload import Condition, SetupContext, StageContext, topological_order

MIN_STAGE_MS = 0.2  # stages with less compute a call are left out of the claim: noise only


def components(
    workload: str, condition: Condition, device: str, size: str, inputs: int, rounds: int
) -> dict[str, float]:
    """Each stage's compute speedup from A to B, measured alone as a vendor's benchmark runs
    it: on the inputs of the first ``inputs`` requests, A and B in alternating rounds (so a
    noisy machine's drift falls on both), the median over rounds of A's time over B's."""
    cls = plugins.load(workload)
    order = topological_order(cls.stages)
    contexts = {
        s: SetupContext(device, size, backend=s.backend, params=resolve(cls.params, dict(s.params)))
        for s in (condition.a, condition.b)
    }
    instances = {}
    try:
        for setting, run_ctx in contexts.items():
            with threads(setting.threads):
                instances[setting] = cls()
                instances[setting].setup(run_ctx)
        recorded = _stage_inputs(instances[condition.a], contexts[condition.a], order, inputs)
        ratios: dict[str, list[float]] = {stage.name: [] for stage in order}
        for round_ in range(rounds + 1):  # the first round warms both up
            took = {}
            for setting in (condition.a, condition.b):
                with threads(setting.threads):
                    took[setting] = _compute_ms(
                        instances[setting], contexts[setting], order, recorded
                    )
            if round_:
                for stage in order:
                    a, b = took[condition.a][stage.name], took[condition.b][stage.name]
                    if a >= MIN_STAGE_MS * inputs and b > 0:
                        ratios[stage.name].append(a / b)
    finally:
        for instance in instances.values():
            instance.teardown()
    return {stage: statistics.median(r) for stage, r in ratios.items() if r}


def _stage_inputs(instance: Any, run_ctx: SetupContext, order: list, count: int) -> dict:
    """Each stage's arguments for the first ``count`` requests, from passes through the DAG."""
    stream = instance.requests(run_ctx)
    recorded: dict[str, list[list[Any]]] = {stage.name: [] for stage in order}
    for i in range(count):
        outputs: dict[str, Any] = {}
        for stage in order:
            args = [outputs[p] for p in stage.after] if stage.after else [stream[i % len(stream)]]
            recorded[stage.name].append(args)
            ctx = StageContext(run_ctx, Recorder(i), stage.name, i, probes=False)
            outputs[stage.name] = getattr(instance, stage.name)(ctx, *args)
    return recorded


def _compute_ms(instance: Any, run_ctx: SetupContext, order: list, recorded: dict) -> dict:
    """Each stage's compute ms (probes' own time) over its recorded inputs, stage by stage."""
    totals = {}
    for stage in order:
        method = getattr(instance, stage.name)
        total = 0.0
        for i, args in enumerate(recorded[stage.name]):
            recorder = Recorder(i)
            method(StageContext(run_ctx, recorder, stage.name, i), *args)
            total += sum(sum(v) for v in compute_times(recorder.intervals).values()) / 1e6
        totals[stage.name] = total
    return totals
