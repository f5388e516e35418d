"""sfrs.analysis.dataset_stats: counts, positives per query and nearest distances against a
naive loop over hand-placed images; figures written at their size; missing splits listed."""
import json
import math

import numpy as np
import pytest
from PIL import Image

from sfrs.analysis import dataset_stats, figures, split_stats
from sfrs.data import DatasetConventions, open_dataset
from sfrs.errors import DataError
from tests.data.test_vg_folder import vg_name

EAST, NORTH = 500000.0, 4000000.0
# metres from (EAST, NORTH): query 0 has db 0 at 5 m and db 1 at 15 m; query 1 is 40 m from
# db 1 and db 2 (no positive); query 2 has db 2 at 8 m and db 3 at 22 m.
DATABASE = [(0, 0), (20, 0), (100, 0), (122, 8), (300, 300)]
QUERIES = [(5, 0), (60, 0), (100, 8)]
FIGURE_PIXELS = {
    "map": (640, 640),
    "positives": (960, 400),
    "nearest": (960, 400),
    "samples": (figures.SAMPLES_PER_ROW * figures.SAMPLE_CELL[1], 2 * figures.SAMPLE_CELL[0]),
}


def write_vg(root, split, database=DATABASE, queries=QUERIES):
    for subset, offsets in (("database", database), ("queries", queries)):
        folder = root / "images" / split / subset
        folder.mkdir(parents=True, exist_ok=True)
        for i, (de, dn) in enumerate(offsets):
            Image.new("RGB", (12, 8), (30 * i, 80, 200)).save(folder / vg_name(f"{EAST + de:.2f}", f"{NORTH + dn:.2f}", f"p{i}"))
    return root


def naive(offsets_q, offsets_db):
    """Per query: (positives within 10 m, within 25 m, nearest distance), by a double loop."""
    rows = []
    for q in offsets_q:
        distances = [math.dist(q, d) for d in offsets_db]
        rows.append((sum(d <= 10 for d in distances), sum(d <= 25 for d in distances), min(distances)))
    return rows


def test_dataset_stats__matches_naive_loop_on_hand_placed_images(tmp_path):
    root = write_vg(tmp_path / "handmade", "test")
    result = dataset_stats(root, tmp_path / "out")
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert list(stats["splits"]) == ["test"] and list(stats["skipped_splits"]) == ["train", "val"]
    test = stats["splits"]["test"]
    expected = naive(QUERIES, DATABASE)
    assert (test["num_database"], test["num_queries"]) == (5, 3)
    assert (test["radius_m"], test["radius_source"]) == (25.0, "default protocol")
    assert test["queries_without_positive"] == sum(row[1] == 0 for row in expected) == 1
    for key, column in (("10m", 0), ("25m", 1)):
        values = [row[column] for row in expected]
        assert test["positives_per_query"][key] == pytest.approx(
            {"mean": np.mean(values), "median": np.median(values), "max": max(values)})
    nearest = [row[2] for row in expected]
    assert nearest == pytest.approx([5, 40, 8])
    assert test["nearest_database_m"] == pytest.approx(
        {"mean": np.mean(nearest), "median": np.median(nearest), "max": max(nearest)})
    extent = test["utm_extent"]
    assert extent["easting"] == pytest.approx([EAST, EAST + 300]) and extent["height_m"] == pytest.approx(300)
    assert result.splits["test"].positive_counts[10.0].tolist() == [row[0] for row in expected]
    table = (tmp_path / "out" / "stats.md").read_text()
    assert "| test | 5 | 3 | 25 m (default protocol) | 1 |" in table and "- train: " in table and "split 'val' not found" in table


def test_dataset_stats__figures_exist_at_their_size(tmp_path):
    root = write_vg(tmp_path / "handmade", "val")
    dataset_stats(root, tmp_path / "out", splits=["val"])
    for kind, size in FIGURE_PIXELS.items():
        with Image.open(tmp_path / "out" / f"val_{kind}.png") as image:
            assert image.size == size, kind


def test_split_stats__uses_the_conventions_radius_and_says_so(tmp_path, monkeypatch):
    import sfrs.analysis.stats as stats_module

    monkeypatch.setattr(stats_module, "conventions_for", lambda name: DatasetConventions("wide", threshold_m=45.0))
    stats = split_stats(open_dataset(write_vg(tmp_path / "handmade", "test"), "test"))
    assert (stats.radius_m, stats.radius_source) == (45.0, "conventions of wide")
    assert stats.has_positive.tolist() == [True, True, True]  # query 1 is 40 m from db 1
    assert sorted(stats.positive_counts) == [10.0, 25.0]


def test_dataset_stats__synthetic_tiny_has_every_split(tiny_city_root, tmp_path):
    result = dataset_stats("synthetic:tiny", tmp_path / "out")
    assert list(result.splits) == ["train", "val", "test"] and result.skipped == {}
    for name, stats in result.splits.items():
        split = open_dataset("synthetic:tiny", name)
        # independent reference: the dense distance matrix, fine at this size
        dense = np.linalg.norm(split.query_utm[:, None] - split.database_utm[None], axis=2)
        assert stats.nearest_m == pytest.approx(dense.min(axis=1))
        assert stats.positive_counts[25.0].tolist() == (dense <= 25).sum(axis=1).tolist()
        assert (tmp_path / "out" / f"{name}_samples.png").is_file()


def test_dataset_stats__asked_split_missing_raises_one_line(tmp_path):
    root = write_vg(tmp_path / "handmade", "test")
    with pytest.raises(DataError, match="split 'train' not found"):
        dataset_stats(root, tmp_path / "out", splits=["train"])
    with pytest.raises(DataError) as info:
        dataset_stats(tmp_path / "absent", tmp_path / "out")
    assert "data set not found" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()
