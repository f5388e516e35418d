"""tools/eval_all.py on a datasets root holding two tiny benchmarks and a broken one."""
import csv
import json
import os

import pytest
import torch
from click.testing import CliRunner

import sfrs.retrieval.stream as stream_module
from tools.eval_all import main as eval_all_main

PNG_MAGIC = b"\x89PNG"


@pytest.fixture(scope="module")
def datasets_root(tiny_city_root, tmp_path_factory):
    """pitts30k (test + train, for PCA) and st_lucia (test) link the tiny city's splits;
    tokyo247 is broken: its image names carry no UTM."""
    root = tmp_path_factory.mktemp("datasets")
    for name, splits in (("pitts30k", ("test", "train")), ("st_lucia", ("test",))):
        (root / name / "images").mkdir(parents=True)
        for split in splits:
            os.symlink(tiny_city_root / "images" / split, root / name / "images" / split)
    for kind in ("database", "queries"):
        folder = root / "tokyo247" / "images" / "test" / kind
        folder.mkdir(parents=True)
        (folder / "photo.jpg").write_bytes((next((tiny_city_root / "images/test/queries").iterdir())).read_bytes())
    return root


def run(args):
    result = CliRunner().invoke(eval_all_main, args + ["--no-progress"], catch_exceptions=False)
    return result


def png(path):
    return path.is_file() and path.stat().st_size > 100 and path.read_bytes()[:4] == PNG_MAGIC


def test_eval_all__reports_successes_skips_and_failures_and_reuses_descriptors(
    tiny_checkpoint, datasets_root, tmp_path, monkeypatch
):
    out = tmp_path / "out"
    args = ["--checkpoint", str(tiny_checkpoint), "--datasets-root", str(datasets_root), "--output", str(out),
            "--datasets", "pitts30k,st_lucia,tokyo247,pitts250k", "--pca", "8", "--visualize", "2",
            "--compare", "--batch-size", "16"]
    result = run(args)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("eval_all: error: tokyo247:") and "photo.jpg" in errors[0]
    assert "Traceback" not in result.output

    report = json.loads((out / "report.json").read_text())
    assert list(report["results"]) == ["pitts30k", "st_lucia"]
    assert report["skipped"] == ["pitts250k"] and list(report["failed"]) == ["tokyo247"]
    assert "fitted" in report["pca"]
    entry = report["results"]["pitts30k"]
    for key in ("dataset", "split", "protocol", "num_database", "num_queries", "queries_without_positive",
                "threshold_m", "recall", "descriptor_dim", "seconds", "index", "nms", "query_resize", "checkpoint"):
        assert key in entry, key
    assert entry["descriptor_dim"] == 8 and entry["num_database"] == 80 and entry["num_queries"] == 40
    assert entry["recall"] == report["results"]["st_lucia"]["recall"]  # the same images

    rows = list(csv.DictReader((out / "report.csv").open()))
    assert [(r["dataset"], r["status"]) for r in rows] == [("pitts30k", "ok"), ("st_lucia", "ok"), ("tokyo247", "failed")]
    assert float(rows[0]["R@1"]) == pytest.approx(entry["recall"]["1"], abs=0.01)
    markdown = (out / "report.md").read_text()
    skipped = markdown.split("## Skipped")[1].split("## Failed")[0]
    assert "pitts250k" in skipped and "tokyo247" in markdown.split("## Failed")[1]
    assert "| pitts30k |" in markdown and "| st_lucia |" in markdown

    for name in ("recall_at_n.png", "r1_vs_published.png", "pitts30k_examples.png", "pitts30k_failures.png",
                 "st_lucia_examples.png"):
        assert png(out / name), name
    descriptor_files = sorted((out / "descriptors").iterdir())
    assert [p.name for p in descriptor_files] == [
        "pitts30k_database.h5", "pitts30k_queries.h5", "st_lucia_database.h5", "st_lucia_queries.h5"]
    mtimes = {p: p.stat().st_mtime_ns for p in descriptor_files}

    def no_extraction(*args, **kwargs):
        raise AssertionError("descriptors should have been reused")

    monkeypatch.setattr(stream_module, "extract_descriptors", no_extraction)
    rerun = run(args)
    assert rerun.exit_code == 2, rerun.output
    assert "loaded from" in json.loads((out / "report.json").read_text())["pca"]  # PCA fitted once
    assert {p: p.stat().st_mtime_ns for p in descriptor_files} == mtimes
    assert json.loads((out / "report.json").read_text())["results"]["pitts30k"]["recall"] == entry["recall"]


def test_eval_all__nothing_missing_or_broken_exits_0_and_lists_unrequested_nothing(tiny_checkpoint, datasets_root, tmp_path):
    result = run(["--checkpoint", str(tiny_checkpoint), "--datasets-root", str(datasets_root),
                  "--output", str(tmp_path), "--datasets", "st_lucia", "--index", "HNSW32"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert list(report["results"]) == ["st_lucia"] and report["skipped"] == [] and report["failed"] == {}
    assert report["results"]["st_lucia"]["index"] == "HNSW32"


def test_eval_all__checkpoint_of_another_architecture_is_one_line(tiny_checkpoint, datasets_root, tmp_path):
    payload = torch.load(tiny_checkpoint, weights_only=False)
    payload["model_config"].update(head="gem", head_options={})  # NetVLAD weights, GeM described
    torch.save(payload, tmp_path / "other.pt")
    result = run(["--checkpoint", str(tmp_path / "other.pt"), "--datasets-root", str(datasets_root),
                  "--output", str(tmp_path / "out")])
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "other.pt" in errors[0] and "gem" in errors[0] and "Traceback" not in result.output


def test_eval_all__unknown_dataset_name_is_one_line(tiny_checkpoint, datasets_root, tmp_path):
    result = run(["--checkpoint", str(tiny_checkpoint), "--datasets-root", str(datasets_root),
                  "--output", str(tmp_path), "--datasets", "pits30k"])
    assert result.exit_code == 2 and "unknown data set 'pits30k'" in result.stderr
