"""The encoder and decoder: shapes, padding, the key/value cache, and exportable graphs."""

from __future__ import annotations

import pytest
import torch

from workloads.models import Decoder, DecoderConfig, Encoder, EncoderConfig

SMALL = {"vocab_size": 100, "hidden": 64, "layers": 2, "heads": 4, "intermediate": 128}


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    torch.manual_seed(0)
    return Encoder(EncoderConfig(**SMALL, max_positions=64)).eval()


@pytest.fixture(scope="module")
def decoder() -> Decoder:
    torch.manual_seed(0)
    return Decoder(DecoderConfig(**SMALL, max_positions=64)).eval()


def test_configs_refuse_heads_that_do_not_divide_hidden() -> None:
    with pytest.raises(ValueError, match="multiple of heads"):
        EncoderConfig(hidden=64, heads=5)
    with pytest.raises(ValueError, match="multiple of heads"):
        DecoderConfig(hidden=64, heads=5)


def test_default_configs_have_real_model_shapes() -> None:
    encoder, decoder = EncoderConfig(), DecoderConfig()
    # all-MiniLM-L6-v2's encoder; a decoder of the same width.
    assert (encoder.hidden, encoder.layers, encoder.heads) == (384, 6, 12)
    assert (encoder.intermediate, encoder.max_positions) == (1536, 512)
    assert (decoder.hidden, decoder.layers, decoder.heads, decoder.head_dim) == (384, 4, 6, 64)
    assert decoder.max_positions == 1024


@torch.inference_mode()
def test_encoder_returns_unit_embeddings(encoder: Encoder) -> None:
    ids = torch.randint(0, 100, (3, 9))
    embeddings = encoder(ids, torch.ones_like(ids))
    assert embeddings.shape == (3, 64)
    assert torch.allclose(embeddings.norm(dim=-1), torch.ones(3), atol=1e-5)


@torch.inference_mode()
def test_padding_does_not_change_the_embedding(encoder: Encoder) -> None:
    short = torch.tensor([[2, 11, 12, 13, 3]])
    alone = encoder(short, torch.ones_like(short))
    # Padded with different filler ids, batched with a longer sequence: same embedding.
    for filler in (0, 57):
        padded = torch.tensor([[2, 11, 12, 13, 3, filler, filler], [2, 21, 22, 23, 24, 25, 3]])
        mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0], [1] * 7])
        batched = encoder(padded, mask)
        assert torch.allclose(batched[0], alone[0], atol=1e-5)


@torch.inference_mode()
def test_decoder_cache_shapes(decoder: Decoder) -> None:
    logits, keys, values = decoder(torch.randint(0, 100, (2, 7)), *decoder.empty_cache(2))
    assert logits.shape == (2, 100)
    assert keys.shape == values.shape == (2, 2, 4, 7, 16)
    logits, keys, values = decoder(torch.randint(0, 100, (2, 1)), keys, values)
    assert logits.shape == (2, 100)
    assert keys.shape == values.shape == (2, 2, 4, 8, 16)


@torch.inference_mode()
def test_decoding_with_the_cache_matches_a_full_forward(decoder: Decoder) -> None:
    sequence = torch.randint(0, 100, (1, 12))
    logits, keys, values = decoder(sequence[:, :6], *decoder.empty_cache())
    for end in range(7, 13):
        logits, keys, values = decoder(sequence[:, end - 1 : end], keys, values)
        full, _, _ = decoder(sequence[:, :end], *decoder.empty_cache())
        assert torch.allclose(logits, full, atol=1e-4)


@torch.inference_mode()
def test_a_chunk_after_the_cache_is_causal(decoder: Decoder) -> None:
    sequence = torch.randint(0, 100, (1, 10))
    _, keys, values = decoder(sequence[:, :4], *decoder.empty_cache())
    chunked, chunk_keys, _ = decoder(sequence[:, 4:], keys, values)
    full, full_keys, _ = decoder(sequence, *decoder.empty_cache())
    assert torch.allclose(chunked, full, atol=1e-4)
    assert torch.allclose(chunk_keys, full_keys, atol=1e-4)


@torch.inference_mode()
def test_later_tokens_do_not_change_earlier_keys(decoder: Decoder) -> None:
    sequence = torch.randint(0, 100, (1, 8))
    changed = sequence.clone()
    changed[0, -1] = (changed[0, -1] + 1) % 100
    _, keys, _ = decoder(sequence, *decoder.empty_cache())
    _, changed_keys, _ = decoder(changed, *decoder.empty_cache())
    assert torch.allclose(keys[:, :, :, :-1], changed_keys[:, :, :, :-1], atol=1e-6)


def test_models_export_with_dynamic_batch_and_sequence(encoder: Encoder, decoder: Decoder) -> None:
    # torch.export is the front end of torch.onnx.export(dynamo=True): if it traces with symbolic
    # shapes, the ONNX graphs keep them.
    from torch.export import Dim, export

    batch, seq, past = Dim("batch"), Dim("seq", max=64), Dim("past", max=63)
    ids = torch.randint(0, 100, (2, 7))
    graph = export(encoder, (ids, torch.ones_like(ids)), dynamic_shapes=({0: batch, 1: seq},) * 2)
    other = torch.randint(0, 100, (3, 11))
    mask = torch.ones_like(other)
    assert torch.allclose(graph.module()(other, mask), encoder(other, mask), atol=1e-5)

    cache = torch.zeros(2, 2, 4, 3, 16)
    cache_axes = {1: batch, 3: past}
    graph = export(
        decoder,
        (torch.randint(0, 100, (2, 5)), cache, cache),
        dynamic_shapes=({0: batch, 1: seq}, cache_axes, cache_axes),
    )
    prompt = torch.randint(0, 100, (1, 9))
    exported = graph.module()(prompt, *decoder.empty_cache())
    eager = decoder(prompt, *decoder.empty_cache())
    for got, want in zip(exported, eager, strict=True):
        assert torch.allclose(got, want, atol=1e-5)
