"""The batch inference workload: one sentence encoder over batches of sentences.

The single-model case, where the chip benchmark does matter: nearly all of a request is the
model's forward pass, so a faster chip moves end-to-end time almost one for one. Beside the
pipelines (rag, agent), whose model stages are a part of their time, it is the reference point
of the offline scenario: ``run batch-inference --scenario offline --batch 32`` hands LoadGen's
samples over 32 at a time, and each request carries that many sentences.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from harness.workload import Param, SetupContext, Stage, StageContext, Workload
from workloads import text
from workloads.models import Encoder, EncoderConfig

MAX_TOKENS = 32  # a sentence's tokens, [CLS]-free: the encoder pools every real token


@dataclass(frozen=True)
class Batch:
    """Sentences on their way through the model: ids, padded ids, mask."""

    ids: tuple[int, ...]
    input_ids: Tensor
    attention_mask: Tensor


class BatchInference(Workload):
    name = "batch-inference"
    description = "one sentence encoder over batches of sentences: the chip benchmark's case"
    stages = (
        Stage("collate", layer="ingress"),
        Stage("forward", layer="inference", after=("collate",)),
    )
    params = (
        Param(
            "sentences",
            256,
            "distinct sentences in the request stream",
            low=1,
            high=100_000,
        ),
    )

    encoder: Encoder
    config: EncoderConfig
    tokenizer: text.Tokenizer
    device: torch.device

    def setup(self, ctx: SetupContext) -> None:
        torch.manual_seed(ctx.seed)
        self.tokenizer = text.Tokenizer()
        vocab = self.tokenizer.vocab_size
        # quick: a narrow two-layer encoder, so a CI run takes seconds; default: MiniLM's shape.
        shape = {"hidden": 128, "layers": 2, "heads": 4, "intermediate": 512} if ctx.quick else {}
        self.config = EncoderConfig(vocab_size=vocab, **shape)
        self.device = torch.device(ctx.device)
        self.encoder = Encoder(self.config).eval().to(self.device)

    def requests(self, ctx: SetupContext) -> Sequence[Any]:
        count = int(ctx.params.get("sentences", 256))
        sentences = text.queries(text.Tokenizer(), count, ctx.seed)
        return [{"id": i, "text": sentence} for i, sentence in enumerate(sentences)]

    def work(self) -> Mapping[str, Any]:
        return {"encoder": asdict(self.config), "max_tokens": MAX_TOKENS}

    def batch(self, payloads: Sequence[Any]) -> Any:
        return list(payloads)

    def samples(self, payload: Any) -> int:
        return len(payload) if isinstance(payload, list) else 1

    def outputs(self, response: Any) -> Mapping[str, Any]:
        return {"ids": list(response["ids"]), "top": list(response["top"])}

    def collate(self, ctx: StageContext, payload: Any) -> Batch:
        """Tokenize each sentence and pad the batch into one id tensor and its mask."""
        sentences = payload if isinstance(payload, list) else [payload]
        with ctx.compute(label="tokenize", resource="host-cpu"):
            words = [self.tokenizer.encode(s["text"])[:MAX_TOKENS] for s in sentences]
        width = max(len(w) for w in words)
        with ctx.movement(label="pad") as probe:
            ids = torch.zeros((len(words), width), dtype=torch.int64)
            mask = torch.zeros((len(words), width), dtype=torch.int64)
            for row, w in enumerate(words):
                ids[row, : len(w)] = torch.as_tensor(w)
                mask[row, : len(w)] = 1
            probe.nbytes = ids.nbytes + mask.nbytes
        if ctx.on_device:
            with ctx.transfer(nbytes=ids.nbytes + mask.nbytes, label="h2d batch"):
                ids, mask = ids.to(self.device), mask.to(self.device)
        return Batch(tuple(int(s["id"]) for s in sentences), ids, mask)

    def forward(self, ctx: StageContext, batch: Batch) -> dict[str, Any]:
        """The encoder's forward pass over the batch; each sentence's strongest dimension."""
        with torch.inference_mode(), ctx.compute(label="encoder"):
            embeddings = self.encoder(batch.input_ids, batch.attention_mask)
            top = embeddings.argmax(dim=-1)
        if ctx.on_device:
            with ctx.transfer(nbytes=top.nbytes, label="d2h top"):
                top = top.cpu()
        return {"ids": batch.ids, "top": top.tolist()}
