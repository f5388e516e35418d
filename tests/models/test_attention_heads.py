"""CRN, MixVPR, SALAD and the class-token head against their papers' equations written in
float64 (numpy loops and plain matmuls), their region rules, and one SFRS soft-label
generation trained with each (the head contract over the catalogue is in
test_pooling_heads.py and test_backbones.py)."""
import math

import numpy as np
import pytest
import torch

from sfrs.config import Config, build_config
from sfrs.errors import ConfigError
from sfrs.models import CRN, SALAD, ClassTokenHead, MixVPR, NetVLAD, build_head, build_network, load_network
from sfrs.models.heads import log_sinkhorn, transport_marginals
from sfrs.models.heads.crn import CONTEXT_FILTERS
from tests.models.test_pooling_heads import train_soft_label_generation


def _np(tensor):
    return tensor.detach().double().numpy()


def _unit(v):
    return v / np.linalg.norm(v)


def _crops(x):
    """The 9 SFRS crops of (..., h, w), written out: global, top, bottom, left, right, TL, TR, BL, BR."""
    h, w = x.shape[-2:]
    t, l = h // 2, w // 2
    return [x, x[..., :t, :], x[..., t:, :], x[..., :, :l], x[..., :, l:],
            x[..., :t, :l], x[..., :t, l:], x[..., t:, :l], x[..., t:, l:]]


# -- CRN ---------------------------------------------------------------------------------

def _naive_context_mask(x, crn):
    """Kim et al. 2017, Fig. 3 as the authors' model computes it, for one map x (C, h, w):
    3x3/stride-2 average pooling (windows cut at the border, size rounded up), zero-padded
    3x3/5x5/7x7 filters + ReLU, sum of the 84 responses + bias, ReLU, bilinear upsampling
    (half-pixel centres) back to h x w."""
    C, h, w = x.shape
    ph, pw = math.ceil((h - 3) / 2) + 1, math.ceil((w - 3) / 2) + 1
    pooled = np.zeros((C, ph, pw))
    for i in range(ph):
        for j in range(pw):
            window = x[:, 2 * i:min(2 * i + 3, h), 2 * j:min(2 * j + 3, w)]
            pooled[:, i, j] = window.reshape(C, -1).mean(axis=1)
    total = np.zeros((ph, pw))
    for conv in crn.context.filters:
        weight, bias = _np(conv.weight), _np(conv.bias)
        k = weight.shape[-1]
        pad = k // 2
        for o in range(weight.shape[0]):
            response = np.full((ph, pw), bias[o])
            for i in range(ph):
                for j in range(pw):
                    for di in range(k):
                        for dj in range(k):
                            y, z = i + di - pad, j + dj - pad
                            if 0 <= y < ph and 0 <= z < pw:
                                response[i, j] += weight[o, :, di, dj] @ pooled[:, y, z]
            total += np.maximum(response, 0)
    small = np.maximum(total + crn.context.bias.item(), 0)

    def source(index, size_in, size_out):
        position = max((index + 0.5) * size_in / size_out - 0.5, 0.0)
        low = min(math.floor(position), size_in - 1)
        return low, min(low + 1, size_in - 1), position - low

    mask = np.zeros((h, w))
    for i in range(h):
        y0, y1, fy = source(i, ph, h)
        for j in range(w):
            x0, x1, fx = source(j, pw, w)
            mask[i, j] = ((1 - fy) * ((1 - fx) * small[y0, x0] + fx * small[y0, x1])
                          + fy * ((1 - fx) * small[y1, x0] + fx * small[y1, x1]))
    return mask


def _naive_weighted_vlad(x, weights, centroids, assign):
    """V[k] = sum_i m_i a_ik (x_i / |x_i| - c_k) (CRN eq. 3), intra-normalised, flattened
    cluster-major, L2; x (C, h, w), weights m (h, w)."""
    C = x.shape[0]
    K = centroids.shape[0]
    locals_ = [x[:, i, j] / np.linalg.norm(x[:, i, j]) for i in range(x.shape[1]) for j in range(x.shape[2])]
    masses = weights.reshape(-1)
    vlad = np.zeros((K, C))
    for v, m in zip(locals_, masses):
        logits = assign @ v
        a = np.exp(logits - logits.max())
        a /= a.sum()
        for k in range(K):
            vlad[k] += m * a[k] * (v - centroids[k])
    vlad = np.stack([_unit(row) for row in vlad])
    return _unit(vlad.reshape(-1))


def _crn(C=3, K=3, seed=0):
    torch.manual_seed(seed)
    head = CRN(clusters=K, dim=C).double()
    with torch.no_grad():
        head.context.bias.fill_(0.05)
    return head


