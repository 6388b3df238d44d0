"""The RAG workload's model stages on each backend: torch eager, or onnxruntime sessions.

Both run the same algorithm on the same weights: a sentence encoder, then a decoder's prefill
and decode steps with the key/value cache passed in and out. With onnxruntime the encoder is one
graph and the decoder two (prefill, and a decode step taking and returning the cache), exported
from the torch modules and cached on disk. Binding a session's inputs and outputs is probed as
movement; the stage's compute probe around the call covers the run.
"""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import asdict
from typing import Any

import torch
from torch import Tensor

from harness.backends import onnx_export, ort
from harness.backends.onnx_export import Exported, GraphSpec
from harness.errors import UserError
from harness.workload import StageContext
from workloads import models
from workloads.models import Decoder, Encoder, Prefill

Cache = tuple[Tensor, Tensor]  # keys, values: [layers, batch, heads, positions, head_dim]
RUN_PREFIX = "run "  # a session run's compute probe is labelled "run <graph>"

ENCODER = GraphSpec(
    "encoder",
    inputs=("input_ids", "attention_mask"),
    outputs=("sentence_embedding",),
    dynamic={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}},
)
PREFILL = GraphSpec(
    "prefill",
    inputs=("input_ids",),
    outputs=("logits", "keys", "values"),
    dynamic={"input_ids": {0: "batch", 1: "seq"}},
)
DECODE = GraphSpec(
    "decode",
    inputs=("input_ids", "past_keys", "past_values"),
    outputs=("logits", "keys", "values"),
    dynamic={
        "input_ids": {0: "batch"},
        "past_keys": {1: "batch", 3: "past"},
        "past_values": {1: "batch", 3: "past"},
    },
)


class TorchModels:
    """The model stages in torch, eager, under inference mode."""

    backend = "torch"

    def __init__(self, encoder: Encoder, decoder: Decoder) -> None:
        self.encoder, self.decoder = encoder, decoder

    def encode(self, ctx: StageContext, ids: Tensor) -> Tensor:
        """One sequence's embedding [hidden] from its ids [seq]."""
        with torch.inference_mode():
            batch = ids[None]
            return self.encoder(batch, torch.ones_like(batch))[0]

    def prefill(self, ctx: StageContext, prompt: Tensor) -> tuple[Tensor, Cache]:
        """The last position's logits [1, vocab] and the cache of a prompt [1, seq]."""
        with torch.inference_mode():
            logits, keys, values = self.decoder(prompt, *self.decoder.empty_cache(1, prompt.device))
        return logits, (keys, values)

    def decode(self, ctx: StageContext, token: Tensor, cache: Cache) -> tuple[Tensor, Cache]:
        """One step: the logits after ``token`` [1, 1] and the cache extended by it."""
        with torch.inference_mode():
            logits, keys, values = self.decoder(token, *cache)
        return logits, (keys, values)

    def execution(self) -> dict[str, Any]:
        return {"backend": self.backend}

    def profiler(self) -> None:
        return None  # torch.profiler, the harness's default


