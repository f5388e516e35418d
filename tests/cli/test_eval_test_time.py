"""sfrs-eval and sfrs-eval-all at test time: each query-view method, image sizes, re-ranking
and precision run on the tiny city, and the report's protocol (and its printed line) names
them; bad values are one-line errors with exit code 2."""
import json
import os

import pytest
from click.testing import CliRunner

from sfrs.cli.eval import main as eval_main
from sfrs.cli.eval_all import main as eval_all_main


def sfrs_eval(checkpoint, tmp_path, *extra):
    path = tmp_path / "report.json"
    result = CliRunner().invoke(eval_main, ["--checkpoint", str(checkpoint), "--dataset", "synthetic:tiny",
                                            "--json", str(path), "--batch-size", "16", "--no-progress", *extra],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(path.read_text()), result.output


@pytest.mark.parametrize("method", ["single", "central_crop", "five_crops", "nearest_crop", "maj_voting"])
def test_each_method__runs_and_the_report_names_it(tiny_checkpoint, tmp_path, method):
    report, output = sfrs_eval(tiny_checkpoint, tmp_path, "--test-method", method)
    protocol = report["evaluation_protocol"]
    assert protocol["test_method"] == method
    assert (protocol["precision"], protocol["rerank"], protocol["image_size"]) == ("fp32", None, None)
    assert f"test method {method}" in output
    assert report["num_queries"] == 40 and set(report["recall"]) == {"1", "5", "10", "20"}
    recalls = [report["recall"][n] for n in ("1", "5", "10", "20")]
    assert recalls == sorted(recalls)
    if method in ("five_crops", "nearest_crop", "maj_voting"):
        assert "five 48x48 crops" in protocol["query_images"]  # model input 48x64: squares of 48
    if method == "maj_voting":
        assert protocol["majority_weight"] == 0.01


def test_image_size_rerank_precision__recorded_and_printed(tiny_checkpoint, tmp_path):
    report, output = sfrs_eval(tiny_checkpoint, tmp_path, "--image-size", "40,56", "--rerank", "--rerank-top", "30",
                               "--rerank-k1", "6", "--precision", "bf16", "--predictions", str(tmp_path / "p.csv"))
    protocol = report["evaluation_protocol"]
    assert protocol["image_size"] == [40, 56] and protocol["database_images"] == "resized to 40x56"
    assert protocol["rerank"] == {"top": 30, "k1": 6, "k2": 1, "lambda": 0.1, "distance": "reference"}
    assert protocol["precision"] == "bf16"
    assert "k-reciprocal re-ranking of the top 30 (k1 6, k2 1, lambda 0.1" in output and "; bf16" in output


def test_resize_shorter_side__database_and_crops_follow_it(tiny_checkpoint, tmp_path):
    report, _ = sfrs_eval(tiny_checkpoint, tmp_path, "--resize", "shorter_side:40", "--test-method", "central_crop")
    protocol = report["evaluation_protocol"]
    assert protocol["resize"] == "shorter_side:40"
    assert protocol["database_images"] == "shorter side 40 px, aspect kept"
    assert protocol["query_images"].endswith("central 40x40 crop")


@pytest.mark.parametrize("args, message", [
    (["--test-method", "ten_crops"], "--test-method must be one of single, central_crop, five_crops"),
    (["--image-size", "480"], "--image-size must be H,W"),
    (["--resize", "480"], "--resize must be shorter_side:N"),
    (["--precision", "fp8"], "--precision must be one of fp32, bf16, fp16"),
    (["--set", "eval.precision=fp8"], "eval.precision must be one of fp32, bf16, fp16"),
    (["--test-method", "maj_voting", "--save-descriptors", "d.h5"], "--save-descriptors writes one descriptor per"),
    (["--rerank", "--rerank-k2", "0"], "--rerank-k2 must be an integer in [1, k1 + 1 = 21]"),
    (["--rerank-top", "5"], "--rerank-top without --rerank"),
    (["--rerank", "--test-method", "nearest_crop"], "--rerank needs one descriptor per query"),
    (["--image-size", "40,40", "--resize", "shorter_side:40"], "--image-size and --resize cannot be used together"),
    (["--query-resize", "64", "--test-method", "five_crops"], "--query-resize 64 and --test-method five_crops"),
])
def test_bad_values__exit_2_with_one_line(tiny_checkpoint, args, message):
    result = CliRunner().invoke(eval_main, ["--checkpoint", str(tiny_checkpoint), "--dataset", "synthetic:tiny",
                                            "--no-progress", *args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("sfrs-eval: error: ") and message in lines[-1]
    assert not any("Traceback" in line for line in lines)


def test_unlabelled_mode__refuses_test_time_options(tiny_checkpoint, tiny_city_root):
    folder = str(tiny_city_root / "images" / "test" / "queries")
    result = CliRunner().invoke(eval_main, ["--checkpoint", str(tiny_checkpoint), "--queries", folder,
                                            "--database", folder, "--test-method", "five_crops", "--no-progress"])
    assert result.exit_code == 2
    assert "--test-method cannot be used with --queries/--database" in result.output


def test_eval_all__method_replaces_the_tokyo_query_resize_and_every_report_says_so(tiny_checkpoint, tiny_city_root,
                                                                                   tmp_path):
    root = tmp_path / "datasets"
    (root / "tokyo247" / "images").mkdir(parents=True)
    os.symlink(tiny_city_root / "images" / "test", root / "tokyo247" / "images" / "test")
    result = CliRunner().invoke(eval_all_main, [
        "--checkpoint", str(tiny_checkpoint), "--datasets-root", str(root), "--output", str(tmp_path / "out"),
        "--batch-size", "16", "--no-progress", "--test-method", "five_crops", "--precision", "bf16",
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    protocol = report["results"]["tokyo247"]["evaluation_protocol"]
    assert (protocol["test_method"], protocol["precision"], protocol["query_resize"]) == ("five_crops", "bf16", None)
    assert protocol["sources"]["query_resize"] == "replaced by test method five_crops"
    assert "query resize 640 of the conventions of tokyo247 replaced by test method five_crops" in \
        report["results"]["tokyo247"]["notes"]
    assert "test method five_crops" in result.output
    assert report["options"]["test_time"]["method"] == "five_crops"
    assert "- test time: method `five_crops`, images at the model's input size, bf16" in \
        (tmp_path / "out" / "report.md").read_text()
