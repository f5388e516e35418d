"""Independent random streams for every part of the city.

Each image, facade and layout draws from its own generator keyed by (seed, purpose,
split, ...), so the output does not depend on generation order and one image can be
re-rendered alone.
"""
from __future__ import annotations

import numpy as np

# Purposes: the first key after the seed, so streams of different purposes never collide.
LAYOUT = 1
FACADE = 2
DATABASE_IMAGE = 3
QUERY_IMAGE = 4
CAPTURE_TIME = 5
OCCLUDER = 6


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """A generator determined only by ``seed`` and the non-negative integer ``keys``."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), *(int(k) for k in keys)]))
