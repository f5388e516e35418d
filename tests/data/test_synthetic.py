"""The procedural synthetic city: format, geometry, determinism, caching and atomicity."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
from PIL import Image
from scipy.spatial import cKDTree

from sfrs.data.geo import positives_within
from sfrs.data.synthetic import (
    GENERATOR_VERSION,
    SIZES,
    default_cache_dir,
    ensure_synthetic,
    generate_city,
)
from sfrs.data.synthetic import city as city_module
from sfrs.data.synthetic import layout, render, writer
from sfrs.errors import DataError

SPLITS = ("train", "val", "test")
KINDS = ("database", "queries")
VG_FIELDS = (
    "east", "north", "zone", "letter", "lat", "lon", "pano", "tile",
    "heading", "pitch", "roll", "height", "timestamp", "note",
)


def parse_name(name: str) -> Dict[str, str]:
    """The named '@' fields of a VG file name (independent of the project's reader).

    ``@east@north@...@timestamp@note@.jpg`` splits into '', 14 named fields and '.jpg' (the
    format's "15 fields" count the extension slot).
    """
    assert name.startswith("@") and name.endswith("@.jpg"), name
    parts = name.split("@")
    assert len(parts) == 16, name
    return dict(zip(VG_FIELDS, parts[1:15]))


def list_split(root: Path, split: str, kind: str) -> List[Path]:
    return sorted((root / "images" / split / kind).glob("*.jpg"))


def utm_of(paths: List[Path]) -> np.ndarray:
    return np.array([[float(parse_name(p.name)["east"]), float(parse_name(p.name)["north"])] for p in paths])


def all_files(root: Path) -> Dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_city(tmp_path_factory) -> Path:
    return generate_city(tmp_path_factory.mktemp("city") / "tiny", size="tiny", seed=0, progress=False)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def cached_tiny_city(cache_dir) -> Path:
    """The same city as ``tiny_city``, generated a second time through the cache."""
    return ensure_synthetic("tiny", seed=0, cache_dir=cache_dir, progress=False)


def test_tiny_city__has_expected_counts_and_image_size(tiny_city):
    expected = {"train": (150, 80), "val": (80, 40), "test": (80, 40)}
    manifest = writer.read_manifest(tiny_city)
    assert manifest["size"] == "tiny" and manifest["seed"] == 0
    assert manifest["generator_version"] == GENERATOR_VERSION
    assert manifest["image_size"] == [120, 160]
    for split in SPLITS:
        db, q = list_split(tiny_city, split, "database"), list_split(tiny_city, split, "queries")
        assert (len(db), len(q)) == expected[split]
        assert manifest["counts"][split] == {"database": len(db), "queries": len(q)}
        for path in db[:3] + q[:3]:
            with Image.open(path) as image:
                assert image.format == "JPEG" and image.mode == "RGB" and image.size == (160, 120)


def test_generation__same_seed_gives_identical_bytes(tiny_city, cached_tiny_city):
    assert all_files(tiny_city) == all_files(cached_tiny_city)


def test_generation__different_seed_gives_different_city(tiny_city, tmp_path):
    other = generate_city(tmp_path / "seed1", size="tiny", seed=1, progress=False)
    names = {p.name for p in tiny_city.rglob("*.jpg")}
    other_names = {p.name for p in other.rglob("*.jpg")}
    assert names.isdisjoint(other_names)
    first = list_split(tiny_city, "test", "queries")[0].read_bytes()
    assert first != list_split(other, "test", "queries")[0].read_bytes()


def test_file_names__parse_to_utm_and_are_unique(tiny_city):
    names = [p.name for p in tiny_city.rglob("*.jpg")]
    assert len(names) == len(set(names)) == 150 + 80 + 2 * (80 + 40)
    for split in SPLITS:
        for kind in KINDS:
            for path in list_split(tiny_city, split, kind):
                f = parse_name(path.name)
                east, north = float(f["east"]), float(f["north"])
                assert len(f["east"]) == 10 and len(f["north"]) == 10  # zero-padded, 2 decimals
                assert 490_000 < east < 530_000 and 3_990_000 < north < 4_010_000
                assert (f["zone"], f["letter"]) == ("10", "S")
                assert 0 <= int(f["heading"]) < 360
                assert len(f["pano"]) == 22 and f["timestamp"]
                lat, lon = float(f["lat"]), float(f["lon"])
                assert 35.9 < lat < 36.4 and -123.2 < lon < -122.7
                if kind == "database":
                    assert f["timestamp"].startswith("2014") and f["note"] == ""
                else:
                    assert f["timestamp"][:4] in ("2016", "2017") and f["note"] in ("day", "night")


def test_file_names__database_sides_share_a_pano_per_position(tiny_city):
    by_pano: Dict[str, List[Dict[str, str]]] = {}
    for path in list_split(tiny_city, "train", "database"):
        f = parse_name(path.name)
        by_pano.setdefault(f["pano"], []).append(f)
    assert len(by_pano) == 75
    for views in by_pano.values():
        assert len(views) == 2 and views[0]["east"] == views[1]["east"]
        turn = (int(views[0]["heading"]) - int(views[1]["heading"])) % 360
        assert 170 <= turn <= 190  # the two street sides


def test_writer__inverse_utm_matches_the_vg_example():
    # From the VG format's example name: @0545981.19@4184971.70@10@S@037.81098@-122.47762@...
    lat, lon = writer.utm_to_latlon(545981.19, 4184971.70, 10)
    assert lat == pytest.approx(37.81098, abs=2e-5) and lon == pytest.approx(-122.47762, abs=2e-5)


def test_splits__are_geographically_disjoint(tiny_city):
    positions = {s: np.concatenate([utm_of(list_split(tiny_city, s, k)) for k in KINDS]) for s in SPLITS}
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1 :]:
            distance, _ = cKDTree(positions[b]).query(positions[a])
            assert distance.min() > 25.0


@pytest.mark.parametrize("size", ["tiny", "small", "medium"])
def test_layout__streets_are_more_than_60m_apart_and_counts_match_size(size):
    targets = {"tiny": {"train": (150, 80), "val": (80, 40), "test": (80, 40)},
               "small": {"train": (1000, 500), "val": (400, 200), "test": (400, 200)},
               "medium": {"train": (5000, 2500), "val": (2000, 1000), "test": (2000, 1000)}}[size]
    for split in SPLITS:
        lay = layout.split_layout(SIZES[size], split, seed=3)
        n_db, n_q = targets[split]
        assert 0.7 * n_db <= len(lay.database) <= 1.3 * n_db and 0.7 * n_q <= len(lay.queries) <= 1.3 * n_q
        utm = lay.utm(lay.database + lay.queries)
        street = np.array([s.street for s in lay.database + lay.queries])
        assert len(set(street.tolist())) >= 2
        for k in set(street.tolist()):
            distance, _ = cKDTree(utm[street != k]).query(utm[street == k])
            assert distance.min() > 60.0


@pytest.mark.parametrize("size", ["tiny", "small", "medium"])
def test_layout__uncovered_and_train_positive_fractions(size):
    for split in SPLITS:
        lay = layout.split_layout(SIZES[size], split, seed=0)
        db, q = lay.utm(lay.database), lay.utm(lay.queries)
        without = np.mean([len(p) == 0 for p in positives_within(q, db, 25.0)])
        assert 0.02 <= without <= 0.12
        assert without == pytest.approx(lay.uncovered_queries / len(lay.queries))
        if split == "train":
            assert np.mean([len(p) > 0 for p in positives_within(q, db, 10.0)]) > 0.85


def test_queries__fraction_without_25m_positive_is_between_2_and_12_percent(tiny_city):
    for split in SPLITS:
        q = utm_of(list_split(tiny_city, split, "queries"))
        db = utm_of(list_split(tiny_city, split, "database"))
        without = np.mean([len(p) == 0 for p in positives_within(q, db, 25.0)])
        assert 0.02 <= without <= 0.12, split
        if split == "train":
            assert np.mean([len(p) > 0 for p in positives_within(q, db, 10.0)]) > 0.85


def test_database_neighbours__9m_apart_share_less_of_the_view_than_3m_apart(tiny_city):
    paths = list_split(tiny_city, "train", "database")
    utm = utm_of(paths)
    heading = np.array([int(parse_name(p.name)["heading"]) for p in paths])
    pixels = np.stack([np.asarray(Image.open(p), dtype=np.float32) for p in paths])
    near, far = [], []
    for i in range(len(paths)):
        same_side = np.abs((heading - heading[i] + 180) % 360 - 180) < 30
        distance = np.linalg.norm(utm - utm[i], axis=1)
        for target, out in ((3.0, near), (9.0, far)):
            j = np.flatnonzero(same_side & (np.abs(distance - target) < 1.0))
            if len(j):
                out.append(np.abs(pixels[j[0]] - pixels[i]).mean())
    assert len(near) > 50 and len(far) > 50
    assert np.mean(far) > np.mean(near) + 3.0


def test_ensure_synthetic__reuses_the_cache(cache_dir, cached_tiny_city, monkeypatch):
    assert cached_tiny_city == cache_dir / "synthetic" / f"tiny-seed0-v{GENERATOR_VERSION}"
    mtime = (cached_tiny_city / "city.json").stat().st_mtime_ns

    def must_not_render(*args, **kwargs):
        raise AssertionError("the cached city was generated again")

    monkeypatch.setattr(city_module, "_render_city", must_not_render)
    assert ensure_synthetic("tiny", seed=0, cache_dir=cache_dir, progress=False) == cached_tiny_city
    assert generate_city(cached_tiny_city, "tiny", 0, progress=False) == cached_tiny_city
    assert (cached_tiny_city / "city.json").stat().st_mtime_ns == mtime


def test_ensure_synthetic__uses_default_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SFRS_CACHE", str(tmp_path / "explicit"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("SFRS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "sfrs"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "sfrs"

    generated = []
    monkeypatch.setenv("SFRS_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setattr(city_module, "generate_city", lambda path, **kw: generated.append(Path(path)) or Path(path))
    ensure_synthetic("small", seed=4, progress=False)
    assert generated == [tmp_path / "explicit" / "synthetic" / f"small-seed4-v{GENERATOR_VERSION}"]


def test_interrupted_generation__leaves_no_complete_looking_output(tmp_path, monkeypatch):
    saved = []
    real_save = writer.save_jpeg
    monkeypatch.setattr(writer, "save_jpeg", lambda *a, **kw: saved.append(1) or real_save(*a, **kw))

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-way

    monkeypatch.setattr(render, "render_query", interrupt)
    output = tmp_path / "city"
    with pytest.raises(KeyboardInterrupt):
        generate_city(output, size="tiny", seed=0, progress=False)
    assert saved  # some images had been written before the interruption
    assert not output.exists()
    assert list(tmp_path.iterdir()) == []  # the temporary sibling is gone too
    assert not writer.is_complete_city(output, "tiny", 0, GENERATOR_VERSION)


def test_generate_city__refuses_a_non_empty_foreign_directory(tmp_path):
    output = tmp_path / "occupied"
    output.mkdir()
    (output / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="exists and is not an empty directory"):
        generate_city(output, size="tiny", seed=0, progress=False)
    assert (output / "notes.txt").read_text() == "mine"


def test_generate_city__uses_the_winner_when_another_process_publishes_first(tmp_path, monkeypatch):
    output = tmp_path / "city"

    def render_while_another_process_wins(root, spec, seed, progress, occlusion):
        writer.write_manifest(root, {"size": spec.name, "seed": seed, "generator_version": GENERATOR_VERSION})
        output.mkdir()
        (output / "winner.txt").write_text("first")
        writer.write_manifest(output, {"size": spec.name, "seed": seed, "generator_version": GENERATOR_VERSION})

    monkeypatch.setattr(city_module, "_render_city", render_while_another_process_wins)
    assert generate_city(output, size="tiny", seed=0, progress=False) == output
    assert (output / "winner.txt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["city"]  # our temporary copy is deleted


def test_unknown_size__raises_data_error(tmp_path):
    message = "unknown synthetic city size 'xx': choose tiny, small or medium"
    with pytest.raises(DataError) as excinfo:
        generate_city(tmp_path / "c", size="xx", progress=False)
    assert str(excinfo.value) == message
    with pytest.raises(DataError) as excinfo:
        ensure_synthetic("xx", cache_dir=tmp_path, progress=False)
    assert str(excinfo.value) == message
    assert not (tmp_path / "c").exists()


def test_sizes__are_frozen_dataclasses():
    assert set(SIZES) == {"tiny", "small", "medium"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        SIZES["tiny"].db_spacing_m = 1.0
