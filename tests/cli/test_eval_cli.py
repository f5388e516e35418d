"""sfrs-eval end to end on the tiny city, and its one-line errors (exit code 2)."""
import json

import h5py
import numpy as np
import pytest
import scipy.io
from click.testing import CliRunner
from PIL import Image

from sfrs.cli.eval import main as eval_main
from tests.tiny import TINY_MODEL

SETS = [arg for item in TINY_MODEL for arg in ("--set", item)]


def run(args):
    result = CliRunner().invoke(eval_main, args + ["--no-progress"], catch_exceptions=False)
    return result.exit_code, result.output


def assert_one_line_error(code, output, *fragments):
    assert code == 2, output
    errors = [line for line in output.splitlines() if "error:" in line]
    assert len(errors) == 1, output
    assert "Traceback" not in output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_untrained_model__report_is_complete_and_seeded(tiny_city_root, tmp_path):
    code, out = run(["--dataset", "synthetic:tiny", "--json", str(tmp_path / "a.json"),
                     "--save-descriptors", str(tmp_path / "d.h5")] + SETS)
    assert code == 0, out
    report = json.loads((tmp_path / "a.json").read_text())
    for key in ("dataset", "split", "num_database", "num_queries", "queries_without_positive",
                "threshold_m", "recall", "descriptor_dim", "seconds"):
        assert key in report
    assert report["dataset"] == "synthetic:tiny" and report["split"] == "test" and report["threshold_m"] == 25.0
    assert set(report["recall"]) == {"1", "5", "10", "20"}
    with h5py.File(tmp_path / "d.h5") as handle:
        assert handle["database"].shape == (report["num_database"], report["descriptor_dim"])
        assert handle["queries"].dtype == np.float32 and handle["query_utm"].shape == (report["num_queries"], 2)
        assert len(handle["database_paths"]) == report["num_database"]
    code, _ = run(["--dataset", "synthetic:tiny", "--json", str(tmp_path / "b.json")] + SETS)
    assert json.loads((tmp_path / "b.json").read_text())["recall"] == report["recall"]


def test_pca__is_fitted_saved_and_reused(tiny_city_root, tmp_path):
    model_path = tmp_path / "pca.pt"
    code, out = run(["--dataset", "synthetic:tiny", "--pca", "16", "--pca-output", str(model_path),
                     "--json", str(tmp_path / "p.json")] + SETS)
    assert code == 0, out
    assert json.loads((tmp_path / "p.json").read_text())["descriptor_dim"] == 16
    code, out = run(["--dataset", "synthetic:tiny", "--checkpoint", str(model_path), "--pca", "16"])
    assert code == 0 and "reused" in out


def write_vg(root, split="test", names_db=None, names_q=None):
    for kind, names in (("database", names_db), ("queries", names_q)):
        folder = root / "images" / split / kind
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            Image.new("RGB", (32, 24), (100, 120, 140)).save(folder / name)


def test_corrupt_image__one_line_naming_it(tiny_city_root, tmp_path):
    root = tmp_path / "ds"
    write_vg(root, names_db=["@0@0@.jpg", "@5@0@.jpg"], names_q=["@1@0@.jpg"])
    (root / "images/test/database/@5@0@.jpg").write_bytes(b"garbage")
    code, out = run(["--dataset", str(root)] + SETS)
    assert_one_line_error(code, out, "@5@0@.jpg")


def test_name_without_utm__one_line(tmp_path):
    root = tmp_path / "ds"
    write_vg(root, names_db=["photo.jpg"], names_q=["@1@0@.jpg"])
    code, out = run(["--dataset", str(root)] + SETS)
    assert_one_line_error(code, out, "photo.jpg")


def test_empty_split__one_line(tmp_path):
    root = tmp_path / "ds"
    write_vg(root, names_db=["@0@0@.jpg"], names_q=[])
    code, out = run(["--dataset", str(root)] + SETS)
    assert_one_line_error(code, out, "queries")


