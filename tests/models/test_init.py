"""Sampling local descriptors and the k-means initialisation of NetVLAD from a backbone."""
import numpy as np
import pytest
import torch
from torch import nn

from sfrs.models.backbones import build_backbone
from sfrs.models.heads import NetVLAD
from sfrs.models.init import init_netvlad, sample_local_descriptors


class _Recorder(nn.Module):
    """Identity-like backbone (3 -> 3 channels) that records its mode and grad state."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.calls = []

    def forward(self, x):
        self.calls.append((self.training, torch.is_grad_enabled()))
        return x * self.scale


def _batches(n_batches, batch_size, h=4, w=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch_size, 3, h, w, generator=generator) for _ in range(n_batches)]


def test_sample_local_descriptors__normalised_seeded_and_from_the_map():
    backbone = _Recorder().train()
    batches = _batches(3, 4)
    first = sample_local_descriptors(backbone, batches, num_per_image=6, max_images=10, seed=5)
    second = sample_local_descriptors(backbone, batches, num_per_image=6, max_images=10, seed=5)
    other = sample_local_descriptors(backbone, batches, num_per_image=6, max_images=10, seed=6)

    assert first.dtype == np.float32 and first.shape == (10 * 6, 3)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)
    # Each image's 6 rows are distinct locations of that image's normalised map.
    images = torch.cat(batches)[:10]
    for i in range(10):
        local = torch.nn.functional.normalize(images[i], dim=0).flatten(1).T.numpy()  # (20, 3)
        rows = first[6 * i: 6 * i + 6]
        matches = [int(np.argmin(np.abs(local - row).sum(axis=1))) for row in rows]
        np.testing.assert_allclose(local[matches], rows, rtol=1e-6)
        assert len(set(matches)) == 6
    # eval mode + no_grad during sampling, previous mode restored afterwards.
    assert backbone.calls and all(call == (False, False) for call in backbone.calls)
    assert backbone.training


def test_sample_local_descriptors__small_maps_use_every_location_and_tuples_accepted():
    backbone = _Recorder().eval()
    batches = [(b, torch.arange(len(b))) for b in _batches(2, 2, h=2, w=3)]
    descriptors = sample_local_descriptors(backbone, batches, num_per_image=100)
    assert descriptors.shape == (4 * 6, 3)
    assert not backbone.training
    with pytest.raises(ValueError, match="no images"):
        sample_local_descriptors(backbone, [])


def test_sample_local_descriptors__restores_per_module_modes():
    backbone = build_backbone("resnet18_conv4").train()  # frozen BN stays in eval
    before = {name: m.training for name, m in backbone.named_modules()}
    assert not all(before.values())
    descriptors = sample_local_descriptors(backbone, _batches(1, 2, 32, 32), num_per_image=3)
    assert descriptors.shape == (6, 256)
    assert {name: m.training for name, m in backbone.named_modules()} == before


def test_init_netvlad__kmeans_on_backbone_descriptors():
    torch.manual_seed(0)
    backbone = build_backbone("small")
    head = NetVLAD(clusters=4, dim=backbone.out_channels)
    batches = _batches(2, 4, h=32, w=32)
    alpha = init_netvlad(head, backbone, batches, num_per_image=10, max_images=8, seed=0, niter=5)
    descriptors = sample_local_descriptors(backbone, batches, num_per_image=10, max_images=8, seed=0)
    reference = NetVLAD(clusters=4, dim=backbone.out_channels)
    assert alpha == reference.init_from_descriptors(descriptors, seed=0, niter=5)
    assert alpha > 0
    torch.testing.assert_close(head.centroids, reference.centroids)
    torch.testing.assert_close(head.assign.weight, reference.assign.weight)
    out = head(backbone(batches[0]))
    assert torch.isfinite(out).all()
