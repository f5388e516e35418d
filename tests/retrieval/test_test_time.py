"""Test-time methods: the merge rules of the crop searches, the query views, re-ranking and
reduced-precision extraction, each against a naive implementation written here from the
definitions (Berton et al., CVPR 2022, ``test.py``; Zhong et al., CVPR 2017)."""
import numpy as np
import pytest
import torch
from PIL import Image

from sfrs.errors import ConfigError
from sfrs.retrieval.extract import extract_descriptors
from sfrs.retrieval.protocol import resolve_protocol
from sfrs.retrieval.view_search import majority_votes, merge_majority_voting, merge_nearest, rerank_top, search_views
from sfrs.retrieval.test_time import (
    CentralCrop,
    FiveSquareCrops,
    RerankSettings,
    TestTime,
    ViewEncoder,
    parse_image_size,
    parse_resize,
    with_test_time,
)
from tests.training.test_rerank import clustered, dense_final

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


# -- naive references -------------------------------------------------------------------------------


def naive_merge(scores, raw, ids, k):
    """Per query: every (crop, rank) entry in crop-major order; each id keeps its entry of
    smallest score (the first such entry on ties); ids sorted by that score (ties: entry order)."""
    out_ids, out_raw = [], []
    for q in range(ids.shape[0]):
        best = {}
        position = 0
        for c in range(ids.shape[1]):
            for r in range(ids.shape[2]):
                i = int(ids[q, c, r])
                if i >= 0 and (i not in best or scores[q, c, r] < best[i][0]):
                    best[i] = (float(scores[q, c, r]), position, float(raw[q, c, r]))
                position += 1
        ranked = sorted(best.items(), key=lambda item: (item[1][0], item[1][1]))[:k]
        out_ids.append([i for i, _ in ranked] + [-1] * (k - len(ranked)))
        out_raw.append([v[2] for _, v in ranked] + [np.nan] * (k - len(ranked)))
    return np.array(out_raw), np.array(out_ids)


def naive_votes(distances, ids, weight):
    """top_n_voting for n = 1, 5, 10 in words: an id found c > 1 times among the first n
    columns of all crops loses weight * c / n at each of those entries."""
    adjusted = np.array(distances, dtype=np.float64)
    for n in (1, 5, 10):
        counts = {}
        for c in range(ids.shape[0]):
            for r in range(min(n, ids.shape[1])):
                counts[int(ids[c, r])] = counts.get(int(ids[c, r]), 0) + 1
        for c in range(ids.shape[0]):
            for r in range(min(n, ids.shape[1])):
                count = counts[int(ids[c, r])]
                if count > 1 and ids[c, r] >= 0:
                    adjusted[c, r] -= weight * count / n
    return adjusted


def planted_lists(queries=4, crops=5, depth=12, pool=15, seed=0):
    """Per-crop lists with repeated ids across crops, sorted by distinct distances."""
    rng = np.random.default_rng(seed)
    ids = np.stack([np.stack([rng.choice(pool, size=depth, replace=False) for _ in range(crops)])
                    for _ in range(queries)])
    distances = np.sort(rng.uniform(0.2, 1.8, size=(queries, crops, depth)), axis=-1)
    return distances.astype(np.float32), ids.astype(np.int64)


# -- merge rules ------------------------------------------------------------------------------------


def test_merge_nearest__matches_naive_dictionary_of_nearest_entries():
    distances, ids = planted_lists()
    ids[0, 2, 5] = -1  # a missing entry (approximate index) is skipped
    got_d, got_i = merge_nearest(distances, ids, 10)
    want_d, want_i = naive_merge(distances, distances, ids, 10)
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_allclose(got_d, want_d, rtol=1e-6)
    assert all(len(set(row)) == len(row) for row in got_i.tolist())  # each database image once


def test_merge_nearest__pads_when_fewer_distinct_images_than_k():
    distances = np.array([[[0.1, 0.2], [0.15, 0.3]]], dtype=np.float32)
    ids = np.array([[[4, 7], [7, 4]]])
    got_d, got_i = merge_nearest(distances, ids, 3)
    assert got_i.tolist() == [[4, 7, -1]]
    np.testing.assert_allclose(got_d[0, :2], [0.1, 0.15])
    assert np.isnan(got_d[0, 2])


@pytest.mark.parametrize("weight", [0.01, 0.3])
def test_majority_votes__match_the_rule_in_words(weight):
    distances, ids = planted_lists(queries=3, depth=12, pool=14, seed=1)
    for q in range(ids.shape[0]):
        np.testing.assert_allclose(majority_votes(distances[q], ids[q], weight),
                                   naive_votes(distances[q], ids[q], weight), rtol=1e-12)


