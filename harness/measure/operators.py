"""Operators a profiling pass saw, each with its FLOPs and bytes worked out from its shapes.

One row per (stage, compute probe, operator, shapes): how often it ran, its own time (an
operator's time less the operators it called), and the FLOPs and bytes of all its calls. The
arithmetic is the textbook one per operator family (a product of ``[m, k]`` and ``[k, n]`` is
``2mkn`` FLOPs over its three matrices' bytes); an operator of no known family counts its
tensors' bytes read and written and one FLOP per element (every such one is memory-bound on any
machine a pipeline runs on, which is all the class needs). Views and allocations move nothing.
"""

from __future__ import annotations

import bisect
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from harness.archive.tables import OPERATOR_COLUMNS
from harness.machine.calibration import GemmShape

SCOPE_PREFIX = "gapbench"  # a compute probe's profiler scope: gapbench:STAGE:LABEL
# Bytes per element of the type names torch.profiler and onnxruntime write.
ELEMENT_BYTES = {
    "float": 4, "double": 8, "c10::BFloat16": 2, "c10::Half": 2, "long int": 8, "int": 4,
    "short int": 2, "bool": 1, "unsigned char": 1, "signed char": 1, "float16": 2,
    "bfloat16": 2, "int64": 8, "int32": 4, "int8": 1, "uint8": 1, "float64": 8, "float32": 4,
}  # fmt: skip
DTYPES = {"float": "float32", "c10::BFloat16": "bfloat16", "c10::Half": "float16"}
# Operators that only make a view or an allocation: their time is the framework's alone.
NO_WORK = frozenset(
    {
        "view",
        "reshape",
        "_reshape_alias",
        "_unsafe_view",
        "transpose",
        "t",
        "permute",
        "expand",
        "expand_as",
        "as_strided",
        "slice",
        "select",
        "unsqueeze",
        "squeeze",
        "alias",
        "detach",
        "empty",
        "empty_strided",
        "empty_like",
        "resize_",
        "lift_fresh",
        "split",
        "chunk",
        "unbind",
        "narrow",
        "numpy_T",
        "resolve_conj",
        "resolve_neg",
        "to",
        "Reshape",
        "Transpose",
        "Unsqueeze",
        "Squeeze",
        "Shape",
        "Identity",
        "Constant",
        "Flatten",
    }
)
# Operators that only call others (their work is counted where it is done, in the operators
# they call; their own time is the framework's).
COMPOSITE = frozenset(
    {
        "linear",
        "matmul",
        "einsum",
        "layer_norm",
        "scaled_dot_product_attention",
        "embedding",
        "softmax",
        "log_softmax",
        "dropout",
        "_to_copy",
        "clone",
        "contiguous",
        "stack",
        "flatten",
        "type_as",
    }
)
# Elementwise work per element, beyond one FLOP, of the transcendental and normalising ones.
PER_ELEMENT = {"gelu": 8, "erf": 8, "tanh": 6, "exp": 4, "silu": 5, "softmax": 5, "_softmax": 5,
               "layer_norm": 6, "native_layer_norm": 6, "Softmax": 5, "LayerNormalization": 6,
               "SkipLayerNormalization": 7, "Gelu": 8, "FastGelu": 8, "BiasGelu": 9}  # fmt: skip


def _numel(dims: Sequence[int]) -> int:
    return math.prod(int(d) for d in dims)


def _tensors(dims: Sequence[Any], types: Sequence[str]) -> list[tuple[list[int], int]]:
    """(dims, element bytes) of every tensor argument, a tensor list's members included."""
    out = []
    for shape, kind in zip(dims, types, strict=False):
        if kind == "TensorList":
            out += [(list(s), 4) for s in shape if s]
        elif shape and all(isinstance(d, int) for d in shape) and kind in ELEMENT_BYTES:
            out.append((list(shape), ELEMENT_BYTES[kind]))
    return out


