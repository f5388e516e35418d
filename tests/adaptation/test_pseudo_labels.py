"""E-step: mutual-nearest-neighbour pseudo-labels against a naive double loop."""
import numpy as np
import pytest
import torch

from sfrs.adaptation import pseudo_labels


def naive_pseudo_labels(similarity, threshold, min_mutual):
    """Plain loops over rows and columns, first maximum on ties."""
    s = similarity.tolist()
    num_a, num_b = len(s), len(s[0])
    best_b = []
    for i in range(num_a):
        j_best = 0
        for j in range(num_b):
            if s[i][j] > s[i][j_best]:
                j_best = j
        best_b.append(j_best)
    best_a = []
    for j in range(num_b):
        i_best = 0
        for i in range(num_a):
            if s[i][j] > s[i_best][j]:
                i_best = i
        best_a.append(i_best)
    mutual_a = [best_a[best_b[i]] == i for i in range(num_a)]
    mutual_b = [best_b[best_a[j]] == j for j in range(num_b)]
    mutual = sum(mutual_a)
    only = mutual > min_mutual
    a = [(i, best_b[i]) for i in range(num_a) if s[i][best_b[i]] > threshold and (mutual_a[i] or not only)]
    b = [(j, best_a[j]) for j in range(num_b) if s[best_a[j]][j] > threshold and (mutual_b[j] or not only)]
    return a, b, mutual, only


def as_pairs(rows, labels):
    return list(zip(rows.tolist(), labels.tolist()))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("threshold, min_mutual", [(0.1, 10), (-1.0, 0), (0.3, 3), (0.1, 1000)])
def test_pseudo_labels__matches_naive_loop(seed, threshold, min_mutual):
    generator = torch.Generator().manual_seed(seed)
    # correlated views so that a realistic number of mutual pairs exists
    latent = torch.randn(25, 16, generator=generator)
    a = torch.nn.functional.normalize(latent[torch.randint(0, 25, (40,), generator=generator)] + 0.8 * torch.randn(40, 16, generator=generator), dim=1)
    b = torch.nn.functional.normalize(latent + 0.8 * torch.randn(25, 16, generator=generator), dim=1)
    similarity = a @ b.t()
    labels = pseudo_labels(similarity, threshold, min_mutual)
    expected_a, expected_b, mutual, only = naive_pseudo_labels(similarity, threshold, min_mutual)
    assert as_pairs(labels.rows_a, labels.labels_a) == expected_a
    assert as_pairs(labels.rows_b, labels.labels_b) == expected_b
    assert (labels.mutual, labels.mutual_only) == (mutual, only)
    assert labels.count == len(expected_a) + len(expected_b)


def test_pseudo_labels__mutual_pairs_are_the_same_in_both_directions():
    similarity = torch.tensor([[0.9, 0.2, 0.1], [0.8, 0.3, 0.0], [0.1, 0.2, 0.7], [0.1, 0.6, 0.2]])
    labels = pseudo_labels(similarity, threshold=0.1, min_mutual=1)
    # A0<->B0, A2<->B2, A3<->B1 are mutual; A1's nearest (B0) prefers A0
    assert labels.mutual == 3 and labels.mutual_only
    assert as_pairs(labels.rows_a, labels.labels_a) == [(0, 0), (2, 2), (3, 1)]
    assert sorted((a, b) for b, a in as_pairs(labels.rows_b, labels.labels_b)) == [(0, 0), (2, 2), (3, 1)]


def test_pseudo_labels__few_mutual_pairs_fall_back_to_every_row_above_the_threshold():
    similarity = torch.tensor([[0.9, 0.2], [0.8, 0.05], [0.05, 0.02]])
    labels = pseudo_labels(similarity, threshold=0.1, min_mutual=10)
    assert not labels.mutual_only and labels.mutual == 1
    assert as_pairs(labels.rows_a, labels.labels_a) == [(0, 0), (1, 0)]  # A2's best (0.05) is below the threshold
    assert as_pairs(labels.rows_b, labels.labels_b) == [(0, 0), (1, 0)]


def test_precision__counts_pairs_of_both_directions_against_global_rows():
    similarity = torch.tensor([[0.9, 0.2], [0.1, 0.8]])
    labels = pseudo_labels(similarity, threshold=0.1, min_mutual=0)
    truth = {(10, 20), (11, 99)}  # global (A, B) pairs that match

    def is_positive(rows_a, rows_b):
        return np.array([(int(a), int(b)) in truth for a, b in zip(rows_a, rows_b)])

    # batch rows: A0 = global 10, A1 = 11; B0 = 20, B1 = 21 -> (10, 20) right twice, (11, 21) wrong twice
    assert labels.precision([10, 11], [20, 21], is_positive) == pytest.approx(0.5)
    empty = pseudo_labels(similarity, threshold=0.95, min_mutual=0)
    assert empty.count == 0 and empty.precision([10, 11], [20, 21], is_positive) is None


def test_pseudo_labels__rejects_an_empty_matrix():
    with pytest.raises(ValueError, match="non-empty"):
        pseudo_labels(torch.zeros(0, 3))
