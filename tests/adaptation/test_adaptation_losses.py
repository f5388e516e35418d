"""M-step terms against float64 formulas written here: InfoNCE with label smoothing and
the reconstruction L1 through Linear + BatchNorm (training mode)."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from sfrs.adaptation import pseudo_labels, reconstruction_l1, symmetric_info_nce
from sfrs.models import Adapter


def smoothed_cross_entropy(logits, label, eps):
    """-(1 - eps) log p_label - eps / C sum_c log p_c, in float64."""
    logits = np.asarray(logits, dtype=np.float64)
    log_p = logits - (logits.max() + np.log(np.exp(logits - logits.max()).sum()))
    return -(1 - eps) * log_p[label] - eps / len(logits) * log_p.sum()


def reference_info_nce(s, rows_a, labels_a, rows_b, labels_b, scale, eps):
    directions = []
    if len(rows_a):
        directions.append(np.mean([smoothed_cross_entropy(scale * s[i], y, eps) for i, y in zip(rows_a, labels_a)]))
    if len(rows_b):
        directions.append(np.mean([smoothed_cross_entropy(scale * s[:, j], y, eps) for j, y in zip(rows_b, labels_b)]))
    return np.mean(directions) if directions else 0.0


def correlated_similarity(seed, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    latent = torch.randn(30, 12, generator=generator, dtype=dtype)
    a = torch.nn.functional.normalize(latent[:24] + 0.5 * torch.randn(24, 12, generator=generator, dtype=dtype), dim=1)
    b = torch.nn.functional.normalize(latent + 0.5 * torch.randn(30, 12, generator=generator, dtype=dtype), dim=1)
    return a @ b.t()


@pytest.mark.parametrize("seed, min_mutual, eps", [(0, 10, 0.1), (1, 1000, 0.1), (2, 0, 0.0), (3, 5, 0.3)])
def test_symmetric_info_nce__matches_float64_formula(seed, min_mutual, eps):
    similarity = correlated_similarity(seed)
    labels = pseudo_labels(similarity, 0.1, min_mutual)
    assert labels.count > 0
    scale = torch.tensor(1 / 0.07, dtype=torch.float64)
    got = symmetric_info_nce(similarity, labels, scale, eps)
    expected = reference_info_nce(
        similarity.numpy(), labels.rows_a.tolist(), labels.labels_a.tolist(),
        labels.rows_b.tolist(), labels.labels_b.tolist(), float(scale), eps,
    )
    assert float(got) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    # float32 as used in training: same value to float32 precision
    got32 = symmetric_info_nce(similarity.float(), labels, scale.float(), eps)
    assert float(got32) == pytest.approx(expected, rel=2e-5)


def test_symmetric_info_nce__one_direction_without_labels_is_left_out():
    similarity = correlated_similarity(4)
    labels = pseudo_labels(similarity, 0.1, 0)
    only_a = replace(labels, rows_b=labels.rows_b[:0], labels_b=labels.labels_b[:0])
    scale = torch.tensor(10.0, dtype=torch.float64)
    expected = reference_info_nce(similarity.numpy(), labels.rows_a.tolist(), labels.labels_a.tolist(), [], [], 10.0, 0.1)
    assert float(symmetric_info_nce(similarity, only_a, scale, 0.1)) == pytest.approx(expected, rel=1e-12)


def test_symmetric_info_nce__without_labels_is_zero_and_keeps_the_graph():
    similarity = correlated_similarity(5).requires_grad_(True)
    scale = torch.tensor(14.0, dtype=torch.float64, requires_grad=True)
    labels = pseudo_labels(similarity.detach(), threshold=0.999, min_mutual=0)
    assert labels.count == 0
    loss = symmetric_info_nce(similarity, labels, scale, 0.1)
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(similarity.grad) == 0 and float(scale.grad) == 0.0


def test_symmetric_info_nce__learnable_scale_receives_a_gradient():
    similarity = correlated_similarity(6)
    labels = pseudo_labels(similarity, 0.1, 0)
    adapter = Adapter(4, 4)
    loss = symmetric_info_nce(similarity.float(), labels, adapter.scale, 0.1)
    loss.backward()
    assert adapter.logit_scale.grad is not None and float(adapter.logit_scale.grad) != 0.0


def batch_norm_train(x, gamma, beta, eps=1e-5):
    """BatchNorm1d in training mode: biased batch variance."""
    mean = x.mean(axis=0)
    var = ((x - mean) ** 2).mean(axis=0)
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


def test_reconstruction_l1__matches_float64_formula_through_the_adapter():
    torch.manual_seed(0)
    adapter = Adapter(in_dim=10, hidden_dim=7).double().train()
    with torch.no_grad():  # non-trivial BatchNorm affine parameters
        for bn in (adapter.encoder[1], adapter.decoder[1]):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    x = torch.nn.functional.normalize(torch.randn(16, 10, dtype=torch.float64), dim=1)
    got = reconstruction_l1(adapter.reconstruct(x), x)

    p = {k: v.detach().numpy() for k, v in adapter.state_dict().items()}
    xn = x.numpy()
    hidden = batch_norm_train(xn @ p["encoder.0.weight"].T + p["encoder.0.bias"], p["encoder.1.weight"], p["encoder.1.bias"])
    decoded = batch_norm_train(hidden @ p["decoder.0.weight"].T + p["decoder.0.bias"], p["decoder.1.weight"], p["decoder.1.bias"])
    decoded /= np.linalg.norm(decoded, axis=1, keepdims=True)
    expected = np.abs(decoded - xn).sum() / xn.size
    assert got.item() == pytest.approx(expected, rel=1e-12)

    # the retrieval descriptor is L2norm(encoder(x)), in eval mode with the running statistics
    adapter.eval()
    p = {k: v.detach().numpy() for k, v in adapter.state_dict().items()}
    linear = xn @ p["encoder.0.weight"].T + p["encoder.0.bias"]
    encoded = p["encoder.1.weight"] * (linear - p["encoder.1.running_mean"]) / np.sqrt(p["encoder.1.running_var"] + 1e-5) + p["encoder.1.bias"]
    encoded /= np.linalg.norm(encoded, axis=1, keepdims=True)
    np.testing.assert_allclose(adapter(x).detach().numpy(), encoded, rtol=1e-12, atol=1e-12)


def test_reconstruction_l1__rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="differ"):
        reconstruction_l1(torch.zeros(3, 4), torch.zeros(3, 5))
