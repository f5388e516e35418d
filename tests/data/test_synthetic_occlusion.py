"""The synthetic city's occlusion knob: the same city with part of every query hidden by a
vehicle next to the camera; spec syntax, caching and the CLI."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from sfrs.cli.synth import main as synth_main
from sfrs.data import open_dataset
from sfrs.data.formats.synthetic_city import SyntheticSpec, parse_synthetic_spec
from sfrs.data.synthetic import cached_city_path, ensure_synthetic, generate_city
from sfrs.data.synthetic import writer
from sfrs.errors import DataError

WIDTH = 160
#: blur (radius <= 1.3 px) and JPEG blocks (16 px with chroma subsampling) reach this far
#: from the occluder's edge; beyond it the two cities' queries agree.
MARGIN_PX = 24


@pytest.fixture(scope="module")
def occluded_city(tmp_path_factory) -> Path:
    return generate_city(tmp_path_factory.mktemp("occluded") / "tiny", "tiny", 0, progress=False, occlusion=0.5)


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=np.float64)


def test_occlusion__hides_half_of_every_query_on_one_side_and_leaves_the_rest_of_the_city(
        occluded_city, tiny_city_root):
    sides = []
    for path in sorted((occluded_city / "images").rglob("*.jpg")):
        plain = tiny_city_root / path.relative_to(occluded_city)
        if path.parent.name == "database":
            assert path.read_bytes() == plain.read_bytes(), path.name
            continue
        columns = np.abs(pixels(path) - pixels(plain)).mean(axis=(0, 2))
        left = columns[: WIDTH // 2].mean() > columns[WIDTH // 2:].mean()
        sides.append(left)
        hidden = columns[: WIDTH // 2] if left else columns[WIDTH // 2:]
        visible = columns[WIDTH // 2 + MARGIN_PX:] if left else columns[: WIDTH // 2 - MARGIN_PX]
        assert hidden.mean() > 5.0, path.name
        assert visible.max() < 1.0, path.name
    assert len(sides) == 160
    assert 0.3 < np.mean(sides) < 0.7  # both sides, about equally often
    manifest = writer.read_manifest(occluded_city)
    assert manifest["parameters"]["occlusion"] == 0.5
    assert writer.read_manifest(tiny_city_root)["parameters"]["occlusion"] == 0.0


def test_occlusion__is_part_of_the_cache_key(tmp_path, tiny_city_root):
    assert cached_city_path("tiny", 0, tmp_path) == tmp_path / "synthetic" / "tiny-seed0-v1"
    assert cached_city_path("tiny", 0, tmp_path, 0.25) == tmp_path / "synthetic" / "tiny-seed0-occlusion0.25-v1"
    assert not writer.is_complete_city(tiny_city_root, "tiny", 0, 1, 0.5)
    with pytest.raises(DataError, match="is not an empty directory nor the synthetic city"):
        generate_city(tiny_city_root, "tiny", 0, progress=False, occlusion=0.5)


@pytest.mark.parametrize("bad", [-0.1, 0.95, True, "half"])
def test_occlusion__out_of_range_is_refused(bad, tmp_path):
    with pytest.raises(DataError, match="occlusion must be a number in"):
        ensure_synthetic("tiny", cache_dir=tmp_path, progress=False, occlusion=bad)


def test_spec__size_seed_and_occlusion_and_its_canonical_name():
    assert parse_synthetic_spec("synthetic") == SyntheticSpec()
    assert parse_synthetic_spec("synthetic:tiny") == SyntheticSpec(size="tiny")
    parsed = parse_synthetic_spec("synthetic:small:occlusion=0.50:seed=2")
    assert parsed == SyntheticSpec(size="small", seed=2, occlusion=0.5)
    assert parsed.name == "synthetic:small:seed=2:occlusion=0.5"
    assert SyntheticSpec(size="tiny").name == "synthetic:tiny"
    assert parse_synthetic_spec("vg:/data") is None


@pytest.mark.parametrize("spec, message", [
    ("synthetic:tiny:fog=1", "'fog=1' is not an option"),
    ("synthetic:tiny:occlusion", "'occlusion' is not an option"),
    ("synthetic:tiny:seed=x", "seed must be an integer"),
    ("synthetic:tiny:occlusion=lots", "occlusion must be a number"),
    ("synthetic::seed=1", "missing size"),
])
def test_spec__bad_options_are_one_line_errors(spec, message):
    with pytest.raises(DataError, match=message):
        parse_synthetic_spec(spec)


def test_open_dataset__reads_the_occluded_city_under_its_spec_name(private_cache):
    split = open_dataset("synthetic:tiny:occlusion=0.3", "val")
    assert split.dataset == "synthetic:tiny:occlusion=0.3"
    assert (private_cache / "synthetic" / "tiny-seed0-occlusion0.3-v1" / "city.json").exists()


def test_synth_cli__occlusion_option(tmp_path):
    result = CliRunner().invoke(synth_main, ["--size", "tiny", "--occlusion", "0.3", "--output", str(tmp_path / "c"),
                                             "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "--dataset synthetic:tiny:occlusion=0.3" in result.output
    bad = CliRunner().invoke(synth_main, ["--size", "tiny", "--occlusion", "2", "--output", str(tmp_path / "d"),
                                          "--no-progress"])
    assert bad.exit_code == 2 and "occlusion must be a number in" in bad.output
