"""The RAG workload driven by hand through its stages: results, determinism and probes."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import torch

from harness.plugins import check_contract
from harness.record.probes import Recorder
from harness.workload import SetupContext, StageContext, topological_order
from workloads import text
from workloads.rag import MAX_TOP_K, Rag, RagConfig

QUICK = SetupContext(device="cpu", size="quick", seed=0)
ORDER = topological_order(Rag.stages)


def drive(rag: Rag, run: SetupContext, payload: bytes, request: int = 0) -> tuple[dict, Recorder]:
    """One request through every stage in order, as a runner would: each stage's output by name."""
    recorder = Recorder(request)
    outputs: dict[str, Any] = {}
    for stage in ORDER:
        args = [outputs[parent] for parent in stage.after] if stage.after else [payload]
        ctx = StageContext(setup=run, recorder=recorder, stage=stage.name, request=request)
        outputs[stage.name] = getattr(rag, stage.name)(ctx, *args)
    return outputs, recorder


@pytest.fixture(scope="module")
def rag() -> Rag:
    workload = Rag()
    workload.setup(QUICK)
    return workload


@pytest.fixture(scope="module")
def stream(rag: Rag) -> list[bytes]:
    return list(rag.requests(QUICK))


@pytest.fixture(scope="module")
def driven(rag: Rag, stream: list[bytes]) -> list[tuple[dict, Recorder]]:
    return [drive(rag, QUICK, stream[i], i) for i in range(3)]


def test_the_class_meets_the_contract() -> None:
    assert check_contract(Rag) is Rag
    assert [s.name for s in ORDER] == ["parse", "embed", "retrieve", "generate", "assemble"]
    assert Rag.stages[-1].after == ("retrieve", "generate")


def test_sizes_and_their_bounds() -> None:
    quick, default = RagConfig.for_size("quick", 8170), RagConfig.for_size("default", 8170)
    assert (quick.corpus_size, default.corpus_size) == (20_000, 100_000)
    assert default.new_tokens == 32
    assert quick.encoder == default.encoder and quick.decoder == default.decoder
    with pytest.raises(ValueError, match="unknown size"):
        RagConfig.for_size("huge", 8170)
    with pytest.raises(ValueError, match="overflow"):
        RagConfig(corpus_size=10, passage_len=512, top_k=1, new_tokens=8)


def test_request_stream_is_deterministic_and_distinct(stream: list[bytes]) -> None:
    assert stream == list(Rag().requests(QUICK))
    assert len(stream) == len(set(stream)) == 256
    bodies = [json.loads(payload) for payload in stream]
    assert [body["id"] for body in bodies] == list(range(256))
    assert {body["top_k"] for body in bodies} == {3}
    assert stream != list(Rag().requests(SetupContext(size="quick", seed=1)))


def test_response_carries_k_passages_and_the_fixed_token_count(
    rag: Rag, stream: list[bytes], driven: list[tuple[dict, Recorder]]
) -> None:
    for i, (outputs, _) in enumerate(driven):
        response = json.loads(outputs["assemble"])
        assert response["id"] == i
        assert len(response["passages"]) == len(response["scores"]) == 3
        assert response["scores"] == sorted(response["scores"], reverse=True)
        assert len(response["tokens"]) == rag.config.new_tokens
        assert response["answer"] == rag.tokenizer.decode(response["tokens"])
        kept = rag.outputs(outputs["assemble"])
        assert kept == {"top_k": response["passages"], "tokens": response["tokens"]}


def test_greedy_answers_are_not_one_token_repeated(driven: list[tuple[dict, Recorder]]) -> None:
    for outputs, _ in driven:
        assert len(set(outputs["generate"])) > 1


def test_top_k_matches_an_independent_numpy_search(
    rag: Rag, driven: list[tuple[dict, Recorder]]
) -> None:
    corpus = rag.corpus.numpy()
    for outputs, _ in driven:
        query = outputs["embed"].embedding.numpy()
        scores = corpus.astype(np.float64) @ query.astype(np.float64)
        expected = np.argsort(-scores)[:3]
        retrieved = outputs["retrieve"]
        assert retrieved.ids == expected.tolist()
        assert np.allclose(retrieved.scores, scores[expected], atol=1e-5)
        assert np.array_equal(retrieved.passages, rag.store[expected])


def test_query_embedding_is_the_encoder_on_the_tokenized_query(
    rag: Rag, stream: list[bytes], driven: list[tuple[dict, Recorder]]
) -> None:
    outputs, _ = driven[0]
    words = rag.tokenizer.encode(json.loads(stream[0])["query"])
    ids = outputs["parse"].ids
    assert ids.tolist() == [text.CLS, *words, text.SEP]
    assert torch.allclose(outputs["embed"].embedding.norm(), torch.tensor(1.0), atol=1e-5)


