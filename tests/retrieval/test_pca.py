"""PCA-whitening: identity covariance on the fit data, agreement with an SVD reference;
attaching it to a network: reused, loaded from a cache of the same weights, or fitted."""
import numpy as np
import pytest
import torch
from PIL import Image

from sfrs.config import Config, build_config
from sfrs.data import Split
from sfrs.errors import DataError
from sfrs.models import PCAWhitening, build_network, load_network
from sfrs.retrieval import attach_pca, fit_pca_whitening
from tests.tiny import TINY_MODEL


def anisotropic(rng, num, dim):
    """Correlated data with well-separated variances (a unique PCA basis up to sign)."""
    mixing = np.linalg.qr(rng.normal(size=(dim, dim)))[0]
    return (rng.normal(size=(num, dim)) * np.linspace(3.0, 0.5, dim)) @ mixing + rng.normal(size=dim)


def svd_reference(x, dim):
    centred = x - x.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    variances = singular[:dim] ** 2 / (len(x) - 1)
    return vt[:dim].T / np.sqrt(variances)


@pytest.mark.parametrize("num, dim_in, dim_out", [(500, 20, 8), (30, 64, 29)], ids=["N>D", "N<D (dual)"])
def test_fit_pca_whitening__identity_covariance_and_matches_svd_up_to_sign(num, dim_in, dim_out):
    x = anisotropic(np.random.default_rng(0), num, dim_in)
    pca = fit_pca_whitening(x.astype(np.float32), dim_out)
    assert pca.mean.shape == (dim_in,) and pca.projection.shape == (dim_in, dim_out)

    whitened = pca.double().project(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.cov(whitened, rowvar=False), np.eye(dim_out), atol=1e-4)

    reference = svd_reference(x.astype(np.float32).astype(np.float64), dim_out)
    projection = pca.projection.numpy()
    signs = np.sign((projection * reference).sum(axis=0))
    np.testing.assert_allclose(projection * signs, reference, rtol=1e-4, atol=1e-5 * np.abs(reference).max())


def test_pca_whitening__forward_is_l2_normalised_and_state_dict_round_trips():
    x = anisotropic(np.random.default_rng(1), 200, 12).astype(np.float32)
    pca = fit_pca_whitening(x, 5)
    out = pca(torch.from_numpy(x[:7]))
    assert out.shape == (7, 5) and out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=1), torch.ones(7))
    copy = PCAWhitening.empty(12, 5)
    copy.load_state_dict(pca.state_dict())
    assert set(pca.state_dict()) == {"mean", "projection"}
    torch.testing.assert_close(copy(torch.from_numpy(x[:7])), out)
    assert copy.in_dim == 12 and copy.out_dim == 5


def test_fit_pca_whitening__does_not_modify_its_input():
    x = anisotropic(np.random.default_rng(2), 50, 6)
    before = x.copy()
    fit_pca_whitening(x, 3)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("num, dim_in, dim_out", [(10, 64, 10), (100, 8, 9), (100, 8, 0)])
def test_fit_pca_whitening__impossible_dimension_is_a_clear_value_error(num, dim_in, dim_out):
    x = np.random.default_rng(3).normal(size=(num, dim_in))
    with pytest.raises(ValueError, match=r"at most min\(N-1, D\)"):
        fit_pca_whitening(x, dim_out)


@pytest.fixture
def small_split(tmp_path):
    """12 random images, enough descriptors for a 4-d PCA."""
    rng = np.random.default_rng(4)
    paths = []
    for i in range(12):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(rng.integers(0, 255, size=(48, 64, 3), dtype=np.uint8)).save(paths[-1])
    utm = np.zeros((6, 2))
    return Split(dataset="noise", split="train", database_paths=paths[:6], query_paths=paths[6:],
                 database_utm=utm, query_utm=utm)


def tiny_network():
    torch.manual_seed(0)
    return build_network(build_config(Config, None, TINY_MODEL).model).eval()


def no_split():
    raise DataError("no training split here")


def test_attach_pca__fits_then_reuses_the_saved_model_and_loads_the_cache_of_the_same_weights(small_split, tmp_path):
    images = torch.randn(2, 3, 48, 64)
    fitted = tiny_network()
    cache, saved = tmp_path / "pca4.pt", tmp_path / "model_pca4.pt"
    message = attach_pca(fitted, 4, lambda: small_split, cache=cache, save_model_to=saved, progress=False)
    assert "fitted on 12 descriptors of noise [train]" in message and message.endswith(f"model saved to {saved}")
    assert fitted.out_dim == 4 and cache.is_file()

    reloaded = load_network(saved)
    assert "already stored with the model: reused" in attach_pca(reloaded, 4, no_split, save_model_to=tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()  # nothing new to save

    from_cache = tiny_network()
    assert "loaded from" in attach_pca(from_cache, 4, no_split, cache=cache)
    with torch.no_grad():
        torch.testing.assert_close(from_cache(images), fitted(images))
        torch.testing.assert_close(reloaded(images), fitted(images))

    # A cache of another dimension is not trusted: the training split is needed again.
    with pytest.raises(DataError, match="--pca needs the training split"):
        attach_pca(tiny_network(), 3, no_split, cache=cache)
