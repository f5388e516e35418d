"""sfrs-report's library on planted run folders and a planted sweep summary: configuration
differences, statistics against numpy, incomplete runs, transfer tables, figures, PDF."""
import copy
import json

import numpy as np
import pytest
import yaml

from sfrs.errors import DataError
from sfrs.reports import ReportOptions, build_entries, config_differences, flatten_config, read_source, write_run_report
from sfrs.reports.run_sources import read_sources

PNG_MAGIC = b"\x89PNG"

BASE_CONFIG = {
    "data": {"dataset": "synthetic:tiny", "batch_size": 16},
    "model": {"backbone": "small", "head": "netvlad", "head_options": {"clusters": 8}, "input_size": [48, 64]},
    "optim": {"optimizer": "adam", "lr": 0.001},
    "train": {"generations": [{"epochs": 1, "soft_weight": 0.0}, {"epochs": 1, "soft_weight": 0.5}],
              "test_split": "test"},
    "seed": 0,
}


def recall(r1, r5=None, r10=None):
    r5 = r1 + 10 if r5 is None else r5
    r10 = r5 + 10 if r10 is None else r10
    return {"1": float(r1), "5": float(r5), "10": float(r10), "20": float(min(r10 + 5, 100))}


def plant_run(folder, config, gen_test_r1, *, complete=True, best_test_r1=None, generations=2, losses=None):
    """A run folder as sfrs-train writes it: config.yaml and results.json (2 epochs a generation)."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    gens = [{"generation": g, "epochs": 2, "soft_weight": config["train"]["generations"][g]["soft_weight"],
             "val": recall(gen_test_r1[g] - 3), "test": recall(gen_test_r1[g]), "seconds": 1.0, "terms": {"hard": 1.0}}
            for g in range(generations)]
    epochs = [{"generation": g, "epoch": e, "steps": 3, "val": recall(gen_test_r1[g] - 4 + e),
               "losses": losses or {"hard": 1.0 / (1 + g + e), "total": 1.0 / (1 + g + e)}, "seconds": 0.5}
              for g in range(generations) for e in range(2)]
    best = {"generation": generations - 1, "epoch": 1, "val": recall(gen_test_r1[generations - 1] - 2),
            "metric": "val R@5", "checkpoint": str(folder / "checkpoints/x.pt")}
    if best_test_r1 is not None:
        best["test"] = recall(best_test_r1)
    results = {"run": str(folder), "complete": complete, "dataset": config["data"]["dataset"], "generations": gens,
               "epochs": epochs, "best": best, "seconds": 4.0, "config": config}
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def with_changes(seed=0, lr=0.001, soft=0.5):
    config = copy.deepcopy(BASE_CONFIG)
    config["seed"] = seed
    config["optim"]["lr"] = lr
    config["train"]["generations"][1]["soft_weight"] = soft
    return config


@pytest.fixture
def runs(tmp_path):
    """Setting A: 3 seeds (one incomplete), setting B: 1 seed with another lr and soft weight."""
    root = tmp_path / "runs"
    a = [plant_run(root / "a" / f"seed{s}", with_changes(seed=s), [20 + s, 30 + 2 * s], best_test_r1=40 + 3 * s)
         for s in range(2)]
    killed = plant_run(root / "a" / "seed2", with_changes(seed=2), [90], complete=False, generations=1)
    b = plant_run(root / "b" / "seed0", with_changes(lr=0.01, soft=1.0), [25, 35], best_test_r1=45)
    return a + [killed, b]


def test_flatten_config__dots_nested_tables_and_indexes_lists_of_tables():
    flat = flatten_config(BASE_CONFIG)
    assert flat["optim.lr"] == 0.001
    assert flat["model.input_size"] == [48, 64]
    assert flat["train.generations.1.soft_weight"] == 0.5
    assert flat["model.head_options.clusters"] == 8
    assert "train.generations" not in flat


def test_config_differences__exactly_the_differing_keys_and_seeds_grouped(runs):
    entries = build_entries([read_source(r) for r in runs])
    assert [e.name for e in entries] == ["a", "b/seed0"]
    differences, common = config_differences(entries)
    assert set(differences) == {"optim.lr", "train.generations.1.soft_weight"}
    assert differences["optim.lr"] == [0.001, 0.01]
    assert common["data.dataset"] == "synthetic:tiny" and "seed" not in common and "seed" not in differences


def test_config_differences__a_key_missing_from_one_run_differs(tmp_path):
    extra = with_changes()
    extra["optim"]["momentum"] = 0.9
    sources = [read_source(plant_run(tmp_path / "x", with_changes(), [1, 2])),
               read_source(plant_run(tmp_path / "y", extra, [1, 2]))]
    differences, _ = config_differences(build_entries(sources))
    assert list(differences) == ["optim.momentum"]


def test_report__statistics_match_numpy_and_the_incomplete_run_is_listed_not_counted(runs, tmp_path):
    report = write_run_report(runs, tmp_path / "out", ReportOptions(pdf=True), log=lambda line: None)
    a = report["entries"][0]
    assert a["finished"] == 2 and a["seeds"] == [0, 1]
    final = np.array([30.0, 32.0])  # last generation test R@1 of the two complete seeds
    assert a["final"]["test"]["1"]["mean"] == pytest.approx(final.mean())
    assert a["final"]["test"]["1"]["std"] == pytest.approx(final.std(ddof=1))
    best = np.array([40.0, 43.0])
    assert a["best"]["test"]["1"]["mean"] == pytest.approx(best.mean())
    assert a["best"]["test"]["1"]["std"] == pytest.approx(best.std(ddof=1))
    gen0 = np.array([20.0, 21.0])
    assert a["generations"][0]["test"]["1"]["std"] == pytest.approx(gen0.std(ddof=1))
    assert report["entries"][1]["final"]["test"]["1"] == {"mean": 35.0, "std": None, "values": [35.0]}

    text = (tmp_path / "out" / "report.md").read_text()
    assert f"| a | 2 | 0,1 | " in text
    assert f"{final.mean():.1f} ± {final.std(ddof=1):.1f}" in text
    assert f"{best.mean():.1f} ± {best.std(ddof=1):.1f}" in text
    assert "incomplete (1 of 2 generations, 2 epochs)" in text
    assert "| entry | optim.lr | train.generations.1.soft_weight |" in text
    assert "<details><summary>Common configuration" in text
    for name in ("generations.png", "epochs_val.png", "losses.png"):
        path = tmp_path / "out" / "figures" / name
        assert path.stat().st_size > 1000 and path.read_bytes()[:4] == PNG_MAGIC
        assert f"(figures/{name})" in text
    assert (tmp_path / "out" / "report.pdf").read_bytes()[:5] == b"%PDF-"
    assert json.loads((tmp_path / "out" / "report.json").read_text())["entries"][0]["finished"] == 2


def sweep_stat(values):
    values = [float(v) for v in values]
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
            "values": values}


def block(base):
    return {split: {n: sweep_stat([base + off + int(n), base + 2 * off + int(n)]) for n in ("1", "5", "10")}
            for split, off in (("val", 1), ("test", 3))}


def plant_sweep(folder, with_transfer=True):
    configurations = []
    for i, lr in enumerate((0.001, 0.01)):
        configuration = {
            "name": f"optim.lr={lr}", "values": {"optim.lr": lr},
            "runs": [f"runs/optim.lr={lr}/seed{s}" for s in (0, 1)], "finished": 2,
            "final": block(10 * i), "best": block(10 * i + 5),
            "generations": [{"generation": g, **block(10 * i + g)} for g in range(2)],
        }
        if with_transfer:
            configuration["transfer"] = {"pitts30k": {n: sweep_stat([50 + i + int(n), 52 + int(n)])
                                                      for n in ("1", "5", "10")}}
        configurations.append(configuration)
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({
        "format": "sfrs-sweep-summary", "version": 1, "varied": ["optim.lr"], "seeds": [0, 1],
        "command": "sfrs-sweep --grid optim.lr=0.001,0.01 --seeds 2", "configurations": configurations}))
    return folder


def test_sweep_summary__tabled_from_its_statistics_with_bands_and_transfer(tmp_path):
    sweep = plant_sweep(tmp_path / "sweep")
    # the runs of one configuration are on disk, the other's are not
    for s in (0, 1):
        plant_run(sweep / "runs" / "optim.lr=0.001" / f"seed{s}", with_changes(seed=s), [20, 30], best_test_r1=40)
    report = write_run_report([sweep], tmp_path / "out", log=lambda line: None)
    names = [e["name"] for e in report["entries"]]
    assert names == ["optim.lr=0.001", "optim.lr=0.01"]
    assert set(report["differences"]) == {"optim.lr"}
    text = (tmp_path / "out" / "report.md").read_text()
    final_test_r1 = np.array([10 + 3 + 1, 10 + 6 + 1], dtype=float)  # block(10)["test"]["1"]
    assert f"{final_test_r1.mean():.1f} ± {final_test_r1.std(ddof=1):.1f}" in text
    transfer = np.array([50 + 1 + 1, 52 + 1], dtype=float)
    assert "## Transfer to other data sets" in text
    assert f"| optim.lr=0.01 | pitts30k | {transfer.mean():.1f} ± {transfer.std(ddof=1):.1f} |" in text
    assert "2 finished (run folders not found)" in text
    assert report["figures"] == ["figures/generations.png", "figures/epochs_val.png", "figures/losses.png"]


def test_transfer__read_from_an_eval_all_report_inside_a_run_folder(tmp_path):
    run = plant_run(tmp_path / "run", with_changes(), [20, 30])
    (run / "eval_all").mkdir()
    (run / "eval_all" / "report.json").write_text(json.dumps({
        "checkpoint": str(run / "best.pt"), "datasets_root": "/data", "options": {},
        "results": {"st_lucia": {"recall": {"1": 61.25, "5": 70.0, "10": 80.0, "20": 90.0}}}}))
    (run / "other").mkdir()
    (run / "other" / "report.json").write_text(json.dumps({"unrelated": True}))
    report = write_run_report([run], tmp_path / "out", log=lambda line: None)
    assert report["entries"][0]["transfer"] == {"st_lucia": {n: {"mean": v, "std": None, "values": [v]}
                                                             for n, v in (("1", 61.25), ("5", 70.0), ("10", 80.0),
                                                                          ("20", 90.0))}}
    assert "| run | st_lucia | 61.2 | 70.0 | 80.0 |" in (tmp_path / "out" / "report.md").read_text()


def test_run_without_results__reported_as_not_started(tmp_path):
    folder = tmp_path / "started"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(with_changes()))
    report = write_run_report([folder], tmp_path / "out", log=lambda line: None)
    assert report["entries"][0]["runs"][0]["status"].startswith("not started")
    assert report["entries"][0]["finished"] == 0
    assert report["figures"] == []


@pytest.mark.parametrize("make", ["missing", "empty_dir", "other_file", "bad_summary"])
def test_read_source__anything_else_is_a_data_error_naming_the_path(tmp_path, make):
    path = tmp_path / "thing"
    if make == "empty_dir":
        path.mkdir()
    elif make == "other_file":
        path.write_text("x")
    elif make == "bad_summary":
        path.mkdir()
        (path / "summary.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(DataError, match=str(path)):
        read_source(path)


def test_galleries__a_run_without_best_pt_is_noted_in_the_report_not_raised(tmp_path):
    run = plant_run(tmp_path / "run", with_changes(), [20, 30])
    report = write_run_report([run], tmp_path / "out", ReportOptions(galleries=2), log=lambda line: None)
    assert "best.pt: not found" in report["galleries"]["run"]["error"]
    assert "- **run**: not drawn: " in (tmp_path / "out" / "report.md").read_text()


def test_read_sources__a_folder_of_run_folders_stands_for_them(runs, tmp_path):
    root = tmp_path / "runs"
    expanded = read_sources([root / "a", root / "b" / "seed0"])
    assert [source.path.name for source in expanded] == ["seed0", "seed1", "seed2", "seed0"]
    with pytest.raises(DataError, match="neither a training run folder"):
        read_sources([tmp_path])  # holds run folders two levels down only
