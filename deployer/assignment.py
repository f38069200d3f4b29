"""Sticky assignment: which deployment a unit (a user, a session, an account) is sent to.

A pure function of (split salt, unit, the deployments with their weights), the same in
every router replica, after every restart, in every process (no Python `hash()`, which is
salted per process), and in the vectorised form analyses and benchmarks use.

The scheme is **weighted rendezvous hashing** (the exponential form of "highest random
weight", also known as P-MinHash): every deployment `d` draws `u_d` in (0, 1) from a hash
of (salt, unit, d), scores `-ln(u_d) / w_d` (an exponential variable of rate `w_d`), and
the lowest score wins. So a unit goes to `d` with probability `w_d / sum(w)`, and:

- when one deployment's weight changes and the others keep their proportions (a canary
  step 5 → 25 %, any change of a two-way split, adding or removing a deployment) only the
  units that must move move: exactly the difference in share, all of them towards (or
  away from) that deployment;
- when several weights change at once among three or more deployments, the share that
  moves is `1 - J_P(old, new)` (the "probability Jaccard" distance), which can exceed the
  bare difference in shares, but no stateless scheme does better for every change
  (Moulton & Jiang, "Maximally consistent sampling and the Jaccard index of probability
  distributions", 2018). The alternative, cumulative intervals over a fixed deployment
  order, is minimal only for two deployments: growing the first of three by 10 points
  moves 15 % of units instead of 10 % (measured in tests/unit/deployer/test_assignment.py);
- taking a deployment out (it refuses connections, it is not ready) moves only its own
  units, each to its second choice: the router's retry uses exactly that.

The hash: the unit's UTF-8 bytes are read as little-endian 64-bit words (zero-padded) and
folded with the splitmix64 finaliser from a seed made of the salt's key and the length;
each deployment then mixes the unit's key with its own name's key. Keys of names are
BLAKE2b. The scalar form (`assign`) serves the router; `assign_many` is the same function
over numpy arrays, for 100k-unit tests, simulations and bench/bench_assignment.py, and
gives the same answers (a test holds the two together; golden values pin the scheme,
because changing it would reshuffle every live split).
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np
import numpy.typing as npt

MASK64 = (1 << 64) - 1
_MIX_1 = 0xBF58476D1CE4E5B9
_MIX_2 = 0x94D049BB133111EB
_TO_UNIT = 1.0 / (1 << 53)
MAX_UNIT_BYTES = 512  # 128 characters of UTF-8 at most (the exposure log's unit_id column)

UnitKeys = npt.NDArray[np.uint64]


def _mix(value: int) -> int:
    """splitmix64's finaliser: a bijection on 64 bits with full avalanche."""
    value = ((value ^ (value >> 30)) * _MIX_1) & MASK64
    value = ((value ^ (value >> 27)) * _MIX_2) & MASK64
    return value ^ (value >> 31)


def _mix_array(values: UnitKeys) -> UnitKeys:
    values = (values ^ (values >> np.uint64(30))) * np.uint64(_MIX_1)
    values = (values ^ (values >> np.uint64(27))) * np.uint64(_MIX_2)
    return values ^ (values >> np.uint64(31))


