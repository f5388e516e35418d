"""The synthetic cross-view set: University-1652 layout, deterministic, readable by the
University-1652 reader, written atomically; sfrs-synth --cross-view."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from sfrs.cli.synth import main as synth_main
from sfrs.data import open_dataset
from sfrs.data.synthetic import cross_view as cv
from sfrs.data.synthetic import cross_view_plan as plan
from sfrs.data.synthetic import cross_view_render as render
from sfrs.data.synthetic.seeding import rng_for
from sfrs.errors import DataError


@pytest.fixture(scope="module")
def root(private_cache):
    return cv.ensure_cross_view("tiny", seed=0, progress=False)


def test_layout__building_folders_in_the_university1652_views(root):
    size = plan.CROSS_VIEW_SIZES["tiny"]
    train_ids = sorted(p.name for p in (root / "train" / "satellite").iterdir())
    assert train_ids == [f"{i:04d}" for i in range(size.train_grid[0] * size.train_grid[1])]
    assert sorted(p.name for p in (root / "train" / "drone").iterdir()) == train_ids
    assert sorted(p.name for p in (root / "train" / "drone" / "0000").iterdir()) == [
        f"image-{k:02d}.jpeg" for k in range(1, size.drone_views + 1)]
    test = {view: sorted(p.name for p in (root / "test" / view).iterdir())
            for view in ("query_drone", "gallery_satellite", "query_satellite", "gallery_drone")}
    blocks = size.test_grid[0] * size.test_grid[1]
    assert len(test["gallery_satellite"]) == len(test["gallery_drone"]) == blocks
    assert test["query_drone"] == test["query_satellite"] == sorted(test["query_drone"])
    assert len(test["query_drone"]) == round(0.75 * blocks) and set(test["query_drone"]) < set(test["gallery_satellite"])
    assert not set(train_ids) & set(test["gallery_satellite"])
    manifest = json.loads((root / "cross_view.json").read_text())
    assert manifest["complete"] and manifest["size"] == "tiny" and manifest["counts"]["train"]["drone"] == len(train_ids) * 4


def test_reader__opens_both_splits_with_same_block_ground_truth(root):
    train = open_dataset(f"u1652:{root}", "train")
    assert train.num_database == 20 and train.num_queries == 80
    for q in (0, 41, 79):
        (positive,) = train.positives(25.0)[q]
        assert train.database_paths[positive].split("/")[-2] == train.query_paths[q].split("/")[-2]
    s2d = open_dataset(f"u1652:{root}", "test", protocol="satellite->drone")
    assert s2d.num_queries == 12 and s2d.num_database == 64


def test_rendering__deterministic_in_seed_and_differs_across_seeds():
    size = plan.CROSS_VIEW_SIZES["tiny"]
    a, b = plan.plan_district(size, "test", 0), plan.plan_district(size, "test", 0)
    assert a == b and plan.plan_district(size, "test", 1) != a
    scene = render.Scene(a, rng_for(0, plan.PLAN, 1, 3))
    block = a.blocks[5]
    views = [np.asarray(render.drone_view(scene, block, 64, rng_for(0, plan.DRONE_VIEW, 1, 5, 0), (0, 4))) for _ in range(2)]
    assert views[0].shape == (64, 64, 3) and np.array_equal(views[0], views[1])
    tiles = [np.asarray(render.satellite_tile(scene, block, 64, rng_for(s, plan.SATELLITE_VIEW, 1, 5))) for s in (0, 0, 1)]
    assert np.array_equal(tiles[0], tiles[1]) and not np.array_equal(tiles[0], tiles[2])


def test_generate__refuses_a_foreign_non_empty_folder_and_bad_arguments(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file.txt").write_text("x")
    with pytest.raises(DataError, match="busy: exists and is not an empty directory"):
        cv.generate_cross_view(tmp_path / "busy", "tiny", 0, progress=False)
    with pytest.raises(DataError, match="unknown synthetic cross-view size 'huge'"):
        cv.generate_cross_view(tmp_path / "x", "huge")
    with pytest.raises(DataError, match="seed must be a non-negative integer"):
        cv.generate_cross_view(tmp_path / "x", "tiny", -1)


def test_sfrs_synth_cross_view__prints_where_and_what(root):
    result = CliRunner().invoke(synth_main, ["--cross-view", "--size", "tiny", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert f"at {root}" in result.output and f"--dataset u1652:{root}" in result.output
    assert "train drone->satellite: 80 queries, 20 database images" in result.output
    assert "test satellite->drone: 12 queries, 64 database images" in result.output
