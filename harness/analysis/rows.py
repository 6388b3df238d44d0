"""The intervals of a set's successful requests as numpy columns, strings as integer codes."""

from __future__ import annotations

import numpy as np
import pandas as pd


class Rows:
    """The intervals of the successful requests as numpy columns, strings as integer codes
    (read once: comparing codes is what makes a million rows cheap)."""

    def __init__(self, intervals: pd.DataFrame, taken: np.ndarray, row: np.ndarray) -> None:
        self.row = row
        # Usually the rows taken are a run of the stored order: then the columns are views.
        first = int(taken[0]) if len(taken) else 0
        run = bool((taken == np.arange(first, first + len(taken))).all())

        def pick(values: np.ndarray) -> np.ndarray:
            return values[first : first + len(taken)] if run else values[taken]

        self._codes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name in ("kind", "stage", "category", "resource", "label", "task"):
            column = intervals[name]
            if isinstance(column.dtype, pd.CategoricalDtype):  # as the archive reads them
                codes = pick(column.cat.codes.to_numpy())
                uniques = np.asarray(column.cat.categories, object)
            else:
                codes, found = pd.factorize(pick(column.to_numpy()))
                uniques = np.asarray(found, object)
            # Codes in the strings' order, so the tables' rows come out in one order however
            # the set was read (whole, or a block at a time).
            order = np.argsort(uniques)
            rank = np.empty(len(order) + 1, np.int64)
            rank[order], rank[-1] = np.arange(len(order)), -1
            self._codes[name] = (rank[codes], uniques[order])
        self._ints = {
            name: pick(intervals[name].to_numpy(np.int64))
            for name in ("span", "parent", "start_ns", "end_ns", "nbytes", "thread", "cpu_ns")
        }

    def missing(self) -> np.ndarray:
        """Where any string column holds no string (only a corrupt table has such a row)."""
        return np.any([codes < 0 for codes, _ in self._codes.values()], axis=0)

    def __getitem__(self, name: str) -> np.ndarray:
        return self._ints[name]

    def eq(self, name: str, value: str) -> np.ndarray:
        """Where string column ``name`` holds ``value``."""
        codes, uniques = self._codes[name]
        hits = np.flatnonzero(uniques == value)
        return codes == hits[0] if len(hits) else np.zeros(len(codes), bool)

    def isin(self, name: str, values: tuple[str, ...]) -> np.ndarray:
        codes, uniques = self._codes[name]
        return np.isin(codes, np.flatnonzero(np.isin(uniques, values)))

    def codes(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The codes of string column ``name``, and the strings they stand for."""
        return self._codes[name]
