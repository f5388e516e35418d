"""Per-benchmark evaluation conventions and the names benchmarks go by."""
from __future__ import annotations

import dataclasses

import pytest

from sfrs.data import KNOWN_DATASETS, DatasetConventions, canonical_name, conventions_for
from sfrs.data.conventions import split_suffix


def test_conventions_for__tokyo247_uses_nms_and_queries_with_a_shorter_side_of_640():
    tokyo = conventions_for("tokyo247")
    assert (tokyo.name, tokyo.threshold_m, tokyo.nms, tokyo.query_resize) == ("tokyo247", 25.0, True, 640)
    assert "panorama" in tokyo.notes
    assert conventions_for("Tokyo_24-7") == tokyo and conventions_for("tokyo24_7") == tokyo


def test_conventions_for__nordland_has_fake_frame_coordinates_and_no_nms():
    nordland = conventions_for("nordland")
    assert (nordland.threshold_m, nordland.nms, nordland.query_resize) == (25.0, False, None)
    assert "2.38" in nordland.notes and "10 frames" in nordland.notes
    assert "1000" in conventions_for("sped").notes and "1000" in conventions_for("amstertime").notes
    assert "740" in conventions_for("msls_val").notes


def test_conventions_for__every_alias_and_split_suffix_resolves_and_unknown_gets_the_default():
    for canonical, aliases in KNOWN_DATASETS.items():
        for alias in [canonical, *aliases]:
            assert conventions_for(alias).name == canonical
    assert conventions_for("pitts30k_test").name == "pitts30k"
    default = conventions_for("synthetic:small")
    assert (default.name, default.threshold_m, default.nms, default.query_resize, default.known) == (
        "synthetic:small", 25.0, False, None, False)
    assert default.source == "default protocol" and conventions_for("pitts30k").source == "conventions of pitts30k"


def test_dataset_conventions__frozen_and_validated():
    with pytest.raises(dataclasses.FrozenInstanceError):
        conventions_for("pitts30k").nms = True  # type: ignore[misc]
    for bad in ("shorter_side", 0, True):
        with pytest.raises(ValueError, match="query_resize"):
            DatasetConventions("x", query_resize=bad)


def test_tokyo247_queries__shorter_side_640_aspect_kept_whatever_the_model_input():
    """shared/spec/datasets.md: Resize(max(480, 640)), a 1,600x1,200 query becomes 853x640."""
    from PIL import Image

    from sfrs.data.images import build_transform

    for input_size in ((480, 640), (48, 64)):
        transform = build_transform(input_size, (0.5,) * 3, (0.5,) * 3, conventions_for("tokyo247").query_resize)
        assert transform(Image.new("RGB", (1600, 1200))).shape == (3, 640, 853)
        assert transform(Image.new("RGB", (1200, 1600))).shape == (3, 853, 640)


def test_canonical_name__split_suffix_tolerated_only_when_allowed():
    assert canonical_name("Pittsburgh30k_test") == "pitts30k"
    assert canonical_name("Pittsburgh30k_test", allow_split_suffix=False) is None
    assert canonical_name("holiday_photos") is None
    assert split_suffix("tokyoTM-val") == ("tokyoTM", "val") and split_suffix("tokyo247") == ("tokyo247", None)
