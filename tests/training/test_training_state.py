"""The training state file: tensors and plain data (version 3) that restore the random
generators and the mined chunk exactly; version 2 files (numpy objects) only when trusted."""
import dataclasses
import random

import numpy as np
import pytest
import torch

from sfrs.errors import CheckpointError
from sfrs.training.chunks import MinedChunk
from sfrs.training.state import STATE_FORMAT, History, Position, TrainingState, load_state, save_state


def draws():
    return np.random.rand(3).tolist(), np.random.randn(1).tolist(), [random.random() for _ in range(3)], torch.rand(3)


def state_with_arrays():
    chunk = MinedChunk(rows=np.array([4, 1, 7]), tuples=np.arange(15, dtype=np.int64).reshape(3, 5), num_negatives=2,
                       teacher=np.random.default_rng(0).random((3, 2, 9)).astype(np.float16))
    history = History(epochs=[{"generation": 0, "epoch": 0, "steps": 4, "val": {"1": np.float64(0.25)}}])
    return TrainingState(config={"seed": 0}, position=Position(chunk=1, step=2, started=True), history=history,
                         miner={"previous_hardest": np.full((5, 3), -1, dtype=np.int64)}, chunk=chunk.to_state())


def test_state__loads_weights_only_and_restores_generators_chunk_and_miner(tmp_path):
    np.random.seed(1), random.seed(2), torch.manual_seed(3)
    np.random.randn()  # a cached Gaussian is part of numpy's state
    state = state_with_arrays()
    save_state(tmp_path / "last.pt", state)
    expected = draws()
    assert torch.load(tmp_path / "last.pt", weights_only=True)["version"] == 3

    np.random.seed(9), random.seed(9), torch.manual_seed(9)
    loaded = load_state(tmp_path / "last.pt")
    for a, b in zip(expected, draws()):
        assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b
    chunk, original = MinedChunk.from_state(loaded.chunk), MinedChunk.from_state(state.chunk)
    for name in ("rows", "tuples", "teacher"):
        a, b = getattr(chunk, name), getattr(original, name)
        assert isinstance(a, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b), name
    assert np.array_equal(np.asarray(loaded.miner["previous_hardest"], dtype=np.int64), state.miner["previous_hardest"])
    assert loaded.position == state.position and loaded.history.epochs[0]["val"] == {"1": 0.25}


def test_version_2_state__is_refused_unless_trusted_and_then_resumes(tmp_path):
    """Version 2 pickled numpy's own objects: the generator tuple, the miner's and the chunk's arrays."""
    state = state_with_arrays()
    np.random.seed(5)
    path = tmp_path / "last.pt"
    torch.save({
        "format": STATE_FORMAT, "version": 2, "config": state.config, "model": None, "optimizer": None,
        "scheduler": None, "terms": None, "miner": state.miner, "chunk": state.chunk,
        "position": dataclasses.asdict(state.position), "history": dataclasses.asdict(state.history),
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
    }, path)
    expected = np.random.rand(4)
    with pytest.raises(CheckpointError, match=r"last.pt: contains objects that could run code .*--trust-checkpoint"):
        load_state(path)
    np.random.seed(0)
    loaded = load_state(path, trust=True)
    assert np.array_equal(np.random.rand(4), expected)
    assert np.array_equal(MinedChunk.from_state(loaded.chunk).tuples, state.chunk["tuples"])
    assert loaded.position == state.position
