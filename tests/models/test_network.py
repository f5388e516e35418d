import pytest
import torch

from sfrs.config import Config, build_config, to_dict
from sfrs.errors import CheckpointError
from sfrs.models import PCAWhitening, build_network, load_network, network_from_payload
from tests.tiny import TINY_MODEL


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_network(build_config(Config, overrides=TINY_MODEL).model)


def random_pca(in_dim, out_dim):
    generator = torch.Generator().manual_seed(1)
    return PCAWhitening(torch.randn(in_dim, generator=generator), torch.randn(in_dim, out_dim, generator=generator))


def test_region_zero__equals_global_descriptor(model):
    images = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        regions = model.region_descriptors(images)
        assert regions.shape == (2, 9, model.head_dim)
        torch.testing.assert_close(regions[:, 0], model(images), atol=1e-5, rtol=0)


def test_save_and_load__round_trip_with_pca(model, tmp_path):
    images = torch.randn(3, 3, 48, 64)
    model.set_pca(random_pca(model.head_dim, 16))
    path = tmp_path / "m.pt"
    model.save(path)
    loaded = load_network(path)
    assert loaded.config == model.config and loaded.out_dim == 16
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images))


def test_load__model_file_of_the_first_format_and_training_state_give_the_same_network(model, tmp_path):
    # The layout model files have had since version 1, written out by hand.
    pca = random_pca(model.head_dim, 8)
    first_format = {
        "format": "sfrs-model", "version": 1, "model_config": to_dict(model.config),
        "state_dict": {k: v.clone() for k, v in model.state_dict().items()},
        "pca": {"mean": pca.mean.clone(), "projection": pca.projection.clone()},
    }
    torch.save(first_format, tmp_path / "model.pt")
    torch.save({"model": first_format, "optimizer": {}, "position": {"global_step": 3}}, tmp_path / "last.pt")
    model.set_pca(pca)
    images = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        expected = model(images)
        for loaded in (load_network(tmp_path / "model.pt"), load_network(tmp_path / "last.pt"),
                       network_from_payload(torch.load(tmp_path / "last.pt", weights_only=False))):
            assert loaded.out_dim == 8
            torch.testing.assert_close(loaded(images), expected)


def test_load__refuses_foreign_and_mismatched_files(model, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt: cannot read checkpoint"):
        load_network(junk)
    torch.save({"weights": 1}, tmp_path / "dict.pt")
    with pytest.raises(CheckpointError, match="dict.pt: not an sfrs checkpoint"):
        load_network(tmp_path / "dict.pt")
    with pytest.raises(CheckpointError, match="state: not an sfrs checkpoint"):
        network_from_payload({"model": {"weights": 1}}, "state")
    payload = model.checkpoint_payload()
    payload["model_config"]["head_options"] = {"clusters": 4}
    torch.save(payload, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt: weights do not fit"):
        load_network(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_network(tmp_path / "missing.pt")
