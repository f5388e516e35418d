"""The sweep the planted-run tests share (its run folders: tests/sweep/planted.py)."""
import pytest

from sfrs.sweep import SweepSpec, TrainOptions, parse_grid

COMMON = TrainOptions(generations=2, overrides=("data.dataset=synthetic:tiny",))


@pytest.fixture
def lr_spec():
    return SweepSpec(axes=tuple(parse_grid(["optim.lr=0.01,0.02"])), seeds=(0, 1, 2), options=COMMON)
