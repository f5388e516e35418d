"""NetVLAD .mat reader on files written with scipy.io.savemat in the real nested layout."""
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from sfrs.data.formats.netvlad_mat import read_netvlad_mat, split_from_db_struct
from sfrs.errors import DataError

PITTS_DB = [
    "000/000000_pitch1_yaw1.jpg",
    "000/000000_pitch1_yaw2.jpg",
    "000/000001_pitch1_yaw1.jpg",
    "001/000000_pitch2_yaw1.jpg",  # same prefix, other folder: another place
]
PITTS_Q = ["000/000010_pitch1_yaw1.jpg", "001/000011_pitch1_yaw3.jpg"]


def cell(names):
    """A MATLAB N x 1 cell of char arrays, as NetVLAD stores file names."""
    return np.array(list(names), dtype=object).reshape(-1, 1)


def touch_all(root: Path, names):
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def write_mat(path: Path, fields: dict) -> Path:
    scipy.io.savemat(str(path), {"dbStruct": fields})
    return path


def pitts_fields(db=PITTS_DB, q=PITTS_Q, which="test"):
    rng = np.random.default_rng(0)
    return {
        "whichSet": which,
        "dbImageFns": cell(db),
        "utmDb": rng.uniform(0, 1000, size=(2, len(db))),
        "qImageFns": cell(q),
        "utmQ": rng.uniform(0, 1000, size=(2, len(q))),
        "numImages": float(len(db)),
        "numQueries": float(len(q)),
        "posDistThr": 25.0,
        "posDistSqThr": 625.0,
        "nonTrivPosDistSqThr": 100.0,
    }


@pytest.fixture
def pitts(tmp_path):
    root = tmp_path / "pitts"
    touch_all(root / "images", PITTS_DB)
    touch_all(root / "queries_real", PITTS_Q)
    fields = pitts_fields()
    return write_mat(tmp_path / "pitts30k_test.mat", fields), root, fields


def test_read_netvlad_mat__pitts_layout_paths_utm_place_ids(pitts):
    mat, root, fields = pitts
    split = read_netvlad_mat(mat, root)
    assert split.dataset == "pitts30k" and split.split == "test"
    assert split.database_paths == [str((root / "images" / n).absolute()) for n in PITTS_DB]
    assert split.query_paths == [str((root / "queries_real" / n).absolute()) for n in PITTS_Q]
    np.testing.assert_array_equal(split.database_utm, fields["utmDb"].T)
    np.testing.assert_array_equal(split.query_utm, fields["utmQ"].T)
    ids = split.database_place_ids
    assert ids[0] == ids[1] and len({ids[0], ids[2], ids[3]}) == 3
    assert "pitts30k_test.mat" in split.protocol and "test" in split.protocol


def test_read_netvlad_mat__tokyotm_timestamps_between_utm_fields_are_read_by_name(tmp_path):
    root = tmp_path / "tokyoTM"
    touch_all(root / "images", PITTS_DB)
    touch_all(root, PITTS_Q)  # no queries_real/, query/ or queries/: queries live under the root
    base = pitts_fields(which="val")
    fields = {
        "whichSet": "val",
        "dbImageFns": base["dbImageFns"],
        "utmDb": base["utmDb"],
        "dbTimeStamp": np.array([[201001, 201001, 201302, 201302]], dtype=np.float64),
        "qImageFns": base["qImageFns"],
        "utmQ": base["utmQ"],
        "qTimeStamp": np.array([[201403, 201505]], dtype=np.float64),
        "numImages": base["numImages"],
        "numQueries": base["numQueries"],
        "posDistThr": 25.0,
    }
    mat = write_mat(tmp_path / "tokyoTM_val.mat", fields)
    split = read_netvlad_mat(mat, root)
    assert split.dataset == "tokyoTM" and split.split == "val"
    np.testing.assert_array_equal(split.query_utm, base["utmQ"].T)
    np.testing.assert_array_equal(split.query_attributes["timestamp"], [201403, 201505])
    assert split.query_paths[0] == str((root / PITTS_Q[0]).absolute())


@pytest.mark.parametrize(
    "options",
    [{"squeeze_me": True}, {"squeeze_me": True, "struct_as_record": False}, {"simplify_cells": True}, {}],
    ids=["squeeze_me", "mat_struct", "simplify_cells", "default"],
)
@pytest.mark.parametrize("num_queries", [1, 2])
def test_split_from_db_struct__other_loadmat_shapes_give_the_same_split(pitts, options, num_queries):
    mat, root, fields = pitts
    fields = pitts_fields(q=PITTS_Q[:num_queries])
    write_mat(mat, fields)
    reference = read_netvlad_mat(mat, root)
    loaded = scipy.io.loadmat(str(mat), **options)["dbStruct"]
    split = split_from_db_struct(loaded, mat, root)
    assert split.database_paths == reference.database_paths and split.query_paths == reference.query_paths
    assert split.query_utm.shape == (num_queries, 2)
    np.testing.assert_array_equal(split.query_utm, reference.query_utm)
    np.testing.assert_array_equal(split.database_place_ids, reference.database_place_ids)


