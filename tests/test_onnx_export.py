"""Exporting to ONNX: dynamic axes kept, a cache hit the second time, nothing half-written."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch

from harness.backends import onnx_export
from harness.backends.onnx_export import GraphSpec, cache_root, export_cached
from harness.errors import UserError
from workloads.models import Encoder, EncoderConfig

SMALL = EncoderConfig(vocab_size=64, hidden=32, layers=1, heads=2, intermediate=64)
SPEC = GraphSpec(
    "encoder",
    inputs=("input_ids", "attention_mask"),
    outputs=("sentence_embedding",),
    dynamic={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}},
)


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    torch.manual_seed(0)
    return Encoder(SMALL).eval()


def _example() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    return ids, torch.ones_like(ids)


def test_the_cache_lives_where_configured(tmp_path, monkeypatch):
    monkeypatch.setenv("GAPBENCH_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"
    monkeypatch.delenv("GAPBENCH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "gapbench"


def test_a_second_export_is_a_cache_hit_and_keeps_dynamic_axes(encoder, tmp_path):
    model = {"config": "small", "seed": 0}
    cold = export_cached(encoder, _example(), SPEC, model, root=tmp_path)
    warm = export_cached(encoder, _example(), SPEC, model, root=tmp_path)
    assert not cold.cached and warm.cached
    assert warm.path == cold.path and warm.key == cold.key
    assert warm.seconds < cold.seconds
    session = onnxruntime.InferenceSession(str(cold.path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", "seq"]
    # another batch and length than the example: the axes stayed symbolic
    ids = torch.randint(0, SMALL.vocab_size, (3, 9))
    mask = torch.ones_like(ids)
    (got,) = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    with torch.no_grad():
        want = encoder(ids, mask).numpy()
    assert np.abs(got - want).max() < 1e-5


def test_the_key_changes_with_the_model_and_the_opset():
    base = onnx_export.cache_key(SPEC, {"seed": 0})
    assert onnx_export.cache_key(SPEC, {"seed": 0}) == base
    assert onnx_export.cache_key(SPEC, {"seed": 1}) != base
    assert onnx_export.cache_key(SPEC, {"seed": 0}, opset=17) != base
    other = GraphSpec("encoder", SPEC.inputs, SPEC.outputs, {"input_ids": {0: "batch"}})
    assert onnx_export.cache_key(other, {"seed": 0}) != base


def test_the_key_changes_with_the_torch_that_exported(monkeypatch):
    base = onnx_export.cache_key(SPEC, {"seed": 0})
    monkeypatch.setattr(torch, "__version__", "9.9.9")
    assert onnx_export.cache_key(SPEC, {"seed": 0}) != base


def test_a_failed_export_is_one_line_and_leaves_nothing_behind(encoder, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        (args[3].parent / "partial.onnx").write_text("half")
        raise RuntimeError("exporter crashed\nwith a long story")

    monkeypatch.setattr(onnx_export, "_export", broken)
    with pytest.raises(
        UserError, match=r"exporting the encoder graph to ONNX failed: exporter crashed$"
    ):
        export_cached(encoder, _example(), SPEC, {"seed": 0}, root=tmp_path)
    assert list((tmp_path / "onnx").iterdir()) == []


def test_an_unwritable_cache_is_one_line(encoder, tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with pytest.raises(UserError, match="cannot write the export cache"):
        export_cached(encoder, _example(), SPEC, {"seed": 0}, root=blocked)
