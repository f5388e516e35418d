"""Per-benchmark evaluation conventions and the names benchmarks go by."""
from __future__ import annotations

import dataclasses

import pytest

from sfrs.data import KNOWN_DATASETS, DatasetConventions, canonical_name, conventions_for
from sfrs.data.conventions import QUERY_RESIZE_MODES, split_suffix


def test_conventions_for__tokyo247_uses_nms_and_aspect_preserving_queries():
    tokyo = conventions_for("tokyo247")
    assert (tokyo.name, tokyo.threshold_m, tokyo.nms, tokyo.query_resize) == ("tokyo247", 25.0, True, "shorter_side")
    assert "panorama" in tokyo.notes
    assert conventions_for("Tokyo_24-7") == tokyo and conventions_for("tokyo24_7") == tokyo


def test_conventions_for__nordland_has_fake_frame_coordinates_and_no_nms():
    nordland = conventions_for("nordland")
    assert (nordland.threshold_m, nordland.nms, nordland.query_resize) == (25.0, False, "squash")
    assert "2.38" in nordland.notes and "10 frames" in nordland.notes
    assert "1000" in conventions_for("sped").notes and "1000" in conventions_for("amstertime").notes
    assert "740" in conventions_for("msls_val").notes


def test_conventions_for__every_alias_and_split_suffix_resolves_and_unknown_gets_the_default():
    for canonical, aliases in KNOWN_DATASETS.items():
        for alias in [canonical, *aliases]:
            assert conventions_for(alias).name == canonical
    assert conventions_for("pitts30k_test").name == "pitts30k"
    default = conventions_for("synthetic:small")
    assert (default.name, default.threshold_m, default.nms, default.query_resize) == (
        "synthetic:small", 25.0, False, "squash")


def test_dataset_conventions__frozen_and_validated():
    with pytest.raises(dataclasses.FrozenInstanceError):
        conventions_for("pitts30k").nms = True  # type: ignore[misc]
    with pytest.raises(ValueError, match="query_resize"):
        DatasetConventions("x", query_resize="crop")


def test_query_resize_modes__match_the_image_transforms():
    from sfrs.data.images import RESIZE_MODES

    assert set(QUERY_RESIZE_MODES) == set(RESIZE_MODES)


def test_canonical_name__split_suffix_tolerated_only_when_allowed():
    assert canonical_name("Pittsburgh30k_test") == "pitts30k"
    assert canonical_name("Pittsburgh30k_test", allow_split_suffix=False) is None
    assert canonical_name("holiday_photos") is None
    assert split_suffix("tokyoTM-val") == ("tokyoTM", "val") and split_suffix("tokyo247") == ("tokyo247", None)