def test_read_netvlad_mat__char_matrix_file_names_are_trimmed(pitts):
    mat, root, fields = pitts
    names = ["000/000000_pitch1_yaw1.jpg", "000/000001_pitch1_yaw1.jpg", "01/000000_pitch2_yaw1.jpg"]
    touch_all(root / "images", names)
    fields = dict(fields, dbImageFns=np.array(names), utmDb=fields["utmDb"][:, :3], numImages=3.0)
    split = read_netvlad_mat(write_mat(mat, fields), root)
    assert [Path(p).name for p in split.database_paths] == [Path(n).name for n in names]


def test_read_netvlad_mat__tokyo247_png_database_and_query_folder(tmp_path):
    root = tmp_path / "tokyo247"
    db = ["03814/381426_000.jpg", "03814/381426_001.jpg", "03815/381427_000.jpg"]
    touch_all(root / "images", [n.replace(".jpg", ".png") for n in db])
    touch_all(root / "query", ["00001.jpg", "00002.jpg"])
    fields = pitts_fields(db=db, q=["00001.jpg", "00002.jpg"])
    split = read_netvlad_mat(write_mat(tmp_path / "tokyo247.mat", fields), root)
    assert all(p.endswith(".png") for p in split.database_paths)
    assert split.query_paths[0] == str((root / "query" / "00001.jpg").absolute())
    ids = split.database_place_ids
    assert ids[0] == ids[1] != ids[2]


def test_read_netvlad_mat__names_already_starting_with_the_image_folder_are_taken_as_given(tmp_path):
    root = tmp_path / "tokyo247"
    db = ["03814/381426_000.jpg", "images/03815/381427_000.jpg"]  # the second one spelled from the root
    q = ["queries/00001.jpg", "queries/sub/00002.jpg"]
    touch_all(root / "images", ["03814/381426_000.png", "03815/381427_000.jpg"])
    touch_all(root, q)  # root/queries/..., found as the query folder too
    split = read_netvlad_mat(write_mat(tmp_path / "tokyo247_test.mat", pitts_fields(db=db, q=q)), root)
    assert split.query_paths == [str((root / n).absolute()) for n in q]
    assert split.database_paths == [str((root / "images" / "03814/381426_000.png").absolute()),
                                    str((root / db[1]).absolute())]


def test_read_netvlad_mat__missing_images_names_the_first_and_the_count(pitts):
    mat, root, _ = pitts
    (root / "images" / PITTS_DB[1]).unlink()
    (root / "queries_real" / PITTS_Q[1]).unlink()
    with pytest.raises(DataError) as info:
        read_netvlad_mat(mat, root)
    message = str(info.value)
    assert "2 of 6 images missing" in message and PITTS_DB[1].split("/")[1] in message
    assert "\n" not in message


def test_read_netvlad_mat__without_dbstruct_lists_the_keys(tmp_path):
    mat = tmp_path / "other.mat"
    scipy.io.savemat(str(mat), {"foo": np.zeros(3), "bar": "x"})
    with pytest.raises(DataError, match=r"other.mat: no 'dbStruct'.*keys found: bar, foo"):
        read_netvlad_mat(mat, tmp_path)


def test_read_netvlad_mat__inconsistent_fields_raise(pitts):
    mat, root, fields = pitts
    write_mat(mat, dict(fields, utmQ=fields["utmQ"][:, :1]))
    with pytest.raises(DataError, match=r"utmQ has shape \(2, 1\), expected \(2, 2\)"):
        read_netvlad_mat(mat, root)
    write_mat(mat, dict(fields, numImages=99.0))
    with pytest.raises(DataError, match="numImages is 99"):
        read_netvlad_mat(mat, root)
    missing = dict(fields)
    del missing["qImageFns"]
    write_mat(mat, missing)
    with pytest.raises(DataError, match="no field 'qImageFns'"):
        read_netvlad_mat(mat, root)


def test_read_netvlad_mat__not_a_mat_file_raises(tmp_path):
    bad = tmp_path / "bad.mat"
    bad.write_text("not matlab")
    with pytest.raises(DataError, match="bad.mat: cannot read MATLAB file"):
        read_netvlad_mat(bad, tmp_path)
