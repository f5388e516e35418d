#!/usr/bin/env python
"""Label-free adaptation (``sfrs-adapt``) on two synthetic shifts, before and after.

Source models: the ``sare`` row of ``tools/ssl_experiments.py`` (``synthetic:small``,
2 generations x ``--epochs`` epochs, one model per seed), trained here when absent or
reused from ``--sources`` (the SSL experiment's output folder).

Targets, each adapted from the source model of every seed with the adapter seeded alike:

- ``same-view``: a new city, ``sfrs-synth --size small --seed 1`` (other streets, buildings,
  facades and colours); adapted on its train split (queries vs database), judged on its
  val and test splits;
- ``cross-view``: ``sfrs-synth --cross-view --size small`` (drone views vs satellite tiles
  of the same blocks); adapted on train, judged on test in both directions.

Rows: the E-step inside each batch (the reference, the default) and, cross-view, over the
whole set (same-view, one batch is the whole set: the two are the same run). Nothing is
chosen on a test split: every row is reported.

    python tools/adapt_experiments.py --output runs/adapt_experiments --sources runs/ssl_experiments [--write-docs]
"""
from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path
from typing import Dict, List, Optional

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ssl_experiments import finished, run_row, schedule  # noqa: E402  (the source models are that table's sare row)

from sfrs.adaptation import adapt, load_adapt_config  # noqa: E402
from sfrs.data.synthetic import ensure_synthetic  # noqa: E402
from sfrs.data.synthetic.cross_view import ensure_cross_view  # noqa: E402
from sfrs.utils.io import atomic_write_json, write_marked_block  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: E-step scopes per target. The same-view target's 500 train queries fit in one batch of
#: 700 view-A rows, which there holds every row of both views: both scopes give the same run.
ROWS = {"same-view": ("batch",), "cross-view": ("batch", "whole_set")}
#: seed of the new city of the same-view target (the source city is seed 0).
TARGET_CITY_SEED = 1


def share_features(root: Path, name: str, seed: int, output: Path) -> None:
    """Hard-link the frozen-feature cache of another row of the same target and seed (same
    model, same images: the cache's fingerprints check it) instead of extracting again."""
    target = name.split("/")[0]
    for other in sorted((root / target).glob(f"*/seed{seed}/features")):
        if other.parent == output or not any(other.glob("*.h5")):
            continue
        (output / "features").mkdir(parents=True, exist_ok=True)
        for cached in other.glob("*.h5"):
            if not (output / "features" / cached.name).exists():
                os.link(cached, output / "features" / cached.name)
        return


def adapt_row(root: Path, name: str, checkpoints: List[Path], dataset: str, overrides: List[str]) -> List[Dict]:
    results = []
    for seed, checkpoint in enumerate(checkpoints):
        output = root / name / f"seed{seed}"
        if finished(output) is not None:
            results.append(finished(output))
            continue
        click.echo(f"== {name} seed {seed}")
        share_features(root, name, seed, output)
        config = load_adapt_config(overrides=overrides, direct={"data.dataset": dataset, "seed": seed})
        results.append(adapt(config, checkpoint, output, progress=False, log=lambda line: None))
    return results


def _stats(values: List[Optional[float]]) -> Optional[Dict[str, float]]:
    if any(v is None for v in values):
        return None
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def summarise(results: List[Dict]) -> Dict:
    names = [e["name"] for e in results[0]["evaluations"]]
    evaluations = {}
    for i, name in enumerate(names):
        runs = [r["evaluations"][i] for r in results]
        evaluations[name] = {
            f"{when}_{metric}": _stats([run[when]["recall"][n] if n else run[when]["ap"] for run in runs])
            for when in ("before", "after") for metric, n in (("R@1", "1"), ("R@5", "5"), ("AP", None))
        }
    labels = [r["pseudo_labels"] for r in results]
    return {
        "seeds": len(results),
        "evaluations": evaluations,
        "labels_frozen_precision": _stats([100 * x["frozen"]["precision"] for x in labels]),
        "labels_adapted_precision": _stats([100 * x["adapted"]["precision"] for x in labels]),
        "labels_frozen_count": _stats([x["frozen"]["count"] for x in labels]),
        "labels_adapted_count": _stats([x["adapted"]["count"] for x in labels]),
        "adaptation_seconds": _stats([r["seconds"]["adaptation"] for r in results]),
    }


def _cell(stats: Optional[Dict[str, float]], digits: int = 1) -> str:
    return "-" if stats is None else f"{stats['mean']:.{digits}f} +- {stats['std']:.{digits}f}"