def test_mat_without_dbstruct__one_line(tmp_path):
    scipy.io.savemat(tmp_path / "x.mat", {"other": np.zeros(3)})
    code, out = run(["--dataset", str(tmp_path / "x.mat"), "--images-root", str(tmp_path)] + SETS)
    assert_one_line_error(code, out, "x.mat", "dbStruct")


def test_mat_with_missing_image__one_line(tmp_path):
    db_struct = {
        "whichSet": "test", "dbImageFns": np.array([["000/a.jpg"]], dtype=object).T,
        "utmDb": np.array([[0.0], [0.0]]), "qImageFns": np.array([["000/q.jpg"]], dtype=object).T,
        "utmQ": np.array([[1.0], [0.0]]), "numImages": 1, "numQueries": 1,
        "posDistThr": 25, "posDistSqThr": 625, "nonTrivPosDistSqThr": 100,
    }
    scipy.io.savemat(tmp_path / "t.mat", {"dbStruct": db_struct})
    code, out = run(["--dataset", str(tmp_path / "t.mat"), "--images-root", str(tmp_path)] + SETS)
    assert_one_line_error(code, out, "a.jpg")


def test_bad_checkpoint__one_line(tmp_path, tiny_city_root):
    (tmp_path / "c.pt").write_bytes(b"no")
    code, out = run(["--dataset", "synthetic:tiny", "--checkpoint", str(tmp_path / "c.pt")])
    assert_one_line_error(code, out, "c.pt")


def test_bad_config_key__one_line(tiny_city_root):
    code, out = run(["--dataset", "synthetic:tiny", "--set", "model.colour=red"])
    assert_one_line_error(code, out, "model.colour")


def test_debug__shows_the_traceback(tmp_path):
    root = tmp_path / "ds"
    write_vg(root, names_db=["photo.jpg"], names_q=["@1@0@.jpg"])
    with pytest.raises(Exception, match="photo.jpg"):
        CliRunner().invoke(eval_main, ["--dataset", str(root), "--debug"] + SETS, catch_exceptions=False)


def test_recall_at__comes_from_the_config_unless_the_flag_is_given(tiny_city_root, tmp_path):
    code, out = run(["--dataset", "synthetic:tiny", "--set", "eval.recall_at=[1, 3]", "--json", str(tmp_path / "c.json")]
                    + SETS)
    assert code == 0, out
    assert set(json.loads((tmp_path / "c.json").read_text())["recall"]) == {"1", "3"}
    code, out = run(["--dataset", "synthetic:tiny", "--recall-at", "2", "--json", str(tmp_path / "f.json")] + SETS)
    assert code == 0, out
    assert set(json.loads((tmp_path / "f.json").read_text())["recall"]) == {"2"}


@pytest.mark.parametrize("extra, named", [
    (["--pretrained", "none"], "--pretrained"),
    (["--seed", "3"], "--seed"),
    (["--set", "model.head=gem"], "--set model.head"),
])
def test_checkpoint__options_of_an_untrained_model_are_refused_not_dropped(tiny_checkpoint, tiny_city_root, extra, named):
    code, out = run(["--checkpoint", str(tiny_checkpoint), "--dataset", "synthetic:tiny", *extra])
    assert_one_line_error(code, out, named, "the model comes from --checkpoint")


def test_output__labelled_mode_writes_the_report_and_grids_there(tiny_checkpoint, tiny_city_root, tmp_path):
    output = tmp_path / "eval"
    code, out = run(["--checkpoint", str(tiny_checkpoint), "--dataset", "synthetic:tiny", "--output", str(output),
                     "--visualize", "2"])
    assert code == 0, out
    report = json.loads((output / "report.json").read_text())
    assert report["dataset"] == "synthetic:tiny" and set(report["recall"]) == {"1", "5", "10", "20"}
    assert sorted(p.name for p in output.glob("*.png")) == ["report_examples.png", "report_failures.png", "report_map.png"]
