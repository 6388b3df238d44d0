"""Export torch modules to ONNX once, cached on disk by what the graph depends on.

The dynamo exporter (``torch.onnx.export(..., dynamo=True)``) keeps dynamic batch and sequence
axes, where the legacy one bakes the traced shapes in. An export costs seconds per graph, so the
graph is kept under a key hashed from the model's description (its config and the seed of its
weights), the graph's own spec, the opset and the torch and onnx versions: a second run with the
same key pays only for loading. Cache entries are written to a temporary folder and renamed into
place, so an interrupted export never leaves a half-written graph behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UserError

OPSET = 18
CACHE_VARIABLE = "GAPBENCH_CACHE"
GRAPH_FILE = "model.onnx"  # weights go beside it in model.onnx.data


def cache_root() -> Path:
    """Where exported graphs live: ``$GAPBENCH_CACHE``, else ``~/.cache/gapbench``."""
    configured = os.environ.get(CACHE_VARIABLE)
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "gapbench"


@dataclass(frozen=True)
class GraphSpec:
    """One graph to export: its name, input and output names and which axes are dynamic.

    ``dynamic`` maps an input name to {axis: dimension name}; axes sharing a name share a size.
    """

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dynamic: Mapping[str, Mapping[int, str]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "dynamic": {k: {str(a): d for a, d in v.items()} for k, v in self.dynamic.items()},
        }


@dataclass(frozen=True)
class Exported:
    """An exported graph on disk, and what getting it cost this time."""

    spec: GraphSpec
    path: Path
    key: str
    seconds: float
    cached: bool  # True when the graph was already on disk


def cache_key(spec: GraphSpec, model: Mapping[str, Any], opset: int = OPSET) -> str:
    """The hash a graph is cached under: the model's description, the graph, opset, and the
    versions of what writes the graph (torch's exporter, onnxscript, onnx)."""
    import onnx
    import onnxscript
    import torch

    described = {
        "model": model,
        "graph": spec.to_dict(),
        "opset": opset,
        "torch": torch.__version__,
        "onnxscript": onnxscript.__version__,
        "onnx": onnx.__version__,
    }
    canonical = json.dumps(described, sort_keys=True, default=str).encode()
    return hashlib.sha256(canonical).hexdigest()[:24]


def export_cached(
    module: Any,
    example: Sequence[Any],
    spec: GraphSpec,
    model: Mapping[str, Any],
    *,
    root: Path | None = None,
    opset: int = OPSET,
) -> Exported:
    """The graph of ``module`` called on ``example``, exported now or found in the cache.

    ``model`` describes what the weights and the code depend on (config, seed, code hash); two
    modules with the same description must compute the same function.
    """
    key = cache_key(spec, model, opset)
    folder = entry(spec, key, root)
    graph = folder / GRAPH_FILE
    started = time.perf_counter()
    if graph.exists():
        return Exported(spec, graph, key, time.perf_counter() - started, cached=True)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{spec.name}-", dir=folder.parent))
    except OSError as exc:
        raise UserError(f"cannot write the export cache {folder.parent}: {exc.strerror}") from None
    try:
        try:
            _export(module, example, spec, scratch / GRAPH_FILE, opset)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"exporting the {spec.name} graph to ONNX failed: {first}") from exc
        (scratch / "spec.json").write_text(json.dumps({"key": key, "model": model}, default=str))
        try:
            scratch.rename(folder)
        except OSError:
            if not graph.exists():  # not another process finishing the same export first
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return Exported(spec, graph, key, time.perf_counter() - started, cached=False)


def entry(spec: GraphSpec, key: str, root: Path | None = None) -> Path:
    """The cache folder of one graph."""
    return (root or cache_root()) / "onnx" / f"{spec.name}-{key}"


def evict(exported: Exported) -> None:
    """Drop a cache entry that would not load (a truncated weights file, a disk error)."""
    shutil.rmtree(exported.path.parent, ignore_errors=True)


def _export(module: Any, example: Sequence[Any], spec: GraphSpec, path: Path, opset: int) -> None:
    import torch
    from torch.export import Dim

    dims: dict[str, Any] = {}
    dynamic_shapes = tuple(
        {axis: dims.setdefault(name, Dim(name)) for axis, name in spec.dynamic.get(arg, {}).items()}
        or None
        for arg in spec.inputs
    )
    # The exporter reports each step on stdout and warns about optional packages (torchvision)
    # and axis renames: a benchmark's output is not the place for them.
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            torch.inference_mode(False),
        ):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                tuple(example),
                str(path),
                dynamo=True,
                dynamic_shapes=dynamic_shapes,
                input_names=list(spec.inputs),
                output_names=list(spec.outputs),
                opset_version=opset,
                external_data=True,
                verbose=False,
            )
    finally:
        quiet.setLevel(level)
