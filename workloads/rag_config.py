"""What sizes one RAG request's work: the config of a public size, the corpus's embeddings, and
the prompt's length; the RAG workload (``workloads.rag``) builds its pipeline from them."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from harness.workload import SetupContext
from workloads import text
from workloads.models import DecoderConfig, EncoderConfig

MAX_QUERY_TOKENS = 64
MAX_TOP_K = 5
_CORPUS_STREAM = 3  # the corpus embeddings' random stream, apart from text's streams


@dataclass(frozen=True)
class RagConfig:
    """Everything that sizes one RAG request's work."""

    corpus_size: int
    passage_len: int
    top_k: int
    new_tokens: int
    requests: int = 256
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)

    def __post_init__(self) -> None:
        if not 1 <= self.top_k <= MAX_TOP_K:
            raise ValueError(f"top_k {self.top_k} outside 1..{MAX_TOP_K}")
        longest = prompt_len(MAX_TOP_K, self.passage_len, MAX_QUERY_TOKENS) + self.new_tokens
        if longest > self.decoder.max_positions:
            raise ValueError(f"prompts of up to {longest} tokens overflow the decoder's positions")

    @classmethod
    def for_size(cls, size: str, vocab_size: int) -> RagConfig:
        """The config of a public size (``quick`` or ``default``) for a tokenizer's vocabulary."""
        models: dict[str, Any] = {
            "encoder": EncoderConfig(vocab_size=vocab_size),
            "decoder": DecoderConfig(vocab_size=vocab_size),
        }
        if size == "quick":
            # The same models, a smaller corpus and a shorter answer: about 70 ms a request on
            # two cores, where decoding costs about 5 ms a token.
            return cls(corpus_size=20_000, passage_len=64, top_k=3, new_tokens=8, **models)
        if size == "default":
            return cls(corpus_size=100_000, passage_len=128, top_k=3, new_tokens=32, **models)
        raise ValueError(f"unknown size {size!r} (quick or default)")


def config_of(ctx: SetupContext) -> RagConfig:
    config = RagConfig.for_size(ctx.size, text.Tokenizer().vocab_size)
    rows = int(ctx.params.get("corpus_rows", 0))
    return replace(config, corpus_size=rows) if rows else config


def corpus_embeddings(config: RagConfig, seed: int) -> Tensor:
    """The corpus's unit embeddings [corpus_size, hidden] (float32, host): random directions,
    since exact top-k costs the same whatever they are."""
    rng = np.random.default_rng([seed, _CORPUS_STREAM])
    vectors = rng.standard_normal((config.corpus_size, config.encoder.hidden), np.float32)
    return F.normalize(torch.from_numpy(vectors), dim=-1)


def prompt_len(top_k: int, passage_len: int, query_tokens: int) -> int:
    """Tokens in a prompt: [BOS], the passages, [SEP], the query's words."""
    return 1 + top_k * passage_len + 1 + query_tokens
