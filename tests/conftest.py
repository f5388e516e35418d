"""Shared fixtures: one tiny synthetic city per test session, in a private cache."""
from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory) -> Path:
    """Commands under test find the synthetic city here, never in the user's cache."""
    cache = tmp_path_factory.mktemp("sfrs_cache")
    previous = os.environ.get("SFRS_CACHE")
    os.environ["SFRS_CACHE"] = str(cache)
    yield cache
    if previous is None:
        os.environ.pop("SFRS_CACHE", None)
    else:
        os.environ["SFRS_CACHE"] = previous


@pytest.fixture(scope="session")
def tiny_city_root(private_cache) -> Path:
    from sfrs.data.synthetic import ensure_synthetic

    return ensure_synthetic("tiny", seed=0, progress=False)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A saved untrained tiny model (``tests.tiny.TINY_MODEL``), seeded."""
    import torch

    from sfrs.config import Config, build_config
    from sfrs.models import build_network
    from tests.tiny import TINY_MODEL

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    build_network(build_config(Config, None, TINY_MODEL).model).save(path)
    return path
