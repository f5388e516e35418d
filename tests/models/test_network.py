import pytest
import torch

from sfrs.config import Config, build_config
from sfrs.errors import CheckpointError
from sfrs.models.network import build_network, load_network, read_checkpoint
from sfrs.retrieval.pca import fit_pca_whitening
from tests.tiny import TINY_MODEL


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_network(build_config(Config, overrides=TINY_MODEL).model)


def test_region_zero__equals_global_descriptor(model):
    images = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        regions = model.region_descriptors(images)
        assert regions.shape == (2, 9, model.head_dim)
        torch.testing.assert_close(regions[:, 0], model(images), atol=1e-5, rtol=0)


def test_save_and_load__round_trip_with_pca(model, tmp_path):
    images = torch.randn(3, 3, 48, 64)
    with torch.no_grad():
        sample = model(torch.randn(40, 3, 48, 64)).numpy()
    model.set_pca(fit_pca_whitening(sample, 16))
    path = tmp_path / "m.pt"
    model.save(path)
    loaded = load_network(path)
    assert loaded.config == model.config and loaded.out_dim == 16
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images))


def test_load__refuses_foreign_and_mismatched_files(model, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt: cannot read checkpoint"):
        read_checkpoint(junk)
    torch.save({"weights": 1}, tmp_path / "dict.pt")
    with pytest.raises(CheckpointError, match="not an sfrs checkpoint"):
        read_checkpoint(tmp_path / "dict.pt")
    payload = model.checkpoint_payload()
    payload["model_config"]["head_options"] = {"clusters": 4}
    torch.save(payload, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt: weights do not fit"):
        load_network(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_network(tmp_path / "missing.pt")
