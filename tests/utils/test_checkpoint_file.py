"""Checkpoint files hold tensors and plain data; anything else is refused unless trusted."""
import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from sfrs.errors import CheckpointError
from sfrs.utils.checkpoint_file import load_checkpoint_file, plain_data, save_checkpoint_file


class MakesADirectory:
    """Unpickling it calls ``os.makedirs(path)``: stands for any code a file can run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.makedirs, (self.path,)


@dataclasses.dataclass
class Record:
    name: str
    value: float


def test_plain_data__numpy_paths_and_dataclasses_load_weights_only(tmp_path):
    payload = {
        "ids": np.arange(6, dtype=np.int64).reshape(2, 3)[:, ::2],  # not contiguous
        "labels": np.linspace(0, 1, 4, dtype=np.float16),
        "key": np.arange(3, dtype=np.uint8),
        "names": np.array(["a", "b"]),
        "recall": np.float64(0.5), "count": np.int32(7), "flag": np.bool_(True),
        "where": Path("runs") / "x", "record": Record("r", np.float32(2.0)),
        "pairs": [(1, "a"), (2, None)], "weights": torch.ones(2),
    }
    save_checkpoint_file(payload, tmp_path / "f.pt")
    loaded = torch.load(tmp_path / "f.pt", weights_only=True)
    for name in ("ids", "labels", "key"):
        array = np.asarray(loaded[name])
        assert array.dtype == payload[name].dtype and np.array_equal(array, payload[name]), name
    assert loaded["names"] == ["a", "b"]
    assert type(loaded["recall"]) is float and type(loaded["count"]) is int and loaded["flag"] is True
    assert loaded["where"] == str(Path("runs") / "x") and loaded["record"] == {"name": "r", "value": 2.0}
    assert loaded["pairs"] == [(1, "a"), (2, None)] and torch.equal(loaded["weights"], torch.ones(2))


def test_plain_data__refuses_other_objects_naming_where_they_are():
    with pytest.raises(TypeError, match=r"state\.miner\[1\]: MakesADirectory"):
        plain_data({"state": {"miner": [0, MakesADirectory("x")]}})


def test_load__pickled_code_is_refused_without_running_it_and_runs_when_trusted(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "shared.pt"
    torch.save({"weights": torch.zeros(1), "note": MakesADirectory(marker)}, path)
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint_file(path)
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"{path}: contains objects that could run code")
    assert "--trust-checkpoint" in message and "trusted source" in message
    assert not marker.exists()
    assert torch.equal(load_checkpoint_file(path, trust=True)["weights"], torch.zeros(1))
    assert marker.is_dir()


def test_load__corrupt_file_is_unreadable_whether_trusted_or_not(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a checkpoint")
    for trust in (False, True):
        with pytest.raises(CheckpointError, match=r"junk.pt: cannot read training state \(UnpicklingError: .+\); "
                                                  "remove it") as error:
            load_checkpoint_file(path, trust, what="training state", hint="remove it")
        assert "trust" not in str(error.value)
