"""Find PHI strings in text and in bytes: case-insensitive, whole words and whole numbers only, context masked.

Thousands of strings over hundreds of megabytes, on two cores: numpy compares every 4-character window of the data
(8 bytes in UTF-16) with the sorted set of the strings' first four characters at once, and only where one matches
does a walk down the trie of the whole strings say which string is there (a regex alternation of 10,000 strings
runs at about 2 MB/s; this at about 50). A string counts only where it stands alone: a name not inside a longer
word ("Kang" is no leak in "kangaroo"), a number not inside a longer number, a decimal or a UID ("20211003" is
none inside 1.2.840.20211003.1). Text is lower-cased and searched as UTF-8; bytes are searched as UTF-8 and as
UTF-16-LE (what Windows tools and some binary formats write), their ASCII letters lower-cased.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

PREFIX = 4  # every searched string has at least this many characters (phi_strings.MIN_CHARS)
CONTEXT = 40  # characters kept either side of a hit, every PHI string in them masked
CHUNK = 1 << 23  # bytes compared at once (bounded memory for large checkpoints)
ENCODINGS = {"utf-8": 1, "utf-16-le": 2}  # encoding: bytes per character of the ASCII prefix
_END = -1  # trie key of "a string ends here"


@dataclass(frozen=True)
class Hit:
    start: int  # byte offsets in the searched (lower-cased) data
    end: int
    string: str  # the PHI string (lower-cased) found
    encoding: str  # "utf-8" or "utf-16-le"


class _Table:
    """One encoding's strings: the trie of their bytes and the sorted integers of their first ``PREFIX`` chars."""

    def __init__(self, strings: list[str], encoding: str) -> None:
        self.encoding, self.width = encoding, ENCODINGS[encoding]
        self.n = PREFIX * self.width  # prefix bytes
        self.trie: dict[int, Any] = {}
        prefixes = set()
        for s in strings:
            key = s.encode(encoding)
            node = self.trie
            for b in key:
                node = node.setdefault(b, {})
            node[_END] = s
            prefixes.add(int.from_bytes(key[:self.n], "little"))
        self.prefixes = np.array(sorted(prefixes), dtype=np.uint64)

    def candidates(self, low: bytes) -> np.ndarray:
        """Offsets in ``low`` where some string's prefix starts."""
        out = []
        for lo in range(0, len(low), CHUNK):
            piece: Any = np.frombuffer(low[lo:lo + CHUNK + self.n - 1], dtype=np.uint8)
            if len(piece) < self.n:
                break
            k = len(piece) - self.n + 1
            w: Any = np.zeros(k, dtype=np.uint64)
            for j in range(self.n):  # the window's bytes as one little-endian integer
                w |= piece[j:j + k].astype(np.uint64) << np.uint64(8 * j)
            i = np.searchsorted(self.prefixes, w)
            i[i == len(self.prefixes)] = 0
            out.append(lo + np.nonzero(self.prefixes[i] == w)[0])
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def walk(self, low: bytes, start: int) -> list[tuple[int, str]]:
        """(end, string) of every string ``low`` holds from ``start``."""
        found, node, i = [], self.trie, start
        while True:
            if _END in node:
                found.append((i, node[_END]))
            if i >= len(low) or low[i] not in node:
                return found
            node, i = node[low[i]], i + 1


class Matcher:
    """Every PHI string, searchable in text and in bytes."""

    def __init__(self, strings: dict[str, str]) -> None:
        self.kinds = dict(strings)  # {lower-cased string: kind}
        if any(len(s) < PREFIX for s in self.kinds):
            raise ValueError(f"every searched string needs {PREFIX} characters or more")
        self.tables = {enc: _Table(sorted(self.kinds), enc) for enc in ENCODINGS}

    def __len__(self) -> int:
        return len(self.kinds)

    def find_bytes(self, data: bytes, encodings: tuple[str, ...] = tuple(ENCODINGS)) -> list[Hit]:
        """Hits in ``data`` (ASCII letters lower-cased first; offsets are the same)."""
        return self._find(data.lower(), encodings)

    def find_text(self, text: str) -> tuple[bytes, list[Hit]]:
        """Hits in ``text``, lower-cased and searched as UTF-8: (the bytes searched, the hits in them)."""
        low = text.lower().encode("utf-8", errors="replace")
        return low, self._find(low, ("utf-8",))  # lower-cased already: no second copy of a large file

    def _find(self, low: bytes, encodings: tuple[str, ...]) -> list[Hit]:
        hits = []
        for enc in encodings:
            t = self.tables[enc]
            for start in t.candidates(low).tolist():
                for end, s in t.walk(low, start):
                    if _alone(low, start, end, s, enc, t.width):
                        hits.append(Hit(start, end, s, enc))
        return _outermost(hits)

    def mask(self, text: str) -> str:
        """``text`` with every PHI string in it replaced by ``<kind>``."""
        low, hits = self.find_text(text)
        out, at = [], 0
        for h in hits:
            if h.start >= at:
                out += [low[at:h.start].decode("utf-8", errors="replace"), f"<{self.kinds[h.string]}>"]
                at = h.end
        return "".join([*out, low[at:].decode("utf-8", errors="replace")])

    def context(self, data: bytes, hit: Hit) -> str:
        """The characters around ``hit``, every PHI string in them masked: a leak's report must not leak."""
        width = ENCODINGS[hit.encoding]
        lo = max(0, hit.start - CONTEXT * width)
        lo += (hit.start - lo) % width  # stay on the code units' grid
        window = data[lo:hit.end + CONTEXT * width].lower()
        text = window[:len(window) - len(window) % width].decode(hit.encoding, errors="replace")
        return self.mask("".join(ch if ch.isprintable() else "." for ch in text))


def _outermost(hits: list[Hit]) -> list[Hit]:
    """One hit per place: a string inside a longer hit in the same encoding ("ling" in "romano^ling") is dropped."""
    hits = sorted(hits, key=lambda h: (h.encoding, h.start, -h.end))
    out: list[Hit] = []
    reach: dict[str, int] = {}
    for h in hits:
        if h.end <= reach.get(h.encoding, -1):
            continue
        out.append(h)
        reach[h.encoding] = max(reach.get(h.encoding, -1), h.end)
    return sorted(out, key=lambda h: (h.start, h.encoding))


def _edge_ok(inner: str, outer: str, beyond: str) -> bool:
    """May a string whose edge character is ``inner`` stop at a neighbour ``outer`` (``beyond`` the one past it)?"""
    if not outer:
        return True
    if inner.isalpha():
        return not outer.isalpha()
    if inner.isdigit():
        return not outer.isdigit() and not (outer in ".," and beyond.isdigit())
    return True


def _alone(data: bytes, start: int, end: int, s: str, enc: str, width: int) -> bool:
    back = data[max(0, start - 4 * width):start]
    ahead = data[end:end + 4 * width]
    before = back[len(back) % width:].decode(enc, errors="replace")
    after = ahead[:len(ahead) - len(ahead) % width].decode(enc, errors="replace")
    if width == 2:  # in binary data two bytes before a UTF-16 string decode to any character: ASCII ones count
        before, after = (re.sub(r"[^\x00-\x7f]", " ", x) for x in (before, after))
    return _edge_ok(s[0], before[-1:], before[-2:-1]) and _edge_ok(s[-1], after[:1], after[1:2])


__all__ = ["Hit", "Matcher"]
