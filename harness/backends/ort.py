"""onnxruntime as a backend: execution providers, sessions, IO binding to torch tensors, profiling.

A graph's inputs and outputs are torch tensors bound to the session by pointer (IO binding), on
the host as on a GPU, so the same code runs both and nothing is copied behind the probes' back:
binding is the movement, the session run is the compute. On CUDA the provider is given a stream
of gapbench's own (torch's default stream has handle 0, which onnxruntime ignores, falling back
to a stream of its own that CUDA events on torch's stream would not see); the stream is recorded.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UserError

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
# Most specific first, the CPU last as the fallback for operators a provider lacks. TensorRT
# builds an engine per input shape at first use, so it runs only when named (--providers).
PREFERENCE = (
    "TensorrtExecutionProvider",
    CUDA,
    "ROCMExecutionProvider",
    "MIGraphXExecutionProvider",
    "OpenVINOExecutionProvider",
    "CoreMLExecutionProvider",
    "DmlExecutionProvider",
    CPU,
)
CUDA_PROVIDERS = frozenset(PREFERENCE[:4])  # run on the device torch calls "cuda"
# Providers that run the graph off the host CPU: on --device cpu they would hide copies.
ACCELERATORS = CUDA_PROVIDERS | {"CoreMLExecutionProvider", "DmlExecutionProvider"}
HOST_PROVIDERS = ("OpenVINOExecutionProvider", CPU)  # OpenVINO's default device is the CPU
ON_REQUEST = frozenset({"TensorrtExecutionProvider"})
# Not a local compute provider: it sends the graph to a remote endpoint.
NOT_COMPUTE = frozenset({"AzureExecutionProvider"})


def available_providers() -> list[str]:
    """What this onnxruntime build offers to compute here, in gapbench's order of preference
    (providers it does not know come last: they run only when named)."""
    import onnxruntime

    offered = [p for p in onnxruntime.get_available_providers() if p not in NOT_COMPUTE]
    rank = {p: i for i, p in enumerate(PREFERENCE)}
    return sorted(offered, key=lambda p: rank.get(p, len(PREFERENCE)))


def choose_providers(
    device: str, requested: Sequence[str] = (), available: Sequence[str] | None = None
) -> tuple[str, ...]:
    """The providers for ``device``: ``requested`` as given (checked), else the best available.

    On a GPU the first must run on that GPU, and on the host none may run elsewhere: the
    model's tensors live on ``device``, and a session elsewhere would hide copies in its run.
    """
    offered = [p for p in (available_providers() if available is None else available)]
    offered = [p for p in offered if p not in NOT_COMPUTE]
    if requested:
        remote = [p for p in requested if p in NOT_COMPUTE]
        if remote:
            raise UserError(f"gapbench does not use {remote[0]}: it runs the graph remotely")
        unknown = [p for p in requested if p not in offered]
        if unknown:
            raise UserError(
                f"onnxruntime here has no {', '.join(unknown)} (available: {', '.join(offered)})"
            )
        chosen = tuple(requested)
    elif device == "cpu":
        chosen = tuple(p for p in offered if p in HOST_PROVIDERS)
    else:
        chosen = tuple(p for p in offered if p in CUDA_PROVIDERS - ON_REQUEST or p == CPU)
    elsewhere = [p for p in chosen if p in ACCELERATORS]
    if device == "cpu" and elsewhere:
        raise UserError(f"--device cpu cannot use {', '.join(elsewhere)}; use --device cuda")
    if device != "cpu" and (not chosen or chosen[0] not in CUDA_PROVIDERS):
        raise UserError(
            f"onnxruntime here has no GPU execution provider for --device {device} (available: "
            f"{', '.join(offered)}); install onnxruntime-gpu, or use --device cpu"
        )
    return chosen


@dataclass(frozen=True)
class SessionConfig:
    """How sessions are made: providers, their options, threads; recorded as execution config."""

    providers: tuple[str, ...]
    intra_op_threads: int
    inter_op_threads: int = 1
    graph_optimization: str = "ORT_ENABLE_ALL"
    execution_mode: str = "ORT_SEQUENTIAL"
    # onnxruntime's pool threads spin after a run by default, holding cores the next stage
    # needs; in a pipeline that shows as other stages' waits, so they sleep instead.
    allow_spinning: bool = False
    provider_options: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def options(self, profile_prefix: str | None = None) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = self.inter_op_threads
        level = getattr(ort.GraphOptimizationLevel, self.graph_optimization)
        options.graph_optimization_level = level
        options.execution_mode = getattr(ort.ExecutionMode, self.execution_mode)
        options.log_severity_level = 3  # errors only: warnings about unused initializers are noise
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if self.allow_spinning else "0"
        )
        if profile_prefix is not None:
            options.enable_profiling = True
            options.profile_file_prefix = profile_prefix
        return options

    def session(self, path: Path, profile_prefix: str | None = None) -> Any:
        import onnxruntime as ort

        providers = [(p, dict(self.provider_options.get(p, {}))) for p in self.providers]
        return ort.InferenceSession(str(path), self.options(profile_prefix), providers=providers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "providers": list(self.providers),
            "provider_options": {k: dict(v) for k, v in self.provider_options.items()},
            "intra_op_threads": self.intra_op_threads,
            "inter_op_threads": self.inter_op_threads,
            "graph_optimization": self.graph_optimization,
            "execution_mode": self.execution_mode,
            "allow_spinning": self.allow_spinning,
            "io_binding": True,
        }


def session_config(device: str, providers: tuple[str, ...], threads: int, stream: int = 0):
    """The session config for ``device``; ``stream`` is the CUDA stream the provider must use."""
    options: dict[str, dict[str, str]] = {}
    if stream and providers[0] in (CUDA, "ROCMExecutionProvider"):
        options[providers[0]] = {"user_compute_stream": str(stream)}
    return SessionConfig(providers, intra_op_threads=threads, provider_options=options)


_NUMPY_TYPES = {"float32": "float32", "float16": "float16", "int64": "int64", "int32": "int32"}


def _bind(bind: Any, name: str, tensor: Any) -> None:
    import numpy as np

    if not tensor.is_contiguous():  # a contiguous copy made here would be freed before the run
        raise ValueError(f"{name}: IO binding needs a contiguous tensor")
    dtype = np.dtype(_NUMPY_TYPES[str(tensor.dtype).removeprefix("torch.")])
    device = tensor.device
    bind(name, device.type, device.index or 0, dtype, tuple(tensor.shape), tensor.data_ptr())


class Graph:
    """One onnxruntime session whose inputs and outputs are torch tensors, bound by pointer."""

    def __init__(self, name: str, path: Path, config: SessionConfig) -> None:
        self.name, self.path, self.config = name, path, config
        self.session = config.session(path)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def bind(self, inputs: Sequence[Any], outputs: Sequence[Any]) -> Binding:
        """An IO binding of ``inputs`` and preallocated ``outputs`` (contiguous torch tensors)."""
        binding = self.session.io_binding()
        for name, tensor in zip(self.input_names, inputs, strict=True):
            _bind(binding.bind_input, name, tensor)
        for name, tensor in zip(self.output_names, outputs, strict=True):
            _bind(binding.bind_output, name, tensor)
        return Binding(binding, (*inputs, *outputs))

    def run(self, binding: Binding) -> None:
        self.session.run_with_iobinding(binding.io_binding)


@dataclass(frozen=True)
class Binding:
    """An onnxruntime IO binding and the tensors behind its raw pointers, kept alive with it."""

    io_binding: Any
    tensors: tuple[Any, ...]


@dataclass(frozen=True)
class GraphProfile:
    """What onnxruntime's profiler saw of one graph: its runs and its nodes' kernel time."""

    runs: int
    run_us: float  # the session's `model_run` events
    node_us: float  # the `Node` kernel events inside them
    events: list[dict[str, Any]]


class OrtProfiler:
    """onnxruntime's per-node profile of some graphs over a profiling pass.

    Profiling is a session option, so ``start`` swaps each graph's session for a profiling one
    and ``stop`` ends it, reads the profile and puts the timed session back.
    """

    name = "onnxruntime"

    def __init__(self, graphs: Sequence[Graph], probe_prefix: str = "") -> None:
        """``probe_prefix`` + a graph's name labels the compute probe around its runs."""
        self.graphs = list(graphs)
        self.probe_prefix = probe_prefix
        self._timed: list[Any] = []
        self._folder: tempfile.TemporaryDirectory[str] | None = None

    def start(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="gapbench-ort-profile-")
        self._timed = [g.session for g in self.graphs]
        for graph in self.graphs:
            prefix = str(Path(self._folder.name) / graph.name)
            graph.session = graph.config.session(graph.path, profile_prefix=prefix)

    def stop(self) -> dict[str, GraphProfile]:
        """Each graph's profile by the label of its compute probe; the graphs run their timed
        sessions again."""
        profiles = {}
        try:
            for graph in self.graphs:
                path = Path(graph.session.end_profiling())
                events = json.loads(path.read_text())
                profiles[self.probe_prefix + graph.name] = read_profile(events, graph.name)
        finally:
            for graph, session in zip(self.graphs, self._timed, strict=True):
                graph.session = session
            if self._folder is not None:
                self._folder.cleanup()
        return profiles


def read_profile(events: list[dict[str, Any]], graph: str) -> GraphProfile:
    """Sum one session's profile: `model_run` events and the node kernel time inside them."""
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    nodes = [
        e
        for e in events
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")
    ]
    for event in events:
        event["pid"] = graph  # one Perfetto process per graph once the profiles are merged
    return GraphProfile(
        runs=len(runs),
        run_us=float(sum(e.get("dur", 0) for e in runs)),
        node_us=float(sum(e.get("dur", 0) for e in nodes)),
        events=events,
    )


@contextmanager
def on_stream(stream: Any) -> Iterator[None]:
    """Run the body on ``stream`` (the provider's), ordered after and before torch's stream."""
    if stream is None:
        yield
        return
    import torch

    caller = torch.cuda.current_stream()
    stream.wait_stream(caller)  # inputs written on the caller's stream are ready
    with torch.cuda.stream(stream):
        yield
    caller.wait_stream(stream)  # outputs are ready before the caller's stream reads them