@lru_cache(maxsize=4096)
def name_key(name: str) -> int:
    """A stable 64-bit key for a salt or a deployment name."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")


def unit_key(salt: str, unit: str) -> int:
    """The unit's 64-bit key under a split's salt."""
    data = unit.encode()
    if len(data) > MAX_UNIT_BYTES:
        raise ValueError(f"a unit is at most {MAX_UNIT_BYTES} bytes of UTF-8; this one has {len(data)}")
    key = _mix(name_key(salt) ^ len(data))
    for (word,) in struct.iter_unpack("<Q", data + b"\0" * (-len(data) % 8)):
        key ^= word  # _mix, inlined: this runs once per routed request
        key = ((key ^ (key >> 30)) * _MIX_1) & MASK64
        key = ((key ^ (key >> 27)) * _MIX_2) & MASK64
        key ^= key >> 31
    return key


def _packed_words(units: Sequence[str]) -> tuple[npt.NDArray[np.uint8], UnitKeys]:
    """The units as one NUL-padded byte row each (width a multiple of 8), and their byte lengths."""
    joined = "".join(units)
    if joined.isascii() and "\0" not in joined:  # the common case: numpy encodes, lengths in C
        packed = np.array(units, dtype="S") if units else np.zeros(0, dtype="S8")
        lengths = np.strings.str_len(packed).astype(np.uint64)
    else:  # NUL-padded rows would lose a trailing NUL's length: count the bytes ourselves
        encoded = [unit.encode() for unit in units]
        packed = np.array(encoded, dtype="S")
        lengths = np.fromiter(map(len, encoded), dtype=np.uint64, count=len(encoded))
    longest = packed.dtype.itemsize
    if longest > MAX_UNIT_BYTES:
        raise ValueError(f"a unit is at most {MAX_UNIT_BYTES} bytes of UTF-8; one has {int(lengths.max())}")
    width = max(8, -(-longest // 8) * 8)
    if width != longest:
        packed = packed.astype(f"S{width}")
    return packed.view(np.uint8).reshape(len(units), width), lengths


def unit_keys(salt: str, units: Sequence[str]) -> UnitKeys:
    """`unit_key` for many units at once (numpy; the answers are the same)."""
    raw, lengths = _packed_words(units)
    words = raw.view("<u8")
    word_counts = (lengths + np.uint64(7)) // np.uint64(8)
    keys = _mix_array(np.uint64(name_key(salt)) ^ lengths)
    for column in range(words.shape[1]):
        mixed = _mix_array(keys ^ words[:, column].astype(np.uint64))
        inside = word_counts > column
        keys = mixed if inside.all() else np.where(inside, mixed, keys)
    return keys


def pick(key: int, candidates: Sequence[tuple[str, int]]) -> str | None:
    """The deployment of the unit whose key is `key`, among (name, weight); None if no weight."""
    best: str | None = None
    best_score = math.inf
    log = math.log
    for deployment, weight in candidates:
        if weight <= 0:
            continue
        draw = key ^ name_key(deployment)  # _mix, inlined, then 53 bits to a float in (0, 1)
        draw = ((draw ^ (draw >> 30)) * _MIX_1) & MASK64
        draw = ((draw ^ (draw >> 27)) * _MIX_2) & MASK64
        draw ^= draw >> 31
        score = -log(((draw >> 11) + 0.5) * _TO_UNIT) / weight
        if score < best_score:
            best, best_score = deployment, score
    return best


def assign(salt: str, unit: str, weights: Mapping[str, int]) -> str | None:
    """Where `unit` goes under `salt` and `weights` (deployment → weight); None if all are 0."""
    return pick(unit_key(salt, unit), list(weights.items()))


def pick_many(keys: UnitKeys, candidates: Sequence[tuple[str, int]]) -> npt.NDArray[np.intp]:
    """For each key, the index into `candidates` of its deployment (-1 when no weight is > 0)."""
    live = [(index, name, weight) for index, (name, weight) in enumerate(candidates) if weight > 0]
    if not live:
        return np.full(len(keys), -1, dtype=np.intp)
    scores = np.empty((len(live), len(keys)))
    for row, (_, deployment, weight) in enumerate(live):
        bits = _mix_array(keys ^ np.uint64(name_key(deployment))) >> np.uint64(11)
        draws = scores[row]
        np.add(bits, 0.5, out=draws, casting="unsafe")
        draws *= _TO_UNIT
        np.log(draws, out=draws)
        draws *= -1.0 / weight
    indices = np.array([index for index, _, _ in live], dtype=np.intp)
    chosen: npt.NDArray[np.intp] = indices[np.argmin(scores, axis=0)]
    return chosen


def assign_many(salt: str, units: Sequence[str], weights: Mapping[str, int]) -> list[str | None]:
    """`assign` for many units at once."""
    candidates = list(weights.items())
    names = np.array([name for name, _ in candidates] + [None], dtype=object)  # index -1 → None
    result: list[str | None] = names[pick_many(unit_keys(salt, units), candidates)].tolist()
    return result