def cost(name: str, dims: Sequence[Any], types: Sequence[str], out: Sequence[Any] = ()) -> tuple:
    """(FLOPs, bytes) of one call of operator ``name`` (``aten::`` dropped) from its input
    shapes and types, and its output shapes where the profiler gives them (onnxruntime)."""
    base = name.removeprefix("aten::").rstrip("_")
    if base in NO_WORK or name in NO_WORK or base in COMPOSITE:
        return 0.0, 0.0
    tensors = _tensors(dims, types)
    if not tensors:
        return 0.0, 0.0
    size = tensors[0][1] if base not in ("addmm", "addmv", "baddbmm") else tensors[-1][1]
    read = sum(_numel(s) * b for s, b in tensors)
    written = sum(_numel(s) * size for s in out) if out else 0
    matrices = [s for s, _ in tensors if len(s) >= 1]
    products = ("mm", "addmm", "MatMul", "FusedMatMul", "Gemm", "bmm", "baddbmm")
    if base in products and len(matrices) >= 2:
        a, b = matrices[-2], matrices[-1]
        if base == "Gemm" and len(matrices) == 3:
            a, b = matrices[0], matrices[1]
        m, k, n = (a[-2] if len(a) > 1 else 1), a[-1], b[-1]
        if out and len(out[0]) >= 2:  # a transposed operand (Gemm's transB): the output says
            m, n = out[0][-2], out[0][-1]
        batch = _numel(a[:-2])
        return 2.0 * batch * m * k * n, float(read + (written or batch * m * n * size))
    if base in ("mv", "addmv") and len(matrices) >= 2 and len(matrices[-2]) == 2:
        rows, inner = matrices[-2]
        return 2.0 * rows * inner, float(read + rows * size)
    if "scaled_dot_product" in base and len(matrices) >= 3:
        query, key, value = matrices[0], matrices[1], matrices[2]
        batch = _numel(query[:-2])
        length, keys = query[-2], key[-2]
        flops = 2.0 * batch * length * keys * (query[-1] + value[-1])
        return flops, float(read + _numel(query) * size)
    if base in ("copy", "cat", "Concat"):
        # Every byte read is written once more: a copy's destination is among its inputs.
        moved = read if base == "copy" else 2 * read
        return 0.0, float(moved)
    if base in ("index_select", "Gather"):
        table, index = matrices[0], matrices[-1]
        row = _numel(table[1:]) * size
        return 0.0, float(2 * _numel(index) * row + _numel(index) * 8)
    largest = max(_numel(s) for s in matrices)
    per = PER_ELEMENT.get(base, 1)
    return float(per * largest), float(read + (written or largest * size))


def torch_operators(
    trace: Mapping[str, Any], scopes: Mapping[tuple[str, str], Any] | None = None
) -> pd.DataFrame:
    """The ``aten::`` operators of a torch.profiler chrome trace recorded with shapes, each
    assigned to the gapbench compute scope (``gapbench:STAGE:LABEL``) around it on its thread;
    operators outside every scope are left out."""
    events = [e for e in trace.get("traceEvents", []) if e.get("ph") == "X" and "dur" in e]
    ops: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    scoped: dict[Any, list[tuple[float, float, tuple[str, str]]]] = defaultdict(list)
    for e in events:
        name = e["name"]
        if name.startswith("aten::"):
            ops[e["tid"]].append(e)
        elif name.startswith(f"{SCOPE_PREFIX}:"):
            _, stage, label = name.split(":", 2)
            scoped[e["tid"]].append((e["ts"], e["ts"] + e["dur"], (stage, label)))
    rows: list[tuple[Any, ...]] = []
    for tid, found in ops.items():
        spans = sorted(scoped.get(tid, []))
        starts = [s for s, _, _ in spans]
        for e, own in _own_times(found):
            at = bisect.bisect_right(starts, e["ts"]) - 1
            if at < 0 or spans[at][1] < e["ts"] + e["dur"]:
                continue
            args = e.get("args", {})
            dims, types = args.get("Input Dims", []), args.get("Input type", [])
            flops, nbytes = cost(e["name"], dims, types)
            kind = next((t for t in types if t in ELEMENT_BYTES), "")
            rows.append((*spans[at][2], e["name"], json.dumps(dims), DTYPES.get(kind, kind),
                         own, flops, nbytes))  # fmt: skip
    return _grouped(rows)


