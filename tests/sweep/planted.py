"""Run folders as sfrs-train leaves them (results.json), planted without training; no
sfrs import, so that a stand-in training subprocess starts fast."""
import json


def recall(base):
    return {"1": float(base), "5": float(base + 11), "10": float(base + 23), "20": float(base + 30)}


def planted_results(lr, seed, generations=2, complete=True):
    """Recalls that differ by configuration, seed, generation and split (val = test - 2)."""
    base = 10 * lr * 100 + 3 * seed * seed
    gens = [{"generation": g, "epochs": 1, "soft_weight": 0.0, "val": recall(base + 5 * g - 2),
             "test": recall(base + 5 * g), "seconds": 1.0} for g in range(generations)]
    return {"complete": complete, "generations": gens, "epochs": [],
            "best": {"generation": 0, "epoch": 0, "val": recall(base + 1), "test": recall(base + 4),
                     "metric": "val R@5"},
            "seconds": 2.0}


def plant(folder, results):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results))
    return folder