def test_merge_majority_voting__votes_move_an_image_all_crops_agree_on():
    # image 9 is every crop's top-1 but a little farther than image 3, which only crop 0 sees
    ids = np.array([[[3, 9] + list(range(20, 28)), *[[9, 30 + c] + list(range(40 + 10 * c, 48 + 10 * c))
                                                     for c in range(1, 5)]]])
    distances = np.tile(np.linspace(0.50, 0.95, 10, dtype=np.float32), (1, 5, 1))
    distances[0, 1:, 0] = 0.52  # image 9 at 0.52 in crops 1..4 (image 3 at 0.50 in crop 0)
    nearest = merge_nearest(distances, ids, 3)[1]
    voted_d, voted = merge_majority_voting(distances, ids, 3, weight=0.01)
    assert nearest[0, :2].tolist() == [3, 9]
    assert voted[0, :2].tolist() == [9, 3]
    adjusted = naive_votes(distances[0], ids[0], 0.01)
    want_d, want_i = naive_merge(adjusted[None], distances, ids, 3)
    np.testing.assert_array_equal(voted, want_i)
    np.testing.assert_allclose(voted_d, want_d, rtol=1e-6)  # the descriptor distances, not the votes


@pytest.mark.parametrize("method", ["nearest_crop", "maj_voting"])
def test_search_views__equals_full_float64_distances_then_the_rule(method):
    rng = np.random.default_rng(2)
    database = rng.normal(size=(40, 8)).astype(np.float32)
    views = rng.normal(size=(6, 5, 8)).astype(np.float32)
    k = 7
    got_d, got_i = search_views(views.reshape(6, 40), database, 5, k, method=method)
    full = ((views[:, :, None, :].astype(np.float64) - database[None, None].astype(np.float64)) ** 2).sum(-1)
    depth = k if method == "nearest_crop" else 10
    order = np.argsort(full, axis=-1, kind="stable")[..., :depth]
    lists = np.take_along_axis(full, order, axis=-1)
    if method == "nearest_crop":
        # exact: the k images of smallest distance to any crop
        want_i = np.argsort(full.min(axis=1), axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(got_i, want_i)
        np.testing.assert_allclose(got_d, np.take_along_axis(full.min(axis=1), want_i, 1), rtol=1e-4, atol=1e-4)
    else:
        scores = np.stack([naive_votes(lists[q], order[q], 0.01) for q in range(6)])
        want_d, want_i = naive_merge(scores, lists, order, k)
        np.testing.assert_array_equal(got_i, want_i)
        np.testing.assert_allclose(got_d, want_d, rtol=1e-4, atol=1e-4)


# -- query views -------------------------------------------------------------------------------------


def gradient_image(width, height):
    x = np.linspace(0, 255, width)[None, :, None]
    y = np.linspace(0, 255, height)[:, None, None]
    pixels = np.concatenate([np.broadcast_to(x, (height, width, 1)), np.broadcast_to(y, (height, width, 1)),
                             np.broadcast_to((x + y) / 2, (height, width, 1))], axis=2)
    return Image.fromarray(pixels.astype(np.uint8))


def normalised(image):
    tensor = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)
    return (tensor - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


def test_central_crop__covering_resize_then_centre():
    image = gradient_image(100, 50)  # width 100, height 50; target 48 x 64
    got = CentralCrop((48, 64), MEAN, STD)(image)
    # scale max(48/50, 64/100) = 0.96 -> 96 x 48, centre 64 columns start at 16
    want = normalised(image.resize((96, 48), Image.BILINEAR).crop((16, 0, 80, 48)))
    assert got.shape == (3, 48, 64)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_five_square_crops__corners_and_centre_of_the_shorter_side():
    image = gradient_image(90, 60)
    got = FiveSquareCrops(30, MEAN, STD)(image)
    resized = image.resize((45, 30), Image.BILINEAR)
    boxes = [(0, 0, 30, 30), (15, 0, 45, 30), (0, 0, 30, 30), (15, 0, 45, 30), (8, 0, 38, 30)]
    assert got.shape == (5, 3, 30, 30)
    for view, box in zip(got, boxes):
        torch.testing.assert_close(view, normalised(resized.crop(box)), rtol=0, atol=2 / 255 / min(STD))


class Linear(torch.nn.Module):
    out_dim = 4

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(3 * 6 * 6, 4, generator=torch.Generator().manual_seed(0)))

    def forward(self, images):
        return torch.nn.functional.normalize(images.flatten(1) @ self.weight, dim=1)


def test_view_encoder__mean_and_stack_of_the_views():
    model = Linear()
    images = torch.randn(2, 5, 3, 6, 6)
    each = torch.stack([model(images[b]) for b in range(2)])  # (2, 5, 4)
    torch.testing.assert_close(ViewEncoder(model, combine="mean")(images), each.mean(1))
    torch.testing.assert_close(ViewEncoder(model, combine="stack")(images), each.reshape(2, 20))
    assert ViewEncoder(model, combine="stack").out_dim == 20


