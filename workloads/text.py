"""A deterministic word tokenizer, and synthetic passages and queries drawn from its vocabulary."""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable

import numpy as np

# Special tokens first, at fixed ids, as BERT-style vocabularies do.
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[BOS]", "[EOS]")
PAD, UNK, CLS, SEP, BOS, EOS = range(len(SPECIALS))

# Words outside the vocabulary share these ids by a CRC-32 of their text: stable across processes
# and machines (Python's str hash is salted per process, so it would change the work every run).
HASH_BUCKETS = 64
FIRST_BUCKET = len(SPECIALS)
FIRST_WORD = FIRST_BUCKET + HASH_BUCKETS

# Every consonant-vowel pair is a syllable and every pair of syllables a word: 18 * 5 = 90
# syllables, 8100 words. One letter per sound makes every word unique and pronounceable.
_CONSONANTS = "bdfghjklmnprstvwyz"
_VOWELS = "aeiou"

# Random streams, one per use, so adding one never shifts the numbers another draws.
_PASSAGE_STREAM = 1
_QUERY_STREAM = 2

_WORD = re.compile(r"\w+")


def _words() -> list[str]:
    syllables = [c + v for c in _CONSONANTS for v in _VOWELS]
    return [first + second for first in syllables for second in syllables]


class Tokenizer:
    """Lowercases, splits on anything but letters and digits, maps each word to one id.

    The vocabulary is a fixed rule, not a file: nothing to download, same ids everywhere.
    """

    __slots__ = ("_ids", "_names")

    def __init__(self) -> None:
        buckets = [f"[UNK-{b:02d}]" for b in range(HASH_BUCKETS)]
        self._names: tuple[str, ...] = (*SPECIALS, *buckets, *_words())
        self._ids: dict[str, int] = {word: i for i, word in enumerate(self._names)}

    @property
    def vocab_size(self) -> int:
        return len(self._names)

    @property
    def words(self) -> range:
        """The ids of real words (neither special tokens nor hash buckets)."""
        return range(FIRST_WORD, len(self._names))

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``'s words; an unknown word gets its stable hash bucket."""
        return [self._id(word) for word in _WORD.findall(text.lower())]

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        """The words of ``ids`` joined by spaces; ids outside the vocabulary read ``[UNK]``."""
        names = self._names
        out = []
        for i in ids:
            i = int(i)
            if i < len(SPECIALS) and skip_special:
                continue
            out.append(names[i] if 0 <= i < len(names) else SPECIALS[UNK])
        return " ".join(out)

    def _id(self, word: str) -> int:
        found = self._ids.get(word)
        if found is not None and found >= FIRST_WORD:
            return found
        # Bucket names such as "[unk-03]" never survive the split, so this is a real unknown.
        return FIRST_BUCKET + zlib.crc32(word.encode()) % HASH_BUCKETS


def passage_store(tokenizer: Tokenizer, count: int, length: int, seed: int) -> np.ndarray:
    """A doc store of ``count`` pre-tokenized chunks of ``length`` word ids each (int32).

    Ids are drawn directly with numpy (no strings): 100k chunks take tens of milliseconds.
    They are uniform over the vocabulary because the work done on a passage does not depend
    on which ids it holds.
    """
    rng = np.random.default_rng([seed, _PASSAGE_STREAM])
    words = tokenizer.words
    return rng.integers(words.start, words.stop, size=(count, length), dtype=np.int32)


def queries(
    tokenizer: Tokenizer, count: int, seed: int, min_words: int = 8, max_words: int = 16
) -> list[str]:
    """``count`` distinct questions of ``min_words`` to ``max_words`` vocabulary words.

    Each is capitalised and ends with a question mark, so parsing exercises the lowercasing
    and punctuation splitting a real query needs.
    """
    rng = np.random.default_rng([seed, _QUERY_STREAM])
    words = tokenizer.words
    found: list[str] = []
    seen: set[str] = set()
    while len(found) < count:
        n = int(rng.integers(min_words, max_words + 1))
        ids = rng.integers(words.start, words.stop, size=n)
        text = tokenizer.decode(ids).capitalize() + "?"
        if text not in seen:
            seen.add(text)
            found.append(text)
    return found