def _own_times(found: list[dict[str, Any]]) -> Iterable[tuple[dict[str, Any], float]]:
    """Each operator with its own time (µs): its span less the operators directly inside it."""
    found = sorted(found, key=lambda e: (e["ts"], -e["dur"]))
    inner = [0.0] * len(found)
    stack: list[int] = []
    for i, e in enumerate(found):
        while stack and found[stack[-1]]["ts"] + found[stack[-1]]["dur"] <= e["ts"]:
            stack.pop()
        if stack:
            inner[stack[-1]] += e["dur"]
        stack.append(i)
    for e, taken in zip(found, inner, strict=True):
        yield e, max(float(e["dur"]) - taken, 0.0)


def ort_operators(events: Sequence[Mapping[str, Any]], stage: str, label: str) -> pd.DataFrame:
    """onnxruntime's per-node kernel times of one graph, run inside compute probe ``label``."""
    rows = []
    for e in events:
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time"):
            continue
        args = e.get("args", {})
        inputs = [next(iter(d.items())) for d in args.get("input_type_shape", []) if d]
        outputs = [next(iter(d.values())) for d in args.get("output_type_shape", []) if d]
        types, dims = [t for t, _ in inputs], [s for _, s in inputs]
        op = str(args.get("op_name", ""))
        flops, nbytes = cost(op, dims, types, outputs)
        kind = types[0] if types else ""
        rows.append((stage, label, op, json.dumps(dims), DTYPES.get(kind, kind),
                     float(e.get("dur", 0)), flops, nbytes))  # fmt: skip
    return _grouped(rows)


def _grouped(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    """One row per (stage, label, operator, shapes, dtype): calls and summed time and work."""
    frame = pd.DataFrame(
        rows, columns=["stage", "label", "operator", "shapes", "dtype", "own_us", "flops", "bytes"]
    )
    keys = ["stage", "label", "operator", "shapes", "dtype"]
    grouped = frame.groupby(keys, sort=True, observed=True)
    out = grouped.agg(
        calls=("own_us", "size"), own_us=("own_us", "sum"), flops=("flops", "sum"),
        bytes=("bytes", "sum"),
    ).reset_index()  # fmt: skip
    return out[[c for c in OPERATOR_COLUMNS if c != "replicate"]]


PRODUCTS = (
    "aten::mm",
    "aten::addmm",
    "aten::bmm",
    "aten::baddbmm",
    "MatMul",
    "FusedMatMul",
    "Gemm",
)


def gemm_shapes(operators: pd.DataFrame, most: int = 8) -> list[GemmShape]:
    """The matrix products a profile saw, as ``[m, k] @ [k, n]`` shapes (a batch folded into
    m), those that took the most time first, at most ``most`` of them."""
    products = operators[operators["operator"].isin(PRODUCTS)]
    ranked = products.groupby(["shapes", "dtype", "operator"], observed=True)["own_us"].sum()
    out: list[GemmShape] = []
    for (shapes, dtype, operator), _ in ranked.sort_values(ascending=False).items():
        matrices = [d for d in json.loads(shapes) if isinstance(d, list) and len(d) >= 2]
        if len(matrices) < 2 or dtype not in ("float32", "bfloat16", "float16"):
            continue
        a, b = (matrices[0], matrices[1]) if operator == "Gemm" else (matrices[-2], matrices[-1])
        shape = GemmShape(math.prod(a[:-1]), a[-1], b[-1], str(dtype))
        if shape not in out:
            out.append(shape)
        if len(out) == most:
            break
    return out
