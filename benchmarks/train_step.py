"""SFRS training step: soft labels read from the HDF5 cache vs the teacher run inside the step.

The reference implementation runs the previous generation's network inside every
training step to label the difficult positives' regions. ``sfrs`` runs that teacher once
after the generation and reads the cached similarities instead. This script times one
optimiser step (forward, losses, backward, update) for both ways on the SAME batch of
tuples of the synthetic city, side by side in one run. The in-loop variant only runs the
teacher on the query and its difficult positives (the least the reference needs).

Usage (from the repository root):
    python benchmarks/train_step.py [--config YAML] [--repeats 10] [--no-write]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import machine_description, write_block  # noqa: E402
from sfrs.config import Config, load_config  # noqa: E402
from sfrs.data import open_dataset  # noqa: E402
from sfrs.models import build_network  # noqa: E402
from sfrs.training import Objective, TermContext, build_terms  # noqa: E402
from sfrs.training.optim import build_optimizer, build_train_transform  # noqa: E402
from sfrs.training.tuples import TupleDataset, assemble_tuples  # noqa: E402


def make_batch(config: Config, split, rng):
    tps, n, m = config.optim.tuples_per_step, config.mining.negatives, config.mining.difficult_positives
    queries = rng.choice(split.num_queries, tps, replace=False)
    ids = rng.choice(split.num_database, (tps, 1 + n + m), replace=False if split.num_database > tps * (1 + n + m) else True)
    tuples = assemble_tuples(queries, ids[:, 0], ids[:, 1 : 1 + n], ids[:, 1 + n :])
    return tuples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--config", help="YAML config (default: the synthetic demo)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    config = load_config(args.config, args.overrides)
    split = open_dataset(config.data.dataset, "train", config.data.images_root)
    torch.manual_seed(0)
    student = build_network(config.model, load_pretrained=False)
    teacher = build_network(config.model, load_pretrained=False).eval()
    rng = np.random.default_rng(0)
    tuples = make_batch(config, split, rng)
    n = config.mining.negatives
    cached = rng.uniform(-1, 1, size=(len(tuples), config.mining.difficult_positives, 9)).astype(np.float32)
    dataset = TupleDataset(split, tuples, n, build_train_transform(student, config.augment), seed=0, teacher=cached)
    batch = dataset.collate([dataset[i] for i in range(len(tuples))])
    cached_labels = batch.teacher
    schedule = config.train.generations[1] if len(config.train.generations) > 1 else config.train.generations[0]
    context = TermContext(generation=1, schedule=schedule, temperature=config.loss.temperature, network=student)
    objective = Objective(student, build_terms(config.loss, context))
    optimizer = build_optimizer(objective, config.optim)

    def teacher_labels() -> torch.Tensor:
        with torch.no_grad():
            keep = torch.cat([batch.query, batch.difficult.flatten()])
            regions = teacher.region_descriptors(batch.images[keep])
            anchors = regions[: len(batch.query), 0]
            positives = regions[len(batch.query):].view(len(batch.query), -1, 9, regions.shape[-1])
            return torch.einsum("bd,bmrd->bmr", anchors, positives)

    def step(in_loop: bool) -> float:
        start = time.perf_counter()
        batch.teacher = teacher_labels() if in_loop else cached_labels
        out = objective(batch)
        optimizer.zero_grad(set_to_none=True)
        out.total.backward()
        optimizer.step()
        return (time.perf_counter() - start) * 1000

    times = {"cached": [], "in_loop": []}
    for i in range(args.warmup + args.repeats):
        for variant in ("cached", "in_loop"):  # interleaved: the same machine state for both
            ms = step(variant == "in_loop")
            if i >= args.warmup:
                times[variant].append(ms)
    median = {k: statistics.median(v) for k, v in times.items()}
    images = batch.images.shape[0]
    lines = [
        "## SFRS training step: cached soft labels vs teacher in the loop",
        "",
        "Command: `python benchmarks/train_step.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "") + "`  ",
        f"Machine: {machine_description()}.",
        "",
        f"Workload: one optimiser step on the same batch of {len(tuples)} tuples "
        f"(query + positive + {n} negatives + {config.mining.difficult_positives} difficult positives = {images} images "
        f"of {config.model.input_size[0]}x{config.model.input_size[1]}), model {config.model.backbone} + {config.model.head}; "
        f"median of {args.repeats} steps after {args.warmup} warm-up, variants interleaved.",
        "",
        "| variant | median ms per step | vs teacher in the loop |",
        "|---|---:|---:|",
        f"| soft labels from the HDF5 cache (sfrs) | {median['cached']:,.1f} | {median['cached'] / median['in_loop']:.2f}x |",
        f"| teacher forward inside the step (reference) | {median['in_loop']:,.1f} | 1.00x |",
        "",
        f"Caching saves {100 * (1 - median['cached'] / median['in_loop']):.0f}% of the step time; the one-off teacher "
        "pass after each generation is reported in the training log.",
    ]
    block = "\n".join(lines)
    print(block)
    if not args.no_write:
        write_block("train_step", block)


if __name__ == "__main__":
    main()
