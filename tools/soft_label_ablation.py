#!/usr/bin/env python
"""Do the soft region labels help? Train the same schedule twice and compare per generation.

Later SFRS generations also train longer than generation 0 (and are re-initialised), so
Recall rising over generations alone does not show that the soft labels help. This tool
runs the identical schedule (same epochs, same student initialisation, same seed, same
region negatives) once as configured and once with every soft weight set to 0, then
writes both per-generation tables side by side.

    python tools/soft_label_ablation.py --output runs/ablation [any sfrs-train option]

e.g. ``--generations 4`` or ``--config configs/pitts30k_vgg16_netvlad.yaml --dataset DIR``.
Writes ``OUTPUT/sfrs/``, ``OUTPUT/hard_only/`` (two ordinary runs, each resumable: rerun
the same command after an interruption) and ``OUTPUT/results.md`` / ``results.json``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, List

import click

from sfrs.cli.train import main as train_main
from sfrs.utils.io import atomic_write_json, atomic_write_text

NS = ("1", "5", "10")


def comparison_table(with_soft: List[Dict[str, Any]], hard_only: List[Dict[str, Any]]) -> List[str]:
    lines = [
        "| gen | epochs | split | " + " | ".join(f"SFRS R@{n}" for n in NS) + " | "
        + " | ".join(f"hard-only R@{n}" for n in NS) + " | R@1 difference |",
        "|---|---|---|" + "---|" * (2 * len(NS) + 1),
    ]
    for a, b in zip(with_soft, hard_only):
        for split in ("val", "test"):
            left = " | ".join(f"{a[split][n]:.1f}" for n in NS)
            right = " | ".join(f"{b[split][n]:.1f}" for n in NS)
            diff = a[split]["1"] - b[split]["1"]
            lines.append(f"| {a['generation']} | {a['epochs']} | {split} | {left} | {right} | {diff:+.1f} |")
    return lines


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                 "help_option_names": ["-h", "--help"]})
@click.option("--output", required=True, type=click.Path(file_okay=False), help="Folder of the two runs and the comparison.")
@click.pass_context
def main(ctx: click.Context, output: str) -> None:
    """Run SFRS and its hard-loss-only twin; write OUTPUT/results.md side by side."""
    root = Path(output)
    extra = list(ctx.args)
    runs = {
        "sfrs": extra,
        "hard_only": extra + ["--set", "train.generations.*.soft_weight=0"],
    }
    results = {}
    for name, args in runs.items():
        click.echo(f"== {name} ==")
        code = train_main.main(args + ["--output", str(root / name)], standalone_mode=False)
        if code not in (None, 0):
            sys.exit(code)
        results[name] = json.loads((root / name / "results.json").read_text())
    table = comparison_table(results["sfrs"]["generations"], results["hard_only"]["generations"])
    text = "\n".join([
        "# Soft region labels vs the same schedule without them",
        "",
        f"Both runs: `sfrs-train {' '.join(extra)}`; the hard-only run adds "
        "`--set train.generations.*.soft_weight=0` (same epochs, initialisation, seed and region negatives).",
        f"Wall time: SFRS {results['sfrs']['seconds'] / 60:.1f} min, hard-only {results['hard_only']['seconds'] / 60:.1f} min.",
        "",
        *table,
        "",
    ])
    atomic_write_text(root / "results.md", text)
    atomic_write_json(root / "results.json", {
        "sfrs": results["sfrs"]["generations"], "hard_only": results["hard_only"]["generations"],
        "arguments": extra,
    })
    click.echo(text)


if __name__ == "__main__":
    main()