def test_same_seed_same_outputs_and_global_rng_untouched(
    stream: list[bytes], driven: list[tuple[dict, Recorder]]
) -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    again = Rag()
    again.setup(QUICK)
    assert torch.equal(torch.get_rng_state(), before)
    for i, (outputs, _) in enumerate(driven):
        repeat, _ = drive(again, QUICK, stream[i], i)
        assert repeat["assemble"] == outputs["assemble"]


def test_another_seed_is_other_work(
    stream: list[bytes], driven: list[tuple[dict, Recorder]]
) -> None:
    other = Rag()
    other.setup(SetupContext(size="quick", seed=1))
    outputs, _ = drive(other, QUICK, stream[0])
    assert outputs["assemble"] != driven[0][0]["assemble"]


def test_concurrent_requests_get_the_sequential_answers(
    rag: Rag, stream: list[bytes], driven: list[tuple[dict, Recorder]]
) -> None:
    # Stage methods only read the workload's state, so requests may share it across threads.
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(drive, rag, QUICK, stream[i], i) for i in range(3)]
        responses = [future.result()[0]["assemble"] for future in futures]
    assert responses == [outputs["assemble"] for outputs, _ in driven]


def test_probes_on_the_cpu(
    rag: Rag, stream: list[bytes], driven: list[tuple[dict, Recorder]]
) -> None:
    outputs, recorder = driven[0]
    probes = {(i.stage, i.category, i.resource, i.label): i for i in recorder.intervals}
    assert set(probes) == {
        ("parse", "movement", "host-memory", "json.loads"),
        ("parse", "compute", "host-cpu", "tokenize"),
        ("embed", "compute", "host-cpu", "encoder"),
        ("retrieve", "compute", "host-cpu", "top-k"),
        ("retrieve", "movement", "host-memory", "gather passages"),
        ("generate", "compute", "host-cpu", "prompt"),
        ("generate", "compute", "host-cpu", "prefill"),
        ("generate", "compute", "host-cpu", "decode"),
        ("assemble", "compute", "host-cpu", "detokenize"),
        ("assemble", "movement", "host-memory", "json.dumps"),
    }
    assert len(recorder.intervals) == len(probes)
    assert probes["parse", "movement", "host-memory", "json.loads"].nbytes == len(stream[0])
    gathered = probes["retrieve", "movement", "host-memory", "gather passages"].nbytes
    assert gathered == 3 * rag.config.passage_len * 4
    dumped = probes["assemble", "movement", "host-memory", "json.dumps"].nbytes
    assert dumped == len(outputs["assemble"])
    assert all(i.duration_ns >= 0 and i.parent == -1 for i in recorder.intervals)


def test_parse_refuses_a_top_k_beyond_the_prompt_budget(rag: Rag) -> None:
    payload = json.dumps({"id": 1, "query": "bada kelo", "top_k": MAX_TOP_K + 1}).encode()
    ctx = StageContext(setup=QUICK, recorder=Recorder(0), stage="parse", request=0)
    with pytest.raises(ValueError, match="top_k"):
        rag.parse(ctx, payload)


def test_work_describes_the_work(rag: Rag) -> None:
    work = rag.work()
    json.dumps(work)  # stored with the result set
    assert work["corpus_size"] == 20_000
    assert work["embedding_dim"] == 384
    assert work["new_tokens"] == rag.config.new_tokens
    assert work["vocab_size"] == work["decoder"]["vocab_size"] == rag.tokenizer.vocab_size
    assert work["seed"] == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_probes_and_answers_on_a_gpu(rag: Rag, stream: list[bytes]) -> None:
    run = SetupContext(device="cuda", size="quick", seed=0)
    on_gpu = Rag()
    on_gpu.setup(run)
    outputs, recorder = drive(on_gpu, run, stream[0])
    links = {(i.stage, i.label) for i in recorder.intervals if i.resource == "link"}
    assert links == {
        ("embed", "h2d ids"),
        ("retrieve", "d2h top-k"),
        ("generate", "h2d prompt"),
        ("generate", "d2h tokens"),
    }
    devices = {i.label for i in recorder.intervals if i.resource == "device"}
    assert devices == {"encoder", "top-k", "prefill", "decode"}
    on_cpu, _ = drive(rag, QUICK, stream[0])
    # Floating point differs across devices: the passages should agree, tokens may drift.
    assert json.loads(outputs["assemble"])["passages"] == json.loads(on_cpu["assemble"])["passages"]
