"""The tokenizer and the synthetic corpus: round trips, stable ids, deterministic draws."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest

from workloads import text


@pytest.fixture(scope="module")
def tokenizer() -> text.Tokenizer:
    return text.Tokenizer()


def test_vocabulary_is_fixed(tokenizer: text.Tokenizer) -> None:
    # These numbers define the work: a change to the rule must show up here first.
    assert tokenizer.vocab_size == 6 + 64 + 8100
    assert (text.PAD, text.UNK, text.CLS, text.SEP, text.BOS, text.EOS) == (0, 1, 2, 3, 4, 5)
    assert tokenizer.decode(tokenizer.words[:3]) == "baba babe babi"
    assert tokenizer.encode("zuzu") == [tokenizer.vocab_size - 1]


def test_round_trip_of_vocabulary_words(tokenizer: text.Tokenizer) -> None:
    ids = list(tokenizer.words[::97])
    sentence = tokenizer.decode(ids)
    assert tokenizer.encode(sentence) == ids
    assert tokenizer.decode(tokenizer.encode(sentence)) == sentence


def test_encode_lowercases_and_splits_on_punctuation(tokenizer: text.Tokenizer) -> None:
    assert tokenizer.encode("Bada, KELO!\n(mizu)?") == tokenizer.encode("bada kelo mizu")


def test_unknown_words_map_to_stable_buckets(tokenizer: text.Tokenizer) -> None:
    first = tokenizer.encode("gapbench measures pipelines")
    assert first == tokenizer.encode("GAPBENCH, measures: pipelines.")
    first_bucket = text.FIRST_BUCKET
    assert all(first_bucket <= i < first_bucket + text.HASH_BUCKETS for i in first)
    # Pinned: CRC-32 buckets do not depend on the process, the platform or the version.
    assert first == [41, 27, 40]
    assert tokenizer.decode(first) == "[UNK-35] [UNK-21] [UNK-34]"


def test_bucket_names_do_not_encode_as_themselves(tokenizer: text.Tokenizer) -> None:
    assert tokenizer.encode("[UNK-03]") == tokenizer.encode("unk 03")


def test_decode_skips_special_tokens_unless_asked(tokenizer: text.Tokenizer) -> None:
    word = tokenizer.words[0]
    assert tokenizer.decode([text.BOS, word, text.EOS, text.PAD]) == "baba"
    assert tokenizer.decode([text.CLS, word], skip_special=False) == "[CLS] baba"
    assert tokenizer.decode([tokenizer.vocab_size]) == "[UNK]"


def test_passage_store_shape_range_and_seed(tokenizer: text.Tokenizer) -> None:
    store = text.passage_store(tokenizer, 1000, 32, seed=7)
    assert store.shape == (1000, 32)
    assert store.dtype == np.int32
    assert store.min() >= tokenizer.words.start
    assert store.max() < tokenizer.words.stop
    assert np.array_equal(store, text.passage_store(tokenizer, 1000, 32, seed=7))
    assert not np.array_equal(store, text.passage_store(tokenizer, 1000, 32, seed=8))


def test_queries_are_distinct_questions_of_bounded_length(tokenizer: text.Tokenizer) -> None:
    found = text.queries(tokenizer, 300, seed=0, min_words=8, max_words=16)
    assert len(set(found)) == 300
    assert found == text.queries(tokenizer, 300, seed=0, min_words=8, max_words=16)
    for query in found:
        assert query.endswith("?")
        assert query[0].isupper()
        assert 8 <= len(tokenizer.encode(query)) <= 16
        assert all(i in tokenizer.words for i in tokenizer.encode(query))


_IN_ANOTHER_PROCESS = """
import json, zlib
from workloads import text
tok = text.Tokenizer()
print(json.dumps({
    "ids": tok.encode("Bada kelo, gapbench? zzyzx!"),
    "store": zlib.crc32(text.passage_store(tok, 500, 16, seed=3).tobytes()),
    "queries": text.queries(tok, 20, seed=3),
}))
"""


def test_same_ids_in_another_process(tokenizer: text.Tokenizer) -> None:
    # A different hash seed proves nothing depends on Python's salted str hash.
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    done = subprocess.run(
        [sys.executable, "-c", _IN_ANOTHER_PROCESS],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    other = json.loads(done.stdout)
    assert other["ids"] == tokenizer.encode("Bada kelo, gapbench? zzyzx!")
    assert other["store"] == zlib.crc32(text.passage_store(tokenizer, 500, 16, seed=3).tobytes())
    assert other["queries"] == text.queries(tokenizer, 20, seed=3)