# -- options and protocol ----------------------------------------------------------------------------


def test_parsers_and_bad_values_are_config_errors():
    assert parse_image_size("480,640") == (480, 640)
    assert parse_resize("shorter_side:512") == 512
    for bad in ("480", "a,b", "0,4"):
        with pytest.raises(ConfigError, match="--image-size"):
            parse_image_size(bad)
    for bad in ("512", "longer_side:5", "shorter_side:0"):
        with pytest.raises(ConfigError, match="--resize"):
            parse_resize(bad)
    with pytest.raises(ConfigError, match="--test-method"):
        TestTime(method="ten_crops")
    with pytest.raises(ConfigError, match="--precision"):
        TestTime(precision="fp8")
    with pytest.raises(ConfigError, match="one descriptor per query"):
        TestTime(method="maj_voting", rerank=RerankSettings())
    with pytest.raises(ConfigError, match="--rerank-k2"):
        RerankSettings(k1=4, k2=6)


class FakeSplit:
    dataset, split, database_place_ids = "tokyo247", "test", np.arange(3)


def test_crop_method__replaces_the_conventions_query_resize_and_refuses_an_explicit_one():
    protocol = resolve_protocol(FakeSplit(), "tokyo247")
    assert protocol.query_resize == 640
    replaced = with_test_time(protocol, TestTime(method="five_crops"))
    assert replaced.query_resize is None
    assert replaced.source("query_resize") == "replaced by test method five_crops"
    assert any("replaced by test method five_crops" in note for note in replaced.notes)
    assert with_test_time(protocol, TestTime()) is protocol  # single keeps the query resize
    with pytest.raises(ConfigError, match="--query-resize 512 and --test-method central_crop"):
        with_test_time(resolve_protocol(FakeSplit(), "tokyo247", query_resize=512), TestTime(method="central_crop"))


# -- re-ranking ---------------------------------------------------------------------------------------


def test_rerank_top__orders_by_the_dense_float64_final_distance():
    x = clustered(num=50, dim=8, clusters=5, seed=3)
    queries, database = x[:10], x[10:]
    settings = RerankSettings(top=12, k1=6, k2=2, lam=0.3, distance="reference")
    full = ((queries[:, None, :].astype(np.float64) - database[None].astype(np.float64)) ** 2).sum(-1)
    indices = np.argsort(full, axis=1, kind="stable")[:, :15]
    distances = np.take_along_axis(full, indices, 1).astype(np.float32)
    got_d, got_i = rerank_top(queries, database, distances, indices, settings)

    final = dense_final(x.astype(np.float64), np.arange(10), indices[:, :12] + 10, 6, 2, 0.3, "reference")
    want = np.take_along_axis(indices[:, :12], np.argsort(final, axis=1, kind="stable"), 1)
    np.testing.assert_array_equal(got_i[:, :12], want)
    np.testing.assert_array_equal(got_i[:, 12:], indices[:, 12:])  # beyond the top: untouched
    np.testing.assert_allclose(got_d, np.take_along_axis(full, got_i, 1), rtol=1e-5)  # descriptor distances
    assert (got_i[:, :12] != indices[:, :12]).any()  # the planted set does get re-ordered


def test_rerank_top__too_small_a_joint_set_is_a_config_error():
    x = clustered(num=6, dim=4, clusters=2)
    with pytest.raises(ConfigError, match="--rerank-k1 20 needs at least 21"):
        rerank_top(x[:2], x[2:], np.zeros((2, 3), np.float32), np.zeros((2, 3), np.int64), RerankSettings())


# -- precision -------------------------------------------------------------------------------------------


def test_bf16_extraction__close_to_fp32_same_top1_float32_unit_rows(tiny_city_root):
    from sfrs.config import ModelConfig
    from sfrs.data import open_dataset
    from sfrs.models import build_network

    torch.manual_seed(0)
    model = build_network(ModelConfig(input_size=(48, 64), head_options={"clusters": 8}))
    paths = list(open_dataset("synthetic:tiny", "test").database_paths[:12])
    transform = model.transform()
    exact = extract_descriptors(model, paths, transform, progress=False)
    low = extract_descriptors(ViewEncoder(model, precision="bf16"), paths, transform, progress=False)
    assert low.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(low, axis=1), 1.0, atol=1e-6)
    assert np.abs(low - exact).max() < 0.05
    # easy case: the database searched with itself; bf16 finds each image first
    assert ((low @ exact.T).argmax(axis=1) == np.arange(len(paths))).all()
