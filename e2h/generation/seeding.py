"""Seeds that are the same in every process, on every rank and in every rerun, derived from named parts.

Not `hash()`: Python salts string hashes per process. One helper for every seeded draw that must be
reproducible from names (the synthetic benchmark's parts, PPO's rollouts and minibatch orders, the sampling
of a problem's solutions, re-ranking's subsets). It imports nothing of e2h, so any layer may use it.
"""

from __future__ import annotations

import hashlib


def stable_seed(*parts: object) -> int:
    """A 64-bit seed from `parts`, joined by "/" as text: the first 8 bytes of their SHA-256, big-endian."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big")
