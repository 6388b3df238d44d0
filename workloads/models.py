"""The RAG workload's transformers: a BERT-style sentence encoder and a GPT-style decoder.

Weights are random (built from a config, nothing downloaded); the shapes are those of real small
models, so the work per token is realistic. Both are written plainly so that
``torch.onnx.export(..., dynamo=True)`` can trace them with dynamic batch and sequence axes: no
Python branches on tensor values, positions and masks derived from shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class EncoderConfig:
    """A sentence encoder's shape; the defaults are all-MiniLM-L6-v2's."""

    vocab_size: int = 30522
    hidden: int = 384
    layers: int = 6
    heads: int = 12
    intermediate: int = 1536
    max_positions: int = 512
    layer_norm_eps: float = 1e-12

    def __post_init__(self) -> None:
        if self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} is not a multiple of heads {self.heads}")


@dataclass(frozen=True)
class DecoderConfig:
    """A causal language model's shape: a small GPT-style decoder."""

    vocab_size: int = 30522
    hidden: int = 384
    layers: int = 4
    heads: int = 6
    intermediate: int = 1536
    max_positions: int = 1024
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} is not a multiple of heads {self.heads}")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


class Attention(nn.Module):
    """Multi-head attention projections: one fused q/k/v matmul in, one matmul out."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)

    def split(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Queries, keys and values of ``x`` [batch, seq, hidden], each [batch, heads, seq, dim]."""
        batch, seq, hidden = x.shape
        qkv = self.qkv(x).view(batch, seq, 3, self.heads, hidden // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        return q, k, v

    def merge(self, heads: Tensor) -> Tensor:
        """The output projection of per-head results [batch, heads, seq, dim]."""
        batch, n_heads, seq, dim = heads.shape
        return self.out(heads.transpose(1, 2).reshape(batch, seq, n_heads * dim))


class MLP(nn.Module):
    """The feed-forward block: expand, GELU, project back."""

    def __init__(self, hidden: int, intermediate: int) -> None:
        super().__init__()
        self.up = nn.Linear(hidden, intermediate)
        self.down = nn.Linear(intermediate, hidden)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(F.gelu(self.up(x)))


class EncoderBlock(nn.Module):
    """A post-LN BERT layer: attention, add & norm, feed-forward, add & norm."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.attention = Attention(config.hidden, config.heads)
        self.norm1 = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps)
        self.mlp = MLP(config.hidden, config.intermediate)
        self.norm2 = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps)

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        q, k, v = self.attention.split(x)
        x = self.norm1(x + self.attention.merge(F.scaled_dot_product_attention(q, k, v, keep)))
        return self.norm2(x + self.mlp(x))


class Encoder(nn.Module):
    """A sentence encoder: token ids to one L2-normalised embedding per sequence.

    ``forward(input_ids, attention_mask)`` takes [batch, seq] ids and a [batch, seq] mask (1 for
    real tokens, 0 for padding) and returns [batch, hidden] float embeddings: the mean of the
    last hidden states over real tokens, as sentence-transformers pools MiniLM.
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.tokens = nn.Embedding(config.vocab_size, config.hidden)
        self.positions = nn.Embedding(config.max_positions, config.hidden)
        self.norm = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps)
        self.blocks = nn.ModuleList(EncoderBlock(config) for _ in range(config.layers))

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.norm(self.tokens(input_ids) + self.positions(positions))
        # [batch, 1, 1, seq]: every query position may look only at real keys.
        keep = attention_mask.bool()[:, None, None, :]
        for block in self.blocks:
            x = block(x, keep)
        weights = attention_mask.to(x.dtype).unsqueeze(-1)
        pooled = (x * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1e-9)
        return F.normalize(pooled, dim=-1)


class DecoderBlock(nn.Module):
    """A pre-LN GPT layer that extends its layer's key/value cache with the new positions."""

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps)
        self.attention = Attention(config.hidden, config.heads)
        self.norm2 = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps)
        self.mlp = MLP(config.hidden, config.intermediate)

    def forward(
        self, x: Tensor, past_keys: Tensor, past_values: Tensor, causal: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        q, k, v = self.attention.split(self.norm1(x))
        keys = torch.cat([past_keys, k], dim=2)
        values = torch.cat([past_values, v], dim=2)
        attended = F.scaled_dot_product_attention(q, keys, values, causal)
        x = x + self.attention.merge(attended)
        return x + self.mlp(self.norm2(x)), keys, values


class Decoder(nn.Module):
    """A causal language model with a key/value cache passed in and out as tensors.

    ``forward(input_ids, past_keys, past_values) -> (logits, keys, values)``: ``input_ids`` is
    [batch, seq]; the caches are [layers, batch, heads, past_len, head_dim] (``past_len`` 0 for a
    prefill, see ``empty_cache``) and come back extended by ``seq`` positions; ``logits`` is
    [batch, vocab] for the last position only, all greedy decoding needs (skipping the others
    saves a vocabulary-wide matmul per prompt token). One signature serves prefill and decode
    steps, so it exports as two ONNX graphs with the caches as inputs and outputs. Sequences in a
    batch must be unpadded and of equal length: positions count from ``past_len``.
    """

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.config = config
        self.tokens = nn.Embedding(config.vocab_size, config.hidden)
        self.positions = nn.Embedding(config.max_positions, config.hidden)
        self.blocks = nn.ModuleList(DecoderBlock(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps)
        # Untied from the token embedding on purpose: with random tied weights the last token's
        # own embedding dominates its logits and greedy decoding repeats it forever.
        self.lm_head = nn.Linear(config.hidden, config.vocab_size, bias=False)

    def empty_cache(
        self, batch: int = 1, device: torch.device | str = "cpu"
    ) -> tuple[Tensor, Tensor]:
        """Zero-length key and value caches, the ``past`` of a prefill."""
        c = self.config
        shape = (c.layers, batch, c.heads, 0, c.head_dim)
        dtype = self.lm_head.weight.dtype
        return torch.zeros(shape, dtype=dtype, device=device), torch.zeros(
            shape, dtype=dtype, device=device
        )

    def forward(
        self, input_ids: Tensor, past_keys: Tensor, past_values: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        past_len = past_keys.shape[3]
        total = past_len + input_ids.shape[1]
        key_positions = torch.arange(total, device=input_ids.device)
        query_positions = key_positions[past_len:]
        # Query i sits at past_len + i and sees every key up to itself: right for a prefill,
        # for one decode step against the cache, and for a chunk in between.
        causal = key_positions[None, :] <= query_positions[:, None]
        x = self.tokens(input_ids) + self.positions(query_positions)
        keys, values = [], []
        for layer, block in enumerate(self.blocks):
            x, k, v = block(x, past_keys[layer], past_values[layer], causal)
            keys.append(k)
            values.append(v)
        logits = self.lm_head(self.norm(x[:, -1]))
        return logits, torch.stack(keys), torch.stack(values)


class Prefill(nn.Module):
    """A decoder's prefill as its own graph: the prompt in, logits and a fresh cache out.

    The empty cache is made inside from the prompt's shape, so the exported graph takes only the
    prompt (a zero-length dynamic axis would not export).
    """

    def __init__(self, decoder: Decoder) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, input_ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        keys, values = self.decoder.empty_cache(input_ids.shape[0], input_ids.device)
        return self.decoder(input_ids, keys, values)
