"""What-ifs a workload offers `gapbench validate`: one component changed between two settings."""

from __future__ import annotations

from dataclasses import dataclass

ALL_CORES = 0  # a Setting's threads: every core the run may use, counted on the machine


@dataclass(frozen=True)
class Setting:
    """One side of a validation condition: the backend of the model stages and their threads."""

    label: str
    backend: str = "torch"
    threads: int | None = None  # None: the machine's default; ALL_CORES: every usable core
    params: tuple[tuple[str, bool | int | float | str], ...] = ()  # the workload's, by name

    def on(self, cores: int) -> Setting:
        """This setting on a machine with ``cores`` usable cores."""
        if self.threads != ALL_CORES:
            return self
        label = f"{cores} thread{'s' if cores != 1 else ''}"
        return Setting(label, self.backend, cores, self.params)


ONE_THREAD = Setting("1 thread", threads=1)
ALL_THREADS = Setting("all cores", threads=ALL_CORES)


@dataclass(frozen=True)
class Condition:
    """A what-if that `gapbench validate` runs on a workload: one component changed, A to B."""

    name: str
    a: Setting
    b: Setting
    what: str
    # What the change is in a class of compute, where the workload knows it (half the bytes
    # scanned: "stage:retrieve/memory-bound" = 2); a change of threads is read from the
    # machine's calibration at both counts instead.
    by_class: tuple[tuple[str, float], ...] = ()
