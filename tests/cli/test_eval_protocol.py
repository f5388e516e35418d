"""sfrs-eval and the cross-dataset tool evaluate a data set with one protocol: its conventions
(Tokyo 24/7: NMS by panorama, queries with a shorter side of 640) or the default one, unless
an option overrides them, and every report says which."""
import csv
import json
import os

import pytest
from click.testing import CliRunner

from sfrs.cli.eval import main as eval_main
from tools.eval_all import main as eval_all_main


@pytest.fixture(scope="module")
def datasets_root(tiny_city_root, tmp_path_factory):
    """tokyo247 and my_city: VG folders linking the tiny city's test split (pano ids in the names)."""
    root = tmp_path_factory.mktemp("datasets")
    for name in ("tokyo247", "my_city"):
        (root / name / "images").mkdir(parents=True)
        os.symlink(tiny_city_root / "images" / "test", root / name / "images" / "test")
    return root


def invoke(command, args):
    result = CliRunner().invoke(command, args + ["--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def sfrs_eval(checkpoint, dataset, json_path, *extra):
    result = invoke(eval_main, ["--checkpoint", str(checkpoint), "--dataset", str(dataset), "--json", str(json_path),
                                "--batch-size", "16", *extra])
    return json.loads(json_path.read_text()), result.output


def eval_all(checkpoint, root, output, *extra):
    invoke(eval_all_main, ["--checkpoint", str(checkpoint), "--datasets-root", str(root), "--output", str(output),
                           "--batch-size", "16", *extra])
    return json.loads((output / "report.json").read_text()), list(csv.DictReader((output / "report.csv").open()))


def test_sfrs_eval_and_eval_all__same_tokyo247_conventions_and_recall(tiny_checkpoint, datasets_root, tmp_path):
    single, output = sfrs_eval(tiny_checkpoint, datasets_root / "tokyo247", tmp_path / "tokyo.json")
    assert (single["nms"], single["query_resize"], single["threshold_m"]) == (True, 640, 25.0)
    assert set(single["evaluation_protocol"]["sources"].values()) == {"conventions of tokyo247"}
    assert "protocol: positives within 25 m (conventions of tokyo247); spatial NMS" in output

    report, rows = eval_all(tiny_checkpoint, datasets_root, tmp_path / "all", "--datasets", "tokyo247")
    entry = report["results"]["tokyo247"]
    assert entry["recall"] == single["recall"]
    assert entry["evaluation_protocol"] == single["evaluation_protocol"]
    assert (rows[0]["conventions"], rows[0]["overrides"], rows[0]["query_resize"]) == ("tokyo247", "", "640")


def test_sfrs_eval__overrides_are_applied_and_reported_as_user_overrides(tiny_checkpoint, datasets_root, tmp_path):
    report, _ = sfrs_eval(tiny_checkpoint, datasets_root / "tokyo247", tmp_path / "o.json",
                          "--no-nms", "--no-query-resize", "--threshold", "30")
    assert (report["nms"], report["query_resize"], report["threshold_m"]) == (False, None, 30.0)
    assert set(report["evaluation_protocol"]["sources"].values()) == {"user override"}
    plain, _ = sfrs_eval(tiny_checkpoint, datasets_root / "my_city", tmp_path / "p.json", "--nms", "--query-resize", "80")
    assert (plain["nms"], plain["query_resize"]) == (True, 80)
    assert plain["evaluation_protocol"]["sources"] == {
        "threshold_m": "default protocol", "nms": "user override", "query_resize": "user override"}


def test_sfrs_eval__query_resize_and_no_query_resize_together_is_one_line(datasets_root):
    result = CliRunner().invoke(eval_main, ["--dataset", str(datasets_root / "my_city"), "--query-resize", "80",
                                            "--no-query-resize"])
    assert result.exit_code == 2 and "cannot be used together" in result.output and "Traceback" not in result.output


def test_eval_all__any_vg_folder_is_evaluated_with_the_default_protocol_by_name_or_path(
    tiny_checkpoint, datasets_root, tmp_path
):
    report, rows = eval_all(tiny_checkpoint, datasets_root, tmp_path / "all")
    assert sorted(report["results"]) == ["my_city", "tokyo247"]
    by_name = {row["dataset"]: row for row in rows}
    assert (by_name["my_city"]["conventions"], by_name["my_city"]["nms"], by_name["my_city"]["query_resize"]) == (
        "default", "False", "")
    assert by_name["tokyo247"]["conventions"] == "tokyo247"
    markdown = (tmp_path / "all" / "report.md").read_text()
    assert "- **my_city**: positives within 25 m (default protocol); no NMS (default protocol)" in markdown

    by_folder, _ = eval_all(tiny_checkpoint, datasets_root, tmp_path / "one", "--datasets", "my_city")
    by_path, _ = eval_all(tiny_checkpoint, tmp_path, tmp_path / "path", "--datasets", str(datasets_root / "my_city"))
    assert list(by_folder["results"]) == list(by_path["results"]) == ["my_city"]
    assert by_path["results"]["my_city"]["recall"] == report["results"]["my_city"]["recall"]