def render(summary: Dict[str, Dict], command: str, steps: int) -> str:
    lines = [
        "## Label-free adaptation (sfrs-adapt) on synthetic shifts",
        "",
        f"Command: `{command}`",
        "",
        "Source models: the `sare` row of the self-supervised table (`tools/ssl_experiments.py`; one per seed,",
        "trained on `synthetic:small`, `best.pt`).",
        "`same-view`: a city generated with another seed (`sfrs-synth --size small --seed 1`), adapted on its",
        "train queries and database, judged on its val and test splits. `cross-view`: `sfrs-synth --cross-view",
        f"--size small`, adapted on train drone and satellite images, judged on test in both directions. {steps}",
        "adapter steps with the default settings; E-step among the batch's rows (`batch`, the reference and the",
        "default) or over the whole set (`whole_set`; same-view, one batch holds every train image, so both are",
        "the same run). Mean +- std over seeds (source model and adapter seed alike); pseudo-label precision",
        "from the ground truth of the adaptation split, which training never reads.",
        "",
        "| target | E-step | seeds | evaluation | R@1 before | R@1 after | R@5 before | R@5 after | AP before | AP after |",
        "|---|---|---:|---|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        target, scope = name.split("/")
        for evaluation, e in s["evaluations"].items():
            lines.append(f"| {target} | {scope} | {s['seeds']} | {evaluation} | " + " | ".join(
                _cell(e[k]) for k in ("before_R@1", "after_R@1", "before_R@5", "after_R@5", "before_AP", "after_AP")) + " |")
    lines += [
        "",
        "| target | E-step | pseudo-labels (frozen) | precision % (frozen) | pseudo-labels (adapted) | precision % (adapted) | adaptation s |",
        "|---|---|---|---|---|---|---:|",
    ]
    for name, s in summary.items():
        target, scope = name.split("/")
        lines.append(
            f"| {target} | {scope} | {_cell(s['labels_frozen_count'], 0)} | {_cell(s['labels_frozen_precision'])} | "
            f"{_cell(s['labels_adapted_count'], 0)} | {_cell(s['labels_adapted_precision'])} | "
            f"{s['adaptation_seconds']['mean']:.1f} |"
        )
    lines += ["", "Pseudo-labels counted where the E-step looks: the first batch (`batch`) or the whole split (`whole_set`)."]
    return "\n".join(lines) + "\n"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--output", required=True, type=click.Path(file_okay=False))
@click.option("--sources", type=click.Path(file_okay=False),
              help="Output folder of tools/ssl_experiments.py whose sare row to reuse (default OUTPUT/sources).")
@click.option("--seeds", default=3, show_default=True)
@click.option("--epochs", default=2, show_default=True, help="Source models: epochs of each of the 2 generations.")
@click.option("--queries", default=120, show_default=True, help="Source models: training queries per epoch.")
@click.option("--tuples", default=8, show_default=True, help="Source models: tuples per step.")
@click.option("--steps", default=200, show_default=True, help="Adapter steps.")
@click.option("--write-docs", is_flag=True, help="Write the adaptation section of docs/experiments.md.")
def main(output: str, sources: Optional[str], seeds: int, epochs: int, queries: int, tuples: int, steps: int,
         write_docs: bool) -> None:
    root = Path(output)
    source_root = Path(sources) if sources else root / "sources"
    run_row(source_root, "sare", [], seeds, schedule(epochs, queries, tuples, soft=False))
    # best.pt: the model of the epoch with the best validation recall (of the source city)
    checkpoints = [source_root / "sare" / f"seed{k}" / "best.pt" for k in range(seeds)]
    targets = {
        "same-view": str(ensure_synthetic("small", seed=TARGET_CITY_SEED, progress=False)),
        "cross-view": f"u1652:{ensure_cross_view('small', seed=0, progress=False)}",
    }
    summary = {
        f"{target}/{scope}": summarise(adapt_row(root, f"{target}/{scope}", checkpoints, dataset,
                                                  [f"pseudo_labels.scope={scope}", f"optim.steps={steps}"]))
        for target, dataset in targets.items() for scope in ROWS[target]
    }
    atomic_write_json(root / "summary.json", summary)
    command = "python tools/adapt_experiments.py " + " ".join(sys.argv[1:])
    text = render(summary, command, steps)
    click.echo(text)
    if write_docs:
        write_marked_block(REPO / "docs" / "experiments.md", "adaptation", text, "Experiments")


if __name__ == "__main__":
    main()
