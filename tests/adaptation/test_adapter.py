"""The adapter inside a model file: the learnable temperature survives save/load, the
adapted network is what load_network gives back, old files still load."""
import pytest
import torch

from sfrs.config import Config, build_config
from sfrs.errors import CheckpointError, ConfigError
from sfrs.models import Adapter, PCAWhitening, build_network, load_network
from tests.tiny import TINY_MODEL


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    return build_network(build_config(Config, None, TINY_MODEL).model, load_pretrained=False).eval()


def trained_adapter(in_dim, hidden=6):
    torch.manual_seed(1)
    adapter = Adapter(in_dim, hidden)
    with torch.no_grad():
        adapter.logit_scale.fill_(2.3456)  # not the initial log(1/0.07)
        adapter.train()
        adapter(torch.randn(32, in_dim))  # moves the BatchNorm running statistics
    return adapter.eval()


def test_temperature__survives_save_and_load(network, tmp_path):
    adapter = trained_adapter(network.out_dim)
    network.set_adapter(adapter)
    try:
        network.save(tmp_path / "adapted.pt")
    finally:
        network.set_adapter(None)
    loaded = load_network(tmp_path / "adapted.pt")
    assert loaded.adapter is not None
    assert loaded.adapter.logit_scale.item() == pytest.approx(2.3456)
    assert loaded.adapter.scale.item() == pytest.approx(float(torch.exp(torch.tensor(2.3456))))
    for name, value in adapter.state_dict().items():
        assert torch.equal(loaded.adapter.state_dict()[name], value), name
    assert "adapter.logit_scale" not in torch.load(tmp_path / "adapted.pt", weights_only=False)["state_dict"]


def test_adapted_network__forward_is_l2norm_of_the_encoder_after_the_head(network, tmp_path):
    adapter = trained_adapter(network.out_dim)
    images = torch.randn(3, 3, *network.input_size)
    with torch.no_grad():
        frozen = network(images)
        network.set_adapter(adapter)
        try:
            assert network.out_dim == 6
            adapted = network(images)
            network.save(tmp_path / "adapted.pt")
        finally:
            network.set_adapter(None)
        expected = torch.nn.functional.normalize(adapter.encoder(frozen), dim=1)
        torch.testing.assert_close(adapted, expected)
        torch.testing.assert_close(load_network(tmp_path / "adapted.pt").eval()(images), expected)


def test_model_file_without_adapter__loads_as_before(network, tmp_path):
    network.save(tmp_path / "plain.pt")
    payload = torch.load(tmp_path / "plain.pt", weights_only=False)
    assert "adapter" not in payload  # files of non-adapted models are unchanged
    assert load_network(tmp_path / "plain.pt").adapter is None


def test_adapter_after_pca__takes_the_whitened_dimension(network, tmp_path):
    dim = network.head_dim
    network.set_pca(PCAWhitening(torch.zeros(dim), torch.eye(dim)[:, :5]))
    try:
        with pytest.raises(ValueError, match="takes 6-d descriptors but the model gives 5-d"):
            network.set_adapter(Adapter(6, 4))
        network.set_adapter(trained_adapter(5, hidden=3))
        with pytest.raises(ConfigError, match="cannot be added to an adapted model"):
            network.set_pca(PCAWhitening(torch.zeros(dim), torch.eye(dim)[:, :5]))
        network.save(tmp_path / "pca_adapted.pt")
        loaded = load_network(tmp_path / "pca_adapted.pt")
        assert loaded.pca.out_dim == 5 and loaded.adapter.in_dim == 5 and loaded.out_dim == 3
    finally:
        network.set_adapter(None)
        network.set_pca(None)


def test_broken_adapter_entry__is_a_one_line_checkpoint_error(network, tmp_path):
    network.set_adapter(trained_adapter(network.out_dim))
    try:
        payload = network.checkpoint_payload()
    finally:
        network.set_adapter(None)
    payload["adapter"]["in_dim"] = network.out_dim + 1
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="bad.pt: invalid adapter"):
        load_network(tmp_path / "bad.pt")
