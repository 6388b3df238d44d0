"""The RAG workload: parse a query, embed it, retrieve passages, generate an answer, assemble it."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from harness.params import EXECUTION
from harness.record.probes import Recorder
from harness.workload import (
    ALL_THREADS,
    ONE_THREAD,
    Condition,
    Param,
    Setting,
    SetupContext,
    Stage,
    StageContext,
    Virtual,
    Workload,
)
from workloads import text
from workloads.backends import OrtModels, TorchModels, model_description
from workloads.models import Decoder, Encoder
from workloads.rag_config import (
    MAX_QUERY_TOKENS,
    MAX_TOP_K,
    RagConfig,
    config_of,
    corpus_embeddings,
)

# Bounds a request may not cross, so every prompt fits the decoder's positions.
# The agreement check's fixed input set: the first requests of the stream.
AGREEMENT_REQUESTS = {"quick": 8, "default": 16}
LOGIT_TOLERANCE = 1e-3  # absolute, on the prefill's logits (float32 on both backends)


@dataclass(frozen=True, eq=False)
class Query:
    """A parsed request: its id, how many passages it wants and its tokens ([CLS] ... [SEP])."""

    id: int
    top_k: int
    ids: Tensor  # int64 [seq] on the host

    @property
    def words(self) -> Tensor:
        return self.ids[1:-1]


@dataclass(frozen=True, eq=False)
class Embedded:
    """A query and its L2-normalised embedding [hidden] on the device."""

    query: Query
    embedding: Tensor


@dataclass(frozen=True, eq=False)
class Retrieved:
    """The top-k passages of a query: their ids and scores, best first, and their tokens."""

    query: Query
    ids: list[int]
    scores: list[float]
    passages: np.ndarray  # int32 [top_k, passage_len]


class Rag(Workload):
    """Retrieval-augmented generation, one request at a time.

    The corpus's embeddings are random unit vectors drawn from the seed, not the encoder's output
    for each passage: encoding 100k passages at every setup would take over ten minutes on two
    cores, and exact search costs the same whatever the vectors hold. Models have random weights
    and real shapes (a MiniLM-sized encoder, a small GPT-style decoder).
    """

    name = "rag"
    description = "retrieval-augmented generation: embed, exact top-k search, greedy decoding"
    stages = (
        Stage("parse", layer="ingress"),
        Stage("embed", layer="inference", after=("parse",)),
        Stage("retrieve", layer="retrieval", after=("embed",)),
        Stage("generate", layer="inference", after=("retrieve",)),
        Stage("assemble", layer="assembly", after=("retrieve", "generate")),
    )
    code_modules = (
        "workloads.text",
        "workloads.models",
        "workloads.backends",
        "workloads.rag_config",
    )
    backends = ("torch", "onnxruntime")
    conditions = (
        Condition(
            "threads",
            ONE_THREAD,
            ALL_THREADS,
            "compute threads 1 -> all cores",
        ),
        Condition(
            "backend",
            Setting("torch"),
            Setting("onnxruntime", backend="onnxruntime"),
            "model stages on torch -> onnxruntime",
        ),
        Condition(
            "corpus-bf16",
            # 100,000 rows: a scan of 150 MB, past any cache, which bandwidth decides.
            Setting("float32 corpus", params=(("corpus_rows", 100_000),)),
            Setting(
                "bfloat16 corpus",
                params=(("corpus_rows", 100_000), ("corpus_dtype", "bfloat16")),
            ),
            "the corpus scanned in bfloat16: half the bytes",
            # The scan reads the corpus once: half its bytes at the same bandwidth.
            by_class=(("stage:retrieve/memory-bound", 2.0),),
        ),
    )
    params = (
        Param(
            "corpus_dtype",
            "float32",
            "the corpus embeddings' type: bfloat16 scans half the bytes (top-k ids may differ "
            "at near ties; the set's outputs say how often)",
            changes=EXECUTION,
            choices=("float32", "bfloat16"),
        ),
        Param(
            "corpus_rows",
            0,
            "passages in the corpus (0: the size's own, 20,000 quick and 100,000 default)",
            low=0,
            high=2_000_000,
        ),
    )
    virtual_check = Virtual("generate", 1.5)  # the largest stage, made virtually faster

    config: RagConfig
    seed: int
    tokenizer: text.Tokenizer
    models: TorchModels | OrtModels
    corpus: Tensor  # [corpus_size, hidden] on the device, unit rows, in corpus_dtype
    store: np.ndarray  # int32 [corpus_size, passage_len] on the host

    def setup(self, ctx: SetupContext) -> None:
        self.tokenizer = text.Tokenizer()
        self.config = config_of(ctx)
        self.seed = ctx.seed
        config, device = self.config, torch.device(ctx.device)
        # A forked generator state: building models must not move the process's global stream.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            encoder = Encoder(config.encoder).eval()
            decoder = Decoder(config.decoder).eval()
        self._agreement: dict[str, Any] = {}
        if ctx.backend == "onnxruntime":
            # Exported from the host copies, whatever the device: one cache entry serves both.
            description = model_description(encoder, decoder, ctx.seed)
            self.models = OrtModels(encoder, decoder, description, ctx.device, ctx.providers)
        else:
            self.models = TorchModels(encoder.to(device), decoder.to(device))
        dtype = getattr(torch, str(ctx.params.get("corpus_dtype", "float32")))
        self.corpus = corpus_embeddings(config, ctx.seed).to(device, dtype)
        self.store = text.passage_store(
            self.tokenizer, config.corpus_size, config.passage_len, ctx.seed
        )
        self._agreement_s = None
        if ctx.backend != "torch":
            reference = TorchModels(encoder.to(device), decoder.to(device))
            started = time.perf_counter()
            self._agreement = self._compare(ctx, reference)
            self._agreement_s = time.perf_counter() - started

    def _compare(self, ctx: SetupContext, reference: TorchModels) -> dict[str, Any]:
        """Run a fixed input set through this backend and through torch: the same work, shown.

        Retrieval is compared on each backend's own embedding; generation on the reference's
        prompt, so a retrieval difference does not count twice. Greedy decoding follows a
        near-tie either way, so tokens are reported as rates, not asserted.
        """
        stream = self.requests(ctx)[: AGREEMENT_REQUESTS[ctx.size]]
        own = self.models
        top_k = tokens = positions = 0
        logit_diff = embedding_diff = 0.0
        try:
            for payload in stream:
                query = self.parse(_unprobed(ctx, "parse"), payload)
                mine = self.embed(_unprobed(ctx, "embed"), query)
                self.models = reference
                theirs = self.embed(_unprobed(ctx, "embed"), query)
                retrieved = self.retrieve(_unprobed(ctx, "retrieve"), theirs)
                expected = self.generate(_unprobed(ctx, "generate"), retrieved)
                expected_logits = self._prefill_logits(ctx, retrieved)
                self.models = own
                embedding_diff = max(embedding_diff, _max_diff(mine.embedding, theirs.embedding))
                top_k += self.retrieve(_unprobed(ctx, "retrieve"), mine).ids == retrieved.ids
                answer = self.generate(_unprobed(ctx, "generate"), retrieved)
                tokens += answer == expected
                positions += _common_prefix(answer, expected)
                logits = self._prefill_logits(ctx, retrieved)
                logit_diff = max(logit_diff, _max_diff(logits, expected_logits))
        finally:
            self.models = own
        n = len(stream)
        return {
            "reference": "torch",
            "backend": ctx.backend,
            "requests": n,
            "top_k_equal": top_k / n,
            "tokens_equal": tokens / n,
            # Positions generated alike before the first difference: a near-tie shows here.
            "token_positions_equal": positions / (n * self.config.new_tokens),
            "max_abs_embedding_diff": embedding_diff,
            "max_abs_logit_diff": logit_diff,
            "logit_tolerance": LOGIT_TOLERANCE,
            "logits_within_tolerance": logit_diff <= LOGIT_TOLERANCE,
        }

    def _prefill_logits(self, ctx: SetupContext, retrieved: Retrieved) -> Tensor:
        prompt = self._prompt(retrieved).to(ctx.device)
        logits, _ = self.models.prefill(_unprobed(ctx, "generate"), prompt)
        return logits

    def requests(self, ctx: SetupContext) -> Sequence[bytes]:
        tokenizer = text.Tokenizer()
        config = config_of(ctx)
        questions = text.queries(tokenizer, config.requests, ctx.seed)
        return [
            json.dumps({"id": i, "query": q, "top_k": config.top_k}).encode()
            for i, q in enumerate(questions)
        ]

    def execution(self) -> Mapping[str, Any]:
        return self.models.execution()

    def setup_facts(self) -> Mapping[str, Any]:
        if isinstance(self.models, OrtModels):
            # Both are inside the model load time: export (or cache load), then the check.
            return {
                "onnx_export": self.models.export_facts(),
                "agreement_check_s": self._agreement_s,
            }
        return {}

    def agreement(self) -> Mapping[str, Any]:
        return self._agreement

    def profiler(self) -> Any:
        return self.models.profiler()

    def work(self) -> Mapping[str, Any]:
        config = self.config
        return {
            "corpus_size": config.corpus_size,
            "embedding_dim": config.encoder.hidden,
            "passage_len": config.passage_len,
            "top_k": config.top_k,
            "new_tokens": config.new_tokens,
            "requests": config.requests,
            "max_query_tokens": MAX_QUERY_TOKENS,
            "vocab_size": self.tokenizer.vocab_size,
            "encoder": asdict(config.encoder),
            "decoder": asdict(config.decoder),
            "seed": self.seed,
        }

    def outputs(self, response: bytes) -> Mapping[str, Any]:
        body = json.loads(response)
        return {"top_k": body["passages"], "tokens": body["tokens"]}

    def parse(self, ctx: StageContext, payload: bytes) -> Query:
        """Deserialise the request and tokenize its query."""
        with ctx.movement(nbytes=len(payload), label="json.loads"):
            body = json.loads(payload)
        top_k = int(body.get("top_k", self.config.top_k))
        if not 1 <= top_k <= MAX_TOP_K:
            raise ValueError(f"top_k {top_k} outside 1..{MAX_TOP_K}")
        with ctx.compute(label="tokenize", resource="host-cpu"):
            words = self.tokenizer.encode(body["query"])[:MAX_QUERY_TOKENS]
            ids = torch.tensor([text.CLS, *words, text.SEP], dtype=torch.int64)
        return Query(id=int(body["id"]), top_k=top_k, ids=ids)

    def embed(self, ctx: StageContext, query: Query) -> Embedded:
        """The query's sentence embedding, computed on the device."""
        ids = query.ids
        if ctx.on_device:
            with ctx.transfer(nbytes=ids.nbytes, label="h2d ids"):
                ids = ids.to(ctx.device)
        with ctx.compute(label="encoder"):
            embedding = self.models.encode(ctx, ids)
        return Embedded(query, embedding)

    def retrieve(self, ctx: StageContext, embedded: Embedded) -> Retrieved:
        """Exact top-k by inner product over the corpus, then the passages' tokens."""
        k = embedded.query.top_k
        with ctx.compute(label="top-k"), torch.inference_mode():
            top = torch.topk(self.corpus @ embedded.embedding.to(self.corpus.dtype), k)
        scores, ids = top.values.float(), top.indices
        if ctx.on_device:
            with ctx.transfer(nbytes=scores.nbytes + ids.nbytes, label="d2h top-k"):
                scores, ids = scores.cpu(), ids.cpu()
        rows = ids.numpy()
        with ctx.movement(
            nbytes=k * self.store.shape[1] * self.store.itemsize, label="gather passages"
        ):
            passages = self.store[rows]
        return Retrieved(embedded.query, rows.tolist(), scores.tolist(), passages)

    def generate(self, ctx: StageContext, retrieved: Retrieved) -> list[int]:
        """A fixed number of answer tokens by greedy decoding over passages and query.

        It never stops early at [EOS]: every run and backend does the same work.
        """
        n = self.config.new_tokens
        with ctx.compute(label="prompt", resource="host-cpu"):
            prompt = self._prompt(retrieved)
        if ctx.on_device:
            with ctx.transfer(nbytes=prompt.nbytes, label="h2d prompt"):
                prompt = prompt.to(ctx.device)
        models = self.models
        with torch.inference_mode():
            with ctx.compute(label="prefill"):
                logits, cache = models.prefill(ctx, prompt)
                token = logits.argmax(dim=-1)
                # Answer ids stay on the device through the loop: one copy back at the end.
                answer = torch.empty(n, dtype=torch.int64, device=prompt.device)
                answer[0] = token[0]
            ctx.token()
            with ctx.compute(label="decode"):
                for step in range(1, n):
                    logits, cache = models.decode(ctx, token[:, None], cache)
                    token = logits.argmax(dim=-1)
                    answer[step] = token[0]
                    ctx.token()
        if ctx.on_device:
            with ctx.transfer(nbytes=answer.nbytes, label="d2h tokens"):
                answer = answer.cpu()
        return answer.tolist()

    @staticmethod
    def _prompt(retrieved: Retrieved) -> Tensor:
        """[BOS], the passages, [SEP], the query's words: int64 [1, seq] on the host."""
        passages = torch.from_numpy(retrieved.passages.reshape(-1)).to(torch.int64)
        bos, sep = torch.tensor([text.BOS]), torch.tensor([text.SEP])
        return torch.cat([bos, passages, sep, retrieved.query.words])[None]

    def assemble(self, ctx: StageContext, retrieved: Retrieved, tokens: list[int]) -> bytes:
        """The response as JSON: the answer's text and tokens, the passages that grounded it."""
        with ctx.compute(label="detokenize", resource="host-cpu"):
            answer = self.tokenizer.decode(tokens)
        body = {
            "id": retrieved.query.id,
            "answer": answer,
            "tokens": tokens,
            "passages": retrieved.ids,
            "scores": retrieved.scores,
        }
        # The size is known only once serialised: the probe's byte count is set before it closes.
        with ctx.movement(label="json.dumps") as probe:
            result = json.dumps(body).encode()
            probe.nbytes = len(result)
        return result


def _unprobed(ctx: SetupContext, stage: str) -> StageContext:
    """A stage context whose probes record nothing: the agreement check is not measured."""
    return StageContext(ctx, Recorder(-1), stage, -1, probes=False)


def _max_diff(a: Tensor, b: Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def _common_prefix(a: list[int], b: list[int]) -> int:
    same = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        same += 1
    return same