@pytest.mark.parametrize("shape", [(5, 7), (6, 8), (2, 3)])
def test_crn_mask__matches_naive_pooling_context_filters_and_bilinear_upsampling(shape):
    head = _crn()
    x = torch.randn(2, 3, *shape, dtype=torch.float64)
    mask = head.context(x)
    assert mask.shape == (2, 1, *shape) and (mask >= 0).all()
    for b in range(2):
        np.testing.assert_allclose(_np(mask[b, 0]), _naive_context_mask(_np(x[b]), head), rtol=1e-10, atol=1e-12)


def test_crn__matches_hand_written_mask_weighted_vlad():
    head = _crn()
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    out = head(x)
    centroids, assign = _np(head.centroids), _np(head.assign.weight)[:, :, 0, 0]
    for b in range(2):
        mask = _naive_context_mask(_np(x[b]), head)
        assert mask.std() > 0.01  # a mask that reweights, not a constant
        np.testing.assert_allclose(_np(out[b]), _naive_weighted_vlad(_np(x[b]), mask, centroids, assign),
                                   rtol=1e-9, atol=1e-12)
        unweighted = _naive_weighted_vlad(_np(x[b]), np.ones_like(mask), centroids, assign)
        assert np.abs(_np(out[b]) - unweighted).max() > 1e-3  # the mask changes the descriptor


