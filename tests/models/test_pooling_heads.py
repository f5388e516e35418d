"""MAC, SPoC and R-MAC against the papers' equations written as naive float64 loops, the
R-MAC region grid against hand-listed regions, the head contract on two backbones, and
one SFRS generation trained with each head."""
import json
import math

import pytest
import torch
from click.testing import CliRunner

from sfrs.cli.train import main as train_main
from sfrs.errors import ConfigError
from sfrs.models import MAC, RMAC, SPoC, build_head, list_heads
from sfrs.models.backbones import build_backbone
from sfrs.models.heads import rmac_grid
from tests.tiny import TINY_TRAINING

HEAD_OPTIONS = {
    "netvlad": {"clusters": 4}, "gem": {"fc_dim": 16}, "rmac": {"levels": 3}, "crn": {"clusters": 4},
    "mixvpr": {"grid": [4, 4], "depth": 2, "out_channels": 8, "out_rows": 2},
    "salad": {"clusters": 4, "cluster_dim": 8, "token_dim": 8, "hidden_dim": 16},
    "cls": {"fc_dim": 16},
}


def _unit(v):
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


def _naive_mac(x, top=0, left=0, height=None, width=None):
    """x: (C, h, w) float64; y_c = max over the window (Tolias et al. 2016, eq. 1), unnormalised."""
    C, h, w = x.shape
    height, width = height or h, width or w
    return [max(float(x[c, i, j]) for i in range(top, top + height) for j in range(left, left + width))
            for c in range(C)]


def _naive_grid(H, W, L):
    """rmac_regions.m of Tolias et al., transcribed literally (1-based MATLAB centres -> 0-based)."""
    ovr, steps = 0.4, [2, 3, 4, 5, 6, 7]
    w = min(W, H)
    best, idx = None, 0
    for i, n in enumerate(steps):
        b = (max(H, W) - w) / (n - 1)
        gap = abs((w * w - w * b) / (w * w) - ovr)
        if best is None or gap < best:
            best, idx = gap, i + 1
    Wd = idx if H < W else 0
    Hd = idx if H > W else 0
    regions = []
    for l in range(1, L + 1):
        wl = math.floor(2 * w / (l + 1))
        wl2 = math.floor(wl / 2 - 1)
        b = (W - wl) / (l + Wd - 1) if l + Wd - 1 else 0
        cen_w = [math.floor(wl2 + k * b) - wl2 for k in range(l + Wd)]
        b = (H - wl) / (l + Hd - 1) if l + Hd - 1 else 0
        cen_h = [math.floor(wl2 + k * b) - wl2 for k in range(l + Hd)]
        for i_ in cen_h:
            for j_ in cen_w:
                if wl > 0:
                    regions.append((i_, j_, wl))
    return regions


def _naive_rmac(x, L):
    C, h, w = x.shape
    total = [0.0] * C
    for top, left, side in _naive_grid(h, w, L):
        regional = _unit(_naive_mac(x, top, left, side, side))
        total = [a + b for a, b in zip(total, regional)]
    return _unit(total)


def test_rmac_grid__square_6x6_matches_hand_listed_regions():
    # s = 6; l=1: side 6, one region; l=2: side 4, starts floor(1 + k*2) - 1 = 0, 2;
    # l=3: side 3, c = floor(0.5) = 0, starts floor(k * 1.5) = 0, 1, 3.
    expected = [(0, 0, 6)]
    expected += [(t, l, 4) for t in (0, 2) for l in (0, 2)]
    expected += [(t, l, 3) for t in (0, 1, 3) for l in (0, 1, 3)]
    assert list(rmac_grid(6, 6, 3)) == expected


def test_rmac_grid__non_square_7x10_matches_hand_listed_regions():
    # s = 7, long side 10: n=2 gives b=3, overlap 4/7 (gap 0.171); n=3 gives b=1.5,
    # overlap 0.786 (gap 0.386) -> 1 extra region along the width.
    # l=1: side 7, starts along width floor(2 + k*3) - 2 = 0, 3; along height 0.
    # l=2: side 4 (floor(14/3)), c=1; height: 2 regions, step 3 -> 0, 3; width: 3 regions,
    #      step 3 -> 0, 3, 6.
    # l=3: side 3, c=0; height: 3 regions, step 2 -> 0, 2, 4; width: 4 regions, step 7/3 ->
    #      0, 2, 4, 7.
    expected = [(0, 0, 7), (0, 3, 7)]
    expected += [(t, l, 4) for t in (0, 3) for l in (0, 3, 6)]
    expected += [(t, l, 3) for t in (0, 2, 4) for l in (0, 2, 4, 7)]
    assert list(rmac_grid(7, 10, 3)) == expected
    assert sorted(rmac_grid(10, 7, 3)) == sorted((l, t, s) for t, l, s in expected)


@pytest.mark.parametrize("shape", [(7, 10), (6, 6), (10, 7), (3, 17), (12, 16), (30, 40), (1, 1)])
@pytest.mark.parametrize("levels", [1, 3, 5])
def test_rmac_grid__matches_the_authors_rule_and_stays_inside(shape, levels):
    grid = rmac_grid(*shape, levels)
    assert list(grid) == _naive_grid(*shape, levels)
    assert all(0 <= t and t + s <= shape[0] and 0 <= l and l + s <= shape[1] for t, l, s in grid)


