"""Per-stage random streams derived from the config's master seed."""

from __future__ import annotations

import zlib

import numpy as np


def stage_seed_sequence(seed: int, stage: str, *extra: int) -> np.random.SeedSequence:
    """SeedSequence for ``stage`` (and e.g. a chunk index), independent of other stages."""
    return np.random.SeedSequence([int(seed), zlib.crc32(stage.encode()), *map(int, extra)])


def stage_rng(seed: int, stage: str, *extra: int) -> np.random.Generator:
    """numpy Generator for ``stage``; the same (seed, stage, extra) always gives the same stream."""
    return np.random.default_rng(stage_seed_sequence(seed, stage, *extra))