def test_crn__constant_mask_gives_netvlad():
    head = _crn()
    with torch.no_grad():
        for conv in head.context.filters:
            conv.weight.zero_()
            conv.bias.zero_()
        head.context.bias.fill_(0.7)  # m_i = 0.7 everywhere: intra-normalisation removes it
    plain = NetVLAD(clusters=3, dim=3).double()
    plain.load_state_dict({k: v for k, v in head.state_dict().items() if not k.startswith("context.")})
    x = torch.randn(2, 3, 4, 6, dtype=torch.float64)
    torch.testing.assert_close(head(x), plain(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(head.regions(x), plain.regions(x), rtol=1e-12, atol=1e-12)


def test_crn_regions__mask_of_the_whole_map_summed_over_each_crop():
    head = _crn()
    x = torch.randn(1, 3, 5, 6, dtype=torch.float64)
    regions = head.regions(x)
    mask = _naive_context_mask(_np(x[0]), head)
    centroids, assign = _np(head.centroids), _np(head.assign.weight)[:, :, 0, 0]
    for r, (crop, crop_mask) in enumerate(zip(_crops(_np(x[0])), _crops(mask))):
        np.testing.assert_allclose(_np(regions[0, r]), _naive_weighted_vlad(crop, crop_mask, centroids, assign),
                                   rtol=1e-9, atol=1e-12)


def test_crn__kmeans_initialisation_is_netvlad_s():
    head = build_head("crn", dim=8, clusters=4)
    assert isinstance(head, NetVLAD) and head.out_dim == 32
    descriptors = np.random.default_rng(0).standard_normal((200, 8)).astype(np.float32)
    descriptors /= np.linalg.norm(descriptors, axis=1, keepdims=True)
    alpha = head.init_from_descriptors(descriptors, niter=5)
    reference = NetVLAD(clusters=4, dim=8)
    assert alpha == pytest.approx(reference.init_from_descriptors(descriptors, niter=5))
    torch.testing.assert_close(head.centroids, reference.centroids)
    torch.testing.assert_close(head.assign.weight, reference.assign.weight)
    assert [(conv.kernel_size[0], conv.out_channels) for conv in head.context.filters] == list(CONTEXT_FILTERS)


# -- MixVPR ------------------------------------------------------------------------------

def _naive_adaptive_mean(x, grid):
    """Adaptive average pooling: cell (i, j) averages rows floor(i h / gh) .. ceil((i+1) h / gh) - 1."""
    C, h, w = x.shape
    gh, gw = grid
    out = np.zeros((C, gh, gw))
    for i in range(gh):
        for j in range(gw):
            rows = range(math.floor(i * h / gh), math.ceil((i + 1) * h / gh))
            cols = range(math.floor(j * w / gw), math.ceil((j + 1) * w / gw))
            out[:, i, j] = np.mean([x[:, r, c] for r in rows for c in cols], axis=0)
    return out


def _naive_mixvpr(x, head):
    """Ali-bey et al. 2023, eqs. 1-4, for one map x (C, h, w)."""
    flat = _naive_adaptive_mean(x, head.grid).reshape(x.shape[0], -1)  # (C, n)
    for mixer in head.mixers:
        gamma, beta = _np(mixer.norm.weight), _np(mixer.norm.bias)
        w1, b1 = _np(mixer.expand.weight), _np(mixer.expand.bias)
        w2, b2 = _np(mixer.reduce.weight), _np(mixer.reduce.bias)
        mixed = np.empty_like(flat)
        for c, row in enumerate(flat):
            normed = (row - row.mean()) / np.sqrt(row.var() + mixer.norm.eps) * gamma + beta
            mixed[c] = row + w2 @ np.maximum(w1 @ normed + b1, 0) + b2
        flat = mixed
    channels = _np(head.channel_proj.weight) @ flat + _np(head.channel_proj.bias)[:, None]  # (d, n)
    rows = channels @ _np(head.row_proj.weight).T + _np(head.row_proj.bias)[None, :]  # (d, r)
    return _unit(rows.reshape(-1))


def _mixvpr(**options):
    torch.manual_seed(0)
    head = MixVPR(dim=3, **options).double()
    with torch.no_grad():  # LayerNorm away from its identity initialisation
        for mixer in head.mixers:
            mixer.norm.weight.uniform_(0.5, 1.5)
            mixer.norm.bias.uniform_(-0.2, 0.2)
    return head


@pytest.mark.parametrize("shape", [(5, 7), (3, 3), (8, 6)])
def test_mixvpr__matches_naive_mixers_and_projections(shape):
    head = _mixvpr(grid=[3, 4], depth=2, mlp_ratio=1.5, out_channels=5, out_rows=2)
    x = torch.randn(2, 3, *shape, dtype=torch.float64)
    out = head(x)
    assert out.shape == (2, 10) and head.out_dim == 10
    for b in range(2):
        np.testing.assert_allclose(_np(out[b]), _naive_mixvpr(_np(x[b]), head), rtol=1e-9, atol=1e-12)


def test_mixvpr_regions__the_head_on_each_crop_pooled_to_the_grid():
    head = _mixvpr(grid=[2, 2], depth=1, out_channels=4, out_rows=3)
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    regions = head.regions(x)
    for b in range(2):
        for r, crop in enumerate(_crops(_np(x[b]))):
            np.testing.assert_allclose(_np(regions[b, r]), _naive_mixvpr(crop, head), rtol=1e-9, atol=1e-12)


def test_mixvpr__options_are_checked():
    assert build_head("mixvpr", dim=8, grid=[5, 6]).mixers[0].norm.normalized_shape == (30,)
    assert build_head("mixvpr", dim=8).out_dim == 512 * 4  # the paper's 2048-d descriptor
    with pytest.raises(ConfigError, match="option 'grid' must be a list"):
        build_head("mixvpr", dim=8, grid=7)
    with pytest.raises(ConfigError, match=r"'grid' must be two integers >= 1 \[height, width\], got \[4, 0\]"):
        build_head("mixvpr", dim=8, grid=[4, 0])
    with pytest.raises(ConfigError, match="'depth' must be >= 0"):
        build_head("mixvpr", dim=8, depth=-1)


# -- SALAD -------------------------------------------------------------------------------

def _alternating_normalisation(kernel, a, b, iterations):
    """Sinkhorn in probability space: P = K, then rows rescaled to sum to a and columns to
    sum to b, alternately."""
    plan = kernel.copy()
    for _ in range(iterations):
        plan = plan * (a / plan.sum(axis=1))[:, None]
        plan = plan * (b / plan.sum(axis=0))[None, :]
    return plan


@pytest.mark.parametrize("iterations", [1, 3, 50])
def test_log_sinkhorn__matches_alternating_normalisation_in_probability_space(iterations):
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(2, 5, 9)) * 3
    a = np.array([1.0, 1.0, 1.0, 1.0, 5.0])
    b = np.ones(9)
    log_plan = log_sinkhorn(torch.from_numpy(scores), torch.from_numpy(np.log(a)), torch.from_numpy(np.log(b)),
                            iterations)
    for batch in range(2):
        expected = _alternating_normalisation(np.exp(scores[batch]), a, b, iterations)
        np.testing.assert_allclose(np.exp(_np(log_plan[batch])), expected, rtol=1e-10, atol=1e-14)
    if iterations == 50:  # converged: both marginals hold
        plan = np.exp(_np(log_plan))
        np.testing.assert_allclose(plan.sum(axis=2), np.broadcast_to(a, (2, 5)), rtol=1e-6)
        np.testing.assert_allclose(plan.sum(axis=1), np.broadcast_to(b, (2, 9)), rtol=1e-10)


def test_transport_marginals__salad_s_masses_and_positive_ones_for_small_maps():
    assert transport_marginals(4, 30) == (1.0, 26.0)  # SALAD: 1 per cluster, n - m to the dustbin
    assert transport_marginals(4, 5) == (1.0, 1.0)
    per_cluster, dustbin = transport_marginals(8, 6)  # fewer locations than clusters
    assert per_cluster == pytest.approx(6 / 9) and dustbin == pytest.approx(6 / 9)
    for m, n in [(4, 30), (8, 6), (64, 1), (3, 4)]:
        per_cluster, dustbin = transport_marginals(m, n)
        assert per_cluster > 0 and dustbin > 0 and m * per_cluster + dustbin == pytest.approx(n)


def _naive_mlp(layers, v):
    """Linear/1x1-conv layers with ReLU between them, applied to one vector."""
    first, last = [m for m in layers if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    hidden = np.maximum(_np(first.weight).reshape(first.weight.shape[0], -1) @ v + _np(first.bias), 0)
    return _np(last.weight).reshape(last.weight.shape[0], -1) @ hidden + _np(last.bias)


def _naive_salad(x, head, token=None):
    """Izquierdo and Civera 2024, section 3, for one map x (C, h, w): scores + dustbin,
    Sinkhorn (probability space) with masses 1 per cluster, n - m for the dustbin and 1
    per feature, dustbin dropped, V[j] = sum_i P_ji g_i intra-normalised, [token, V], L2."""
    C = x.shape[0]
    features = [x[:, i, j] for i in range(x.shape[1]) for j in range(x.shape[2])]
    n, m = len(features), head.clusters
    assert n > m  # the paper's regime
    scores = np.array([_naive_mlp(head.score, f) for f in features]).T  # (m, n)
    scores = np.vstack([scores, np.full((1, n), head.dustbin.item())])
    plan = _alternating_normalisation(np.exp(scores), np.array([1.0] * m + [n - m]), np.ones(n),
                                      head.sinkhorn_iterations)[:m]
    reduced = [_naive_mlp(head.cluster_features, f) for f in features]
    clusters = []
    for j in range(m):
        clusters.append(_unit(sum(plan[j, i] * reduced[i] for i in range(n))))
    global_in = np.mean(features, axis=0) if token is None else token
    assert global_in.shape == (C,)
    global_token = _unit(_naive_mlp(head.token_features, global_in))
    return _unit(np.concatenate([global_token] + clusters))


def _salad(**options):
    torch.manual_seed(0)
    settings = dict(clusters=3, cluster_dim=4, token_dim=5, hidden_dim=6, dustbin_init=0.5)
    settings.update(options)
    return SALAD(dim=3, **settings).double()


@pytest.mark.parametrize("iterations", [1, 3])
@pytest.mark.parametrize("with_token", [False, True])
def test_salad__matches_naive_transport_aggregation(iterations, with_token):
    head = _salad(sinkhorn_iterations=iterations)
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    token = torch.randn(2, 3, dtype=torch.float64) if with_token else None
    out = head(x, class_token=token)
    assert out.shape == (2, 5 + 3 * 4) and head.out_dim == 17
    for b in range(2):
        expected = _naive_salad(_np(x[b]), head, None if token is None else _np(token[b]))
        np.testing.assert_allclose(_np(out[b]), expected, rtol=1e-9, atol=1e-12)


def test_salad_regions__the_head_on_each_crop_class_token_for_region_zero_only():
    head = _salad(clusters=2)
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64)  # smallest crop 3x3 = 9 > 2 locations
    token = torch.randn(2, 3, dtype=torch.float64)
    regions = head.regions(x, class_token=token)
    torch.testing.assert_close(regions[:, 0], head(x, class_token=token))
    for b in range(2):
        for r, crop in enumerate(_crops(_np(x[b]))):
            expected = _naive_salad(crop, head, _np(token[b]) if r == 0 else None)
            np.testing.assert_allclose(_np(regions[b, r]), expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(head.regions(x)[:, 1:], regions[:, 1:])


def test_salad__fewer_locations_than_clusters_stays_finite_and_differentiable():
    head = _salad(clusters=8)
    x = torch.randn(2, 3, 2, 3, dtype=torch.float64, requires_grad=True)  # quarters of 1 location
    regions = head.regions(x)
    assert torch.isfinite(regions).all()
    torch.testing.assert_close(regions.norm(dim=2), torch.ones(2, 9, dtype=torch.float64))
    regions.sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(head.dustbin.grad)


def test_salad__options_and_class_token_shape_are_checked():
    head = build_head("salad", dim=8, clusters=2, cluster_dim=3, token_dim=4, sinkhorn_iterations=5, dustbin_init=2)
    assert head.class_token == "optional" and head.sinkhorn_iterations == 5 and float(head.dustbin.detach()) == 2.0
    assert build_head("salad", dim=8).out_dim == 256 + 64 * 128  # the paper's 8448-d descriptor
    with pytest.raises(ValueError, match=r"class token of shape \(2, 8\), got \(2, 5\)"):
        head(torch.randn(2, 8, 4, 4), class_token=torch.randn(2, 5))
    with pytest.raises(ConfigError, match="'sinkhorn_iterations' must be >= 1"):
        build_head("salad", dim=8, sinkhorn_iterations=0)
    with pytest.raises(ConfigError, match="option 'dustbin_init' must be a number"):
        build_head("salad", dim=8, dustbin_init="high")


# -- class token -------------------------------------------------------------------------

@pytest.mark.parametrize("fc_dim", [None, 4])
def test_cls__projected_class_token_and_mean_patch_tokens_per_crop(fc_dim):
    torch.manual_seed(0)
    head = ClassTokenHead(dim=3, fc_dim=fc_dim).double()
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    token = torch.randn(2, 3, dtype=torch.float64)
    out, regions = head(x, class_token=token), head.regions(x, class_token=token)
    assert out.shape == (2, fc_dim or 3) and regions.shape == (2, 9, fc_dim or 3)

    def project(v):
        return _unit(v if fc_dim is None else _np(head.fc.weight) @ v + _np(head.fc.bias))

    for b in range(2):
        np.testing.assert_allclose(_np(out[b]), project(_np(token[b])), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(_np(regions[b, 0]), _np(out[b]), rtol=0, atol=0)
        for r, crop in enumerate(_crops(_np(x[b]))[1:], start=1):
            cells = [crop[:, i, j] for i in range(crop.shape[1]) for j in range(crop.shape[2])]
            np.testing.assert_allclose(_np(regions[b, r]), project(np.mean(cells, axis=0)), rtol=1e-12, atol=1e-14)


def test_cls__without_a_class_token_is_a_config_error():
    head = build_head("cls", dim=4)
    assert head.class_token == "required" and head.out_dim == 4
    with pytest.raises(ConfigError, match="head 'cls' needs the backbone's class token"):
        head(torch.randn(1, 4, 3, 3))
    with pytest.raises(ConfigError, match="needs the backbone's class token"):
        head.regions(torch.randn(1, 4, 3, 3))


# -- model files and training ----------------------------------------------------------

@pytest.mark.parametrize("head_name, options", [
    ("crn", "{clusters: 4}"),
    ("mixvpr", "{grid: [3, 4], depth: 1, out_channels: 8, out_rows: 2}"),
    ("salad", "{clusters: 4, cluster_dim: 4, token_dim: 8, hidden_dim: 16, dustbin_init: 0.3}"),
])
def test_model_file__round_trips_with_the_head(head_name, options, tmp_path):
    config = build_config(Config, overrides=["model.input_size=[48,64]", f"model.head={head_name}",
                                             f"model.head_options={options}"])
    torch.manual_seed(0)
    model = build_network(config.model).eval()
    model.save(tmp_path / "model.pt")
    loaded = load_network(tmp_path / "model.pt").eval()
    images = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images), rtol=0, atol=0)
        torch.testing.assert_close(loaded.region_descriptors(images), model.region_descriptors(images), rtol=0, atol=0)
    assert loaded.config.head_options == model.config.head_options



@pytest.mark.slow
@pytest.mark.parametrize("head_name, options", [
    ("crn", "{clusters: 8}"),
    ("mixvpr", "{grid: [6, 8], depth: 2, out_channels: 16, out_rows: 2}"),
    ("salad", "{clusters: 8, cluster_dim: 8, token_dim: 16, hidden_dim: 32}"),
])
def test_sfrs_train__a_soft_label_generation_trains_with_the_head(head_name, options, tiny_city_root, tmp_path):
    train_soft_label_generation(tmp_path / "run", head_name, options)


#: a tiny vision transformer (ViT-Ti cut after 2 blocks), whose class token GeoNet hands to the head
VIT_SETS = ("model.backbone=timm:vit_tiny_patch16_224", "model.backbone_options={blocks: 2}")


@pytest.mark.slow
@pytest.mark.parametrize("head_name, options", [
    ("cls", "{fc_dim: 32}"),
    ("salad", "{clusters: 4, cluster_dim: 8, token_dim: 16, hidden_dim: 32}"),
])
def test_sfrs_train__a_soft_label_generation_trains_with_the_class_token(head_name, options, tiny_city_root,
                                                                           tmp_path):
    train_soft_label_generation(tmp_path / "run", head_name, options, VIT_SETS)
