"""VG-folder reader: file-name parsing, split discovery, ordering and errors."""
from pathlib import Path

import numpy as np
import pytest

from sfrs.data.formats.vg_folder import list_vg_splits, parse_vg_filename, read_vg_split
from sfrs.errors import DataError


def vg_name(east, north, pano="", ext=".jpg"):
    """A 15-field VG file name: 14 metadata fields then the extension."""
    fields = [f"{east}", f"{north}", "17", "T", "40.44", "-79.95", pano, "", "", "", "", "", "", ""]
    return "@" + "@".join(fields) + "@" + ext


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def make_split(root: Path, split: str, database, queries):
    """database / queries: lists of (relative_folder, file_name)."""
    for subset, items in (("database", database), ("queries", queries)):
        for folder, name in items:
            touch(root / "images" / split / subset / folder / name)


def test_parse_vg_filename__reads_only_the_file_name_when_a_parent_folder_has_at_signs():
    path = "/data/@weird@folder@1@2@/" + vg_name("0545981.19", "4184971.70", "rtCs5-P_9NGDzUbKyzStWA")
    assert parse_vg_filename(path) == (545981.19, 4184971.70)


def test_parse_vg_filename__accepts_nordland_style_minimal_fields():
    assert parse_vg_filename("@0@4.76@@@@@@@@@@@@@.png") == (0.0, 4.76)


@pytest.mark.parametrize(
    "name", ["photo.jpg", "@@@17@T@40@-79@pano@@@@@@@@.jpg", "@abc@12@17@T@@@@@@@@@@@.jpg", "@nan@1@@.jpg", "@1.jpg"]
)
def test_parse_vg_filename__missing_or_non_numeric_utm_raises_naming_the_file(name):
    with pytest.raises(DataError) as info:
        parse_vg_filename(f"/some/dir/{name}")
    message = str(info.value)
    assert name in message and "\n" not in message


def test_read_vg_split__finds_png_jpeg_any_case_recursively_sorted_by_relative_path(tmp_path):
    names = [vg_name(10, 20, "p1"), vg_name(11, 21, "p1", ".PNG"), vg_name(12, 22, "p2", ".jpeg")]
    make_split(
        tmp_path, "test",
        database=[("b", names[0]), ("a", names[1]), ("", names[2])],
        queries=[("", vg_name(10, 20, ext=".JPG"))],
    )
    touch(tmp_path / "images" / "test" / "database" / "notes.txt")
    split = read_vg_split(tmp_path, "test")
    relative = [str(Path(p).relative_to(tmp_path / "images" / "test" / "database")) for p in split.database_paths]
    assert relative == sorted(relative) and len(relative) == 3
    assert all(Path(p).is_absolute() for p in split.database_paths)
    expected = dict(zip(names, [(10, 20), (11, 21), (12, 22)]))
    np.testing.assert_array_equal(split.database_utm, [expected[Path(p).name] for p in split.database_paths])
    assert split.database_utm.dtype == np.float64 and split.query_utm.shape == (1, 2)
    assert split.dataset == tmp_path.name and split.split == "test"
    # place ids group by pano_id
    ids = dict(zip((Path(p).name for p in split.database_paths), split.database_place_ids))
    assert ids[names[0]] == ids[names[1]] != ids[names[2]]


def test_read_vg_split__without_pano_ids_has_no_place_ids_and_accepts_the_images_folder(tmp_path):
    make_split(tmp_path, "val", database=[("", vg_name(1, 2))], queries=[("", vg_name(1, 3))])
    split = read_vg_split(tmp_path / "images", "val", name="mine")
    assert split.database_place_ids is None
    assert split.dataset == "mine" and split.num_database == 1 and split.num_queries == 1


def test_read_vg_split__missing_split_names_the_folder_and_lists_existing_splits(tmp_path):
    make_split(tmp_path, "test", database=[("", vg_name(1, 2))], queries=[("", vg_name(1, 3))])
    make_split(tmp_path, "train", database=[("", vg_name(1, 2))], queries=[("", vg_name(1, 3))])
    with pytest.raises(DataError) as info:
        read_vg_split(tmp_path, "val")
    message = str(info.value)
    assert str(tmp_path / "images" / "val") in message and "train, test" in message


def test_read_vg_split__empty_queries_names_the_folder(tmp_path):
    make_split(tmp_path, "test", database=[("", vg_name(1, 2))], queries=[])
    (tmp_path / "images" / "test" / "queries").mkdir(parents=True)
    touch(tmp_path / "images" / "test" / "queries" / "readme.txt")
    with pytest.raises(DataError, match="queries"):
        read_vg_split(tmp_path, "test")


def test_read_vg_split__bad_file_name_raises_naming_the_file(tmp_path):
    make_split(tmp_path, "test", database=[("", vg_name(1, 2)), ("", "IMG_0001.jpg")], queries=[("", vg_name(1, 3))])
    with pytest.raises(DataError, match="IMG_0001.jpg"):
        read_vg_split(tmp_path, "test")


def test_list_vg_splits__canonical_order_then_others(tmp_path):
    for split in ("test", "extra", "train", "val"):
        make_split(tmp_path, split, database=[("", vg_name(1, 2))], queries=[("", vg_name(1, 3))])
    (tmp_path / "images" / "not_a_split").mkdir()
    assert list_vg_splits(tmp_path) == ["train", "val", "test", "extra"]


def test_list_vg_splits__non_vg_folder_raises(tmp_path):
    (tmp_path / "something").mkdir()
    with pytest.raises(DataError, match="not a VG data set folder"):
        list_vg_splits(tmp_path)
