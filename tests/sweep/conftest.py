"""Planted sweeps: run folders with results.json as sfrs-train writes them, no training."""
import pytest

from sfrs.sweep import SweepSpec, TrainOptions, parse_grid
from tests.sweep.planted import plant, planted_results, recall  # noqa: F401  (shared with the tests)

COMMON = TrainOptions(generations=2, overrides=("data.dataset=synthetic:tiny",))


@pytest.fixture
def lr_spec():
    return SweepSpec(axes=tuple(parse_grid(["optim.lr=0.01,0.02"])), seeds=(0, 1, 2), options=COMMON)