class OrtModels:
    """The model stages in onnxruntime, with IO binding to torch tensors on the run's device.

    Inside the stage's compute probe, binding is a movement probe and each session run a
    compute probe of its own (``run <graph>``), so the session's time is set apart from the
    torch glue around it (an argmax, allocating outputs) and can be checked against what
    onnxruntime's profiler measured of the same runs.
    """

    backend = "onnxruntime"

    def __init__(
        self,
        encoder: Encoder,
        decoder: Decoder,
        description: dict[str, Any],
        device: str,
        providers: tuple[str, ...] = (),
    ) -> None:
        """Export (or find in the cache) the three graphs of CPU-resident ``encoder`` and
        ``decoder``, described by ``description`` (configs, seed), and open their sessions."""
        self.device = torch.device(device)
        self.config, self.hidden = decoder.config, encoder.config.hidden
        chosen = ort.choose_providers(device, providers)
        # torch's default stream has handle 0, which onnxruntime ignores: a stream of our own.
        self.stream = torch.cuda.Stream() if self.device.type == "cuda" else None
        handle = int(self.stream.cuda_stream) if self.stream is not None else 0
        self.session_config = ort.session_config(device, chosen, torch.get_num_threads(), handle)
        # Batch 2, not 1: torch.export specialises axes of size 1 (and 0) to constants.
        ids = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
        with torch.no_grad():
            prompt_cache = decoder(ids, *decoder.empty_cache(2))
        examples = {
            "encoder": (encoder, (ids, torch.ones_like(ids)), ENCODER),
            "prefill": (Prefill(decoder), (ids,), PREFILL),
            "decode": (decoder, (ids[:, :1], *prompt_cache[1:]), DECODE),
        }
        self.exports: dict[str, Exported] = {}
        self.graphs: dict[str, ort.Graph] = {}
        for name, (module, example, spec) in examples.items():
            self.exports[name], self.graphs[name] = self._load(
                name, module, example, spec, description
            )

    def _load(self, name: str, module, example, spec: GraphSpec, description: dict[str, Any]):
        """The graph exported (or found in the cache) and its session; a cached graph that will
        not load (a truncated weights file) is evicted and exported again, once."""
        exported = onnx_export.export_cached(module, example, spec, description)
        try:
            return exported, self._graph(name, exported)
        except UserError:
            if not exported.cached:
                raise
        onnx_export.evict(exported)
        exported = onnx_export.export_cached(module, example, spec, description)
        return exported, self._graph(name, exported)

    def _graph(self, name: str, exported: Exported) -> ort.Graph:
        try:
            return ort.Graph(name, exported.path, self.session_config)
        except Exception as exc:  # onnxruntime raises its own Fail, InvalidGraph, ...
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise UserError(f"onnxruntime cannot load the {name} graph: {first}") from exc

    def _run(self, ctx: StageContext, graph: str, inputs: list[Tensor], outputs: list[Tensor]):
        """Bind ``inputs`` and ``outputs`` to ``graph``'s session, then run it."""
        with ort.on_stream(self.stream):
            # Binding hands the session pointers: nothing is copied, so no bytes are counted.
            with ctx.movement(nbytes=0, label=f"bind {graph}", resource=self._resource(ctx)):
                binding = self.graphs[graph].bind(inputs, outputs)
            with ctx.compute(label=f"{RUN_PREFIX}{graph}"):
                self.graphs[graph].run(binding)

    def _resource(self, ctx: StageContext) -> str:
        # Binding hands pointers over; the tensors stay in the device's memory (or the host's).
        return "device" if ctx.on_device else "host-memory"

    def _empty(self, *shape: int) -> Tensor:
        return torch.empty(shape, dtype=torch.float32, device=self.device)

    def _cache(self, positions: int) -> Cache:
        c = self.config
        shape = (c.layers, 1, c.heads, positions, c.head_dim)
        return self._empty(*shape), self._empty(*shape)

    def encode(self, ctx: StageContext, ids: Tensor) -> Tensor:
        batch = ids[None]
        mask = torch.ones_like(batch)
        embedding = self._empty(1, self.hidden)
        self._run(ctx, "encoder", [batch, mask], [embedding])
        return embedding[0]

    def prefill(self, ctx: StageContext, prompt: Tensor) -> tuple[Tensor, Cache]:
        logits, cache = self._empty(1, self.config.vocab_size), self._cache(prompt.shape[1])
        self._run(ctx, "prefill", [prompt], [logits, *cache])
        return logits, cache

    def decode(self, ctx: StageContext, token: Tensor, cache: Cache) -> tuple[Tensor, Cache]:
        logits = self._empty(1, self.config.vocab_size)
        extended = self._cache(cache[0].shape[3] + 1)
        self._run(ctx, "decode", [token, *cache], [logits, *extended])
        return logits, extended

    def execution(self) -> dict[str, Any]:
        """Backend, providers, session options and threads, and where the graphs came from."""
        import onnxruntime

        session = self.graphs["encoder"].session
        return {
            "backend": self.backend,
            "onnxruntime": onnxruntime.__version__,
            **self.session_config.to_dict(),
            "providers_in_use": list(session.get_providers()),
            "cuda_stream": "gapbench's own (user_compute_stream)" if self.stream else None,
            "opset": onnx_export.OPSET,
            "exporter": "torch.onnx.export(dynamo=True)",
            "graphs": {name: e.key for name, e in self.exports.items()},
        }

    def export_facts(self) -> dict[str, Any]:
        """What getting each graph cost this time, and whether it came from the cache."""
        return {
            name: {"seconds": e.seconds, "cached": e.cached} for name, e in self.exports.items()
        }

    def profiler(self) -> ort.OrtProfiler:
        return ort.OrtProfiler(list(self.graphs.values()), probe_prefix=RUN_PREFIX)


def model_description(encoder: Encoder, decoder: Decoder, seed: int) -> dict[str, Any]:
    """What the exported graphs depend on: both configs (they share one random stream), the
    seed of the weights and the models' source."""
    source = hashlib.sha256(inspect.getsource(models).encode()).hexdigest()[:16]
    return {
        "encoder": asdict(encoder.config),
        "decoder": asdict(decoder.config),
        "seed": seed,
        "models_source": source,
        "dtype": str(decoder.lm_head.weight.dtype),
    }