def test_mac__matches_naive_max_over_locations():
    x = torch.randn(3, 5, 7, 10, dtype=torch.float64)
    out = MAC(dim=5).double()(x)
    expected = torch.tensor([_unit(_naive_mac(x[b])) for b in range(3)], dtype=torch.float64)
    torch.testing.assert_close(out, expected)


def test_spoc__matches_naive_sum_over_locations():
    x = torch.randn(3, 5, 7, 10, dtype=torch.float64)
    out = SPoC(dim=5).double()(x)
    naive = [_unit([sum(float(x[b, c, i, j]) for i in range(7) for j in range(10)) for c in range(5)])
             for b in range(3)]
    torch.testing.assert_close(out, torch.tensor(naive, dtype=torch.float64))


@pytest.mark.parametrize("shape", [(7, 10), (6, 6)])
@pytest.mark.parametrize("levels", [1, 3])
def test_rmac__matches_naive_loop_over_regions(shape, levels):
    x = torch.randn(2, 4, *shape, dtype=torch.float64)
    out = RMAC(dim=4, levels=levels)(x)
    expected = torch.tensor([_naive_rmac(x[b], levels) for b in range(2)], dtype=torch.float64)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("name", ["mac", "spoc", "rmac"])
def test_regions__each_is_the_head_on_its_crop_of_the_feature_map(name):
    head = build_head(name, dim=4, **HEAD_OPTIONS.get(name, {}))
    x = torch.randn(2, 4, 7, 10, dtype=torch.float64)
    crops = [x, x[..., :3, :], x[..., 3:, :], x[..., :, :5], x[..., :, 5:],
             x[..., :3, :5], x[..., :3, 5:], x[..., 3:, :5], x[..., 3:, 5:]]
    expected = torch.stack([head(c) for c in crops], dim=1)
    torch.testing.assert_close(head.regions(x), expected)


def test_build_head__options_are_type_checked():
    assert build_head("rmac", dim=8).levels == 3
    assert build_head("rmac", dim=8, levels=2).levels == 2
    assert build_head("gem", dim=8, p=3).p.item() == 3.0  # an integer is a number
    with pytest.raises(ConfigError, match="option 'levels' must be an integer, got '3'"):
        build_head("rmac", dim=8, levels="3")
    with pytest.raises(ConfigError, match="option 'levels' must be an integer, got True"):
        build_head("rmac", dim=8, levels=True)
    with pytest.raises(ConfigError, match=r"head 'mac' has no option 'clusters' \(its options: none\)"):
        build_head("mac", dim=8, clusters=8)
    with pytest.raises(ConfigError, match="levels >= 1"):
        build_head("rmac", dim=8, levels=0)
    with pytest.raises(ConfigError, match="choose one of netvlad, gem, mac, spoc, rmac"):
        build_head("max", dim=8)


@pytest.mark.parametrize("head_name", list_heads())
@pytest.mark.parametrize("backbone_name", ["small", "resnet18_conv4"])
def test_head_contract__shapes_unit_norms_region_zero_and_gradients(backbone_name, head_name):
    torch.manual_seed(0)
    backbone = build_backbone(backbone_name, pretrained="none").train()
    head = build_head(head_name, dim=backbone.out_channels, **HEAD_OPTIONS.get(head_name, {})).train()
    B = 2
    features = backbone(torch.randn(B, 3, 48, 64))
    # a CNN has no class token: heads that take one get a stand-in computed from the map
    token = {"class_token": features.amax(dim=(2, 3))} if hasattr(head, "class_token") else {}
    out, regions = head(features, **token), head.regions(features, **token)
    assert out.shape == (B, head.out_dim) and regions.shape == (B, 9, head.out_dim)
    assert torch.isfinite(out).all() and torch.isfinite(regions).all()
    torch.testing.assert_close(out.norm(dim=1), torch.ones(B))
    torch.testing.assert_close(regions.norm(dim=2), torch.ones(B, 9))
    torch.testing.assert_close(regions[:, 0], out, rtol=1e-4, atol=1e-5)
    generator = torch.Generator().manual_seed(1)
    loss = (out * torch.randn(out.shape, generator=generator)).sum()
    (loss + (regions * torch.randn(regions.shape, generator=generator)).sum()).backward()
    trainable = [(n, p) for m in (backbone, head) for n, p in m.named_parameters() if p.requires_grad]
    assert trainable
    for name, param in trainable:
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def train_soft_label_generation(output, head_name, head_options="{}", extra_sets=()):
    """``sfrs-train`` on synthetic:tiny with the head: generation 0 (hard loss) then
    generation 1, whose soft loss uses the teacher's 9 region descriptors, one epoch each;
    checks both epochs' losses are finite."""
    sets = TINY_TRAINING + [f"model.head={head_name}", f"model.head_options={head_options}", *extra_sets]
    args = [arg for item in sets for arg in ("--set", item)]
    result = CliRunner().invoke(
        train_main, ["--generations", "2", "--epochs", "1", "--output", str(output), "--no-progress"] + args,
        catch_exceptions=False)
    assert result.exit_code == 0, result.output
    results = json.loads((output / "results.json").read_text())
    first, second = results["epochs"]
    assert set(second["losses"]) >= {"hard", "soft", "total"}
    for epoch in (first, second):
        assert all(math.isfinite(v) for v in epoch["losses"].values()), epoch["losses"]


@pytest.mark.parametrize("head_name", ["mac", "spoc", "rmac"])
def test_sfrs_train__a_soft_label_generation_trains_with_the_head(head_name, tiny_city_root, tmp_path):
    train_soft_label_generation(tmp_path / "run", head_name)
