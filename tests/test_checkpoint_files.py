"""Every kind of torch file the package writes opens with ``torch.load(path, weights_only=True)``:
model files (PCA, adapter, metadata), training states (mid-chunk and at the ends of epochs
and generations), the NetVLAD initialisation cache, the PCA cache, the adaptation state."""
from pathlib import Path

import numpy as np
import pytest
import torch

from sfrs.adaptation import AdaptationLoop, load_adapt_config
from sfrs.config import Config, build_config, load_config
from sfrs.models import Adapter, PCAWhitening, build_network, load_network
from sfrs.retrieval.pca import _write_pca_cache
from sfrs.training import train
from sfrs.training.trainer import Interrupted
from tests.tiny import TINY_MODEL, TINY_TRAINING


def safe_load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_model_file__with_pca_adapter_and_metadata(tmp_path):
    torch.manual_seed(0)
    model = build_network(build_config(Config, None, TINY_MODEL).model)
    dim = model.head_dim
    model.set_pca(PCAWhitening(torch.randn(dim), torch.randn(dim, 8)))
    model.set_adapter(Adapter(8, 6))
    model.eval()
    model.save(tmp_path / "adapted.pt", extra={"adaptation": {"checkpoint": Path("runs/x/best.pt"),
                                                                "temperature": np.float32(0.05)}})
    payload = safe_load(tmp_path / "adapted.pt")
    assert payload["adaptation"] == {"checkpoint": str(Path("runs/x/best.pt")), "temperature": pytest.approx(0.05)}
    images = torch.rand(2, 3, 48, 64)
    with torch.no_grad():
        torch.testing.assert_close(load_network(tmp_path / "adapted.pt").eval()(images), model(images), rtol=0, atol=0)


def test_pca_cache(tmp_path):
    _write_pca_cache(tmp_path / "pca8.pt", "weights-hash", 8, PCAWhitening(torch.zeros(16), torch.ones(16, 8)))
    assert safe_load(tmp_path / "pca8.pt")["dim"] == 8


def test_adaptation_state(tmp_path):
    config = load_adapt_config(
        overrides=["adapter.hidden_dim=16", "optim.steps=3", "optim.batch_size=8", "checkpoint_every=1",
                   "pseudo_labels.scope=whole_set"],
        direct={"data.dataset": "synthetic features"},
    )
    torch.manual_seed(0)
    features = torch.nn.functional.normalize(torch.randn(20, 32), dim=1)
    loop = AdaptationLoop(Adapter(32, 16), features, features + 0.01, config, state_path=tmp_path / "last.pt",
                          fingerprint="run")
    loop.run(progress=False)
    state = safe_load(tmp_path / "last.pt")
    assert state["step"] == 3 and len(state["history"]) == 3


def test_training_run__states_models_and_initialisation_cache(tmp_path, private_cache):
    config = load_config(overrides=TINY_TRAINING, generations=1, epochs=1)
    steps = []

    def stop_after_one_step():
        steps.append(1)
        if len(steps) == 1:
            raise Interrupted()

    torch.manual_seed(config.seed)
    with pytest.raises(Interrupted):
        train(config, tmp_path, progress=False, log=lambda line: None, on_step=stop_after_one_step)
    mid_chunk = safe_load(tmp_path / "checkpoints" / "last.pt")
    assert mid_chunk["chunk"] is not None and mid_chunk["position"]["started"]
    assert isinstance(mid_chunk["miner"]["previous_hardest"], torch.Tensor)

    train(config, tmp_path, progress=False, log=lambda line: None, on_step=stop_after_one_step)
    written = {str(path.relative_to(tmp_path)): path for path in tmp_path.rglob("*.pt")}
    assert {"best.pt", "final.pt", "checkpoints/last.pt", "checkpoints/gen0_ep0.pt",
            "checkpoints/gen0_final.pt"} <= set(written)
    assert any(name.startswith("cache/init_") for name in written)
    for path in written.values():
        safe_load(path)
