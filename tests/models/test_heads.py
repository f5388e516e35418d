"""Heads against independent naive formulations (float64) and the region invariants."""
import numpy as np
import pytest
import torch

from sfrs.errors import ConfigError
from sfrs.models.heads import GeM, NetVLAD, build_head, list_heads, netvlad_alpha


def naive_netvlad(x, centroids, weight, normalize_input=True):
    """Loops over images, clusters and locations; materialises every residual."""
    B, D, h, w = x.shape
    K = centroids.shape[0]
    outputs = []
    for b in range(B):
        locals_ = [x[b, :, i, j] for i in range(h) for j in range(w)]
        if normalize_input:
            locals_ = [v / v.norm().clamp_min(1e-12) for v in locals_]
        vlad = []
        for k in range(K):
            acc = torch.zeros(D, dtype=x.dtype)
            for v in locals_:
                logits = torch.stack([weight[j] @ v for j in range(K)])
                a = torch.exp(logits[k] - logits.max()) / torch.exp(logits - logits.max()).sum()
                residual = v - centroids[k]
                acc = acc + a * residual
            vlad.append(acc / acc.norm())
        flat = torch.cat(vlad)  # cluster-major
        outputs.append(flat / flat.norm())
    return torch.stack(outputs)


@pytest.mark.parametrize("normalize_input", [True, False])
def test_netvlad__matches_naive_float64_loop(normalize_input):
    torch.manual_seed(0)
    K, D, B, h, w = 3, 5, 2, 3, 4
    head = NetVLAD(clusters=K, dim=D, normalize_input=normalize_input).double()
    x = torch.randn(B, D, h, w, dtype=torch.float64, requires_grad=True)
    projection = torch.randn(B, K * D, dtype=torch.float64)

    out = head(x)
    (out * projection).sum().backward()

    x_ref = x.detach().clone().requires_grad_(True)
    c_ref = head.centroids.detach().clone().requires_grad_(True)
    w_ref = head.assign.weight.detach().clone().requires_grad_(True)
    ref = naive_netvlad(x_ref, c_ref, w_ref[:, :, 0, 0], normalize_input)
    (ref * projection).sum().backward()

    assert out.shape == (B, K * D) and head.out_dim == K * D
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(head.centroids.grad, c_ref.grad, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(head.assign.weight.grad, w_ref.grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("fc_dim", [None, 3])
def test_gem__matches_direct_formula_float64(fc_dim):
    torch.manual_seed(0)
    B, C, h, w = 2, 4, 3, 5
    head = GeM(dim=C, p=2.5, fc_dim=fc_dim).double()
    x = torch.randn(B, C, h, w, dtype=torch.float64)
    x[0, 0, 0, 0] = -1.0  # clamped to eps
    out = head(x)

    p = 2.5
    pooled = torch.empty(B, C, dtype=torch.float64)
    for b in range(B):
        for c in range(C):
            values = [max(float(x[b, c, i, j]), 1e-6) ** p for i in range(h) for j in range(w)]
            pooled[b, c] = (sum(values) / len(values)) ** (1 / p)
    if fc_dim is not None:
        pooled = pooled @ head.fc.weight.detach().T + head.fc.bias.detach()
    expected = pooled / pooled.norm(dim=1, keepdim=True)
    assert out.shape == (B, fc_dim or C) and head.out_dim == (fc_dim or C)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)


def test_gem__p_is_learnable():
    head = GeM(dim=4)
    head(torch.rand(2, 4, 3, 3)).sum().backward()
    assert head.p.grad is not None and head.p.grad.abs().item() > 0


def _crops(x):
    h, w = x.shape[-2:]
    t, l = h // 2, w // 2
    return [
        x, x[..., :t, :], x[..., t:, :], x[..., :, :l], x[..., :, l:],
        x[..., :t, :l], x[..., :t, l:], x[..., t:, :l], x[..., t:, l:],
    ]


@pytest.mark.parametrize(
    "make_head",
    [
        lambda: NetVLAD(clusters=4, dim=6),
        lambda: NetVLAD(clusters=4, dim=6, normalize_input=False),
        lambda: GeM(dim=6),
        lambda: GeM(dim=6, fc_dim=5),
    ],
    ids=["netvlad", "netvlad-unnormalised", "gem", "gem-fc"],
)
@pytest.mark.parametrize("size", [(4, 6), (5, 7), (2, 3)])
def test_regions__equal_head_applied_to_feature_map_crops(make_head, size):
    torch.manual_seed(0)
    head = make_head().double()
    x = torch.randn(3, 6, *size, dtype=torch.float64)
    regions = head.regions(x)
    assert regions.shape == (3, 9, head.out_dim)
    torch.testing.assert_close(regions.norm(dim=2), torch.ones(3, 9, dtype=torch.float64))
    for r, crop in enumerate(_crops(x)):
        torch.testing.assert_close(regions[:, r], head(crop), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(regions[:, 0], head(x), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("make_head", [lambda: NetVLAD(clusters=2, dim=3), lambda: GeM(dim=3)])
@pytest.mark.parametrize("size", [(1, 4), (4, 1)])
def test_regions__too_small_map_raises_value_error(make_head, size):
    with pytest.raises(ValueError, match="at least 2x2"):
        make_head().regions(torch.randn(1, 3, *size))


def test_regions__float32_global_matches_forward():
    torch.manual_seed(0)
    head = NetVLAD(clusters=8, dim=16)
    x = torch.randn(2, 16, 7, 9)
    torch.testing.assert_close(head.regions(x)[:, 0], head(x), rtol=1e-5, atol=1e-6)


def _clustered_descriptors(K, D, per_cluster, noise, seed):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((K, D))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    points = np.repeat(centres, per_cluster, axis=0) + noise * rng.standard_normal((K * per_cluster, D))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return centres, points.astype(np.float32)


def test_netvlad_init__kmeans_recovers_centroids_and_sets_alpha():
    K, D = 5, 16
    centres, descriptors = _clustered_descriptors(K, D, per_cluster=80, noise=0.05, seed=1)
    head = NetVLAD(clusters=K, dim=D)
    alpha = head.init_from_descriptors(descriptors, seed=0, niter=25, nredo=20)  # best of 20 random starts

    recovered = head.centroids.detach().numpy().astype(np.float64)
    normalised = recovered / np.linalg.norm(recovered, axis=1, keepdims=True)
    similarity = centres @ normalised.T  # (true, recovered)
    assert np.all(similarity.max(axis=1) > 0.99)
    assert sorted(similarity.argmax(axis=1).tolist()) == list(range(K))

    dots = descriptors.astype(np.float64) @ normalised.T
    dots.sort(axis=1)
    expected_alpha = -np.log(0.01) / np.mean(dots[:, -1] - dots[:, -2])
    assert alpha > 0
    assert alpha == pytest.approx(expected_alpha, rel=1e-6)
    assert netvlad_alpha(descriptors, normalised) == pytest.approx(expected_alpha, rel=1e-9)
    weight = head.assign.weight.detach()[:, :, 0, 0].numpy()
    np.testing.assert_allclose(weight, alpha * normalised, rtol=1e-5, atol=1e-6)


def test_netvlad_init__is_seeded_and_checks_shapes():
    _, descriptors = _clustered_descriptors(4, 8, per_cluster=30, noise=0.3, seed=2)
    a, b = NetVLAD(clusters=4, dim=8), NetVLAD(clusters=4, dim=8)
    assert a.init_from_descriptors(descriptors, seed=3, niter=10) == b.init_from_descriptors(
        descriptors, seed=3, niter=10
    )
    torch.testing.assert_close(a.centroids, b.centroids)
    with pytest.raises(ValueError, match=r"\(N, 8\)"):
        a.init_from_descriptors(descriptors[:, :4])
    with pytest.raises(ValueError, match="at least 4"):
        a.init_from_descriptors(descriptors[:3])


def test_build_head__names_defaults_and_errors():
    assert list_heads() == ["netvlad", "gem", "mac", "spoc", "rmac", "crn", "mixvpr", "salad", "cls"]
    vlad = build_head("netvlad", dim=8)
    assert vlad.clusters == 64 and vlad.out_dim == 64 * 8 and vlad.normalize_input
    assert tuple(vlad.centroids.shape) == (64, 8)
    assert vlad.assign.bias is None and vlad.assign.kernel_size == (1, 1)
    gem = build_head("gem", dim=8, fc_dim=4)
    assert gem.out_dim == 4 and gem.p.item() == pytest.approx(3.0) and gem.eps == 1e-6
    with pytest.raises(ConfigError, match="unknown head 'vlad'"):
        build_head("vlad", dim=8)
    with pytest.raises(ConfigError, match="gem"):
        build_head("gem", dim=8, clusters=3)
    with pytest.raises(ValueError, match=r"\(B, 8, h, w\)"):
        vlad(torch.randn(1, 4, 3, 3))


def test_netvlad__does_not_materialise_residuals():
    """Memory check by construction: no autograd-saved tensor has B*K*D*N elements."""
    B, K, D, h, w = 2, 8, 16, 5, 6
    head = NetVLAD(clusters=K, dim=D)
    x = torch.randn(B, D, h, w, requires_grad=True)
    largest = []

    def pack(tensor):
        largest.append(tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        head(x).sum().backward()
    assert max(largest) < B * K * D * h * w / 4
