"""The paper's training step: peak memory and time, whole batch at once vs chunked frozen
layers and one tuple per pass.

SFRS (Ge et al., ECCV 2020) trains VGG16 + NetVLAD-64 on 480x640 images, 4 tuples per
optimiser step of 22 images each (query, positive, 10 negatives, 10 difficult
positives). This script times one optimiser step of that configuration (generation 1:
region negatives + the soft region loss; SGD) for 1 and 4 tuples per step:

- *before*: the pipeline without chunking or accumulation, every image of the step
  through the whole network at once (``model.frozen_chunk`` = the step's images,
  ``optim.tuples_per_pass: 0``);
- *after*: the defaults (``frozen_chunk: 0``, sized from the input: one image at a time
  through conv1..conv4 without activations kept) and ``tuples_per_pass: 1``;
- *after + checkpointing*: also ``model.checkpoint_activations: true`` (1 tuple).

Each variant runs in a fresh process on the same random weights (``pretrained: none``;
the memory and time of a step do not depend on the values) and the same random images.
Peak memory is taken over a baseline holding the model, the optimiser's state (after a
warm-up step on a tiny batch) and the step's input images: the peak RSS increase
(``VmHWM``, reset through /proc/self/clear_refs); and the peak of bytes held by torch
tensors (the CPU allocator's total in the profiler's memory events), the quantity
``torch.cuda.max_memory_allocated`` reports on a GPU. On a GPU both columns are
``torch.cuda.max_memory_allocated`` minus the allocated baseline. Time is the median of
``--repeats`` steps (wall and process CPU seconds); the first step is profiled for the
tensor peak and not timed. The variants' first-step losses and gradients are compared.

The 4-tuple *before* variant needs about four times the 1-tuple one (its activations
grow with the images of the step); it runs only when the machine has that much memory
available (``--before-4 auto``), else its row gives that estimate.

Usage (from the repository root):
    python benchmarks/train_step_memory.py [--repeats 2] [--before-4 auto|run|skip] [--no-write]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from benchmarks.common import machine_description, memory_probe, write_block  # noqa: E402

CONFIG = REPO / "configs" / "pitts30k_vgg16_netvlad.yaml"
# name -> (tuples per step, label)
VARIANTS = {
    "before_1": (1, "before: whole step at once"),
    "after_1": (1, "after: chunked frozen layers, 1 tuple per pass"),
    "after_ckpt_1": (1, "after + activation checkpointing"),
    "before_4": (4, "before: whole step at once"),
    "after_4": (4, "after: chunked frozen layers, 1 tuple per pass"),
}


def variant_overrides(name: str, images_per_step: int) -> List[str]:
    tuples = VARIANTS[name][0]
    settings = [f"optim.tuples_per_step={tuples}", "model.pretrained=none"]
    if name.startswith("before"):
        return settings + [f"model.frozen_chunk={images_per_step}", "optim.tuples_per_pass=0"]
    settings += ["model.frozen_chunk=0", "optim.tuples_per_pass=1"]
    if "ckpt" in name:
        settings.append("model.checkpoint_activations=true")
    return settings


def random_batch(tuples: int, negatives: int, difficult: int, size, seed: int):
    """A collated batch of ``tuples`` tuples (query, positive, negatives, difficult
    positives) of random images, laid out as ``TupleDataset.collate`` does, with random
    teacher labels."""
    from sfrs.training.tuples import TupleBatch

    per_tuple = 2 + negatives + difficult
    generator = torch.Generator().manual_seed(seed)
    starts = torch.arange(tuples) * per_tuple
    return TupleBatch(
        images=torch.randn(tuples * per_tuple, 3, *size, generator=generator),
        query=starts,
        positive=starts + 1,
        negatives=starts[:, None] + 2 + torch.arange(negatives)[None],
        difficult=starts[:, None] + 2 + negatives + torch.arange(difficult)[None],
        teacher=torch.rand(tuples, difficult, 9, generator=generator) * 2 - 1,
    )


def tensor_peak_mb(step) -> float:
    """Run ``step()`` under the profiler; the peak of the CPU allocator's total over its
    value when the profiler started, in MB."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    with tempfile.TemporaryDirectory() as tmp:
        trace = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(trace)
        with open(trace) as handle:
            events = json.load(handle)
    events = events["traceEvents"] if isinstance(events, dict) else events
    totals = [e["args"]["Total Allocated"] for e in events
              if e.get("name") == "[memory]" and e.get("args", {}).get("Device Type", 0) == 0]
    return max(totals, default=0) / 2**20


def worker(args: argparse.Namespace) -> None:
    from sfrs.config import load_config
    from sfrs.models import build_network
    from sfrs.training import Objective, TermContext, build_terms
    from sfrs.training.optim import build_optimizer
    from sfrs.training.trainer import forward_backward

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    tuples = VARIANTS[args.worker][0]
    base = load_config(str(CONFIG), ["model.pretrained=none"] + args.overrides)
    per_tuple = 2 + base.mining.negatives + base.mining.difficult_positives
    config = load_config(str(CONFIG), ["model.pretrained=none"] + args.overrides
                         + variant_overrides(args.worker, tuples * per_tuple))
    torch.manual_seed(args.seed)
    network = build_network(config.model, load_pretrained=False)
    network.set_training_memory(config.model.frozen_chunk, config.model.checkpoint_activations)
    network = network.to(device)
    context = TermContext(generation=1, schedule=config.train.generations[1], temperature=config.loss.temperature,
                          network=network)
    objective = Objective(network, build_terms(config.loss, context)).to(device).train()
    optimizer = build_optimizer(objective, config.optim)
    negatives, difficult = config.mining.negatives, config.mining.difficult_positives
    tuples_per_pass = config.optim.tuples_per_pass

    def step(batch) -> None:
        optimizer.zero_grad(set_to_none=True)
        forward_backward(objective, objective, batch, tuples_per_pass, device)
        optimizer.step()
        objective.after_step()

    # Warm-up on a tiny batch: kernels, thread pools and the optimiser's state exist
    # before the baseline. At learning rate 0 it leaves the weights as built, so that the
    # variants' first steps start from the same bits.
    rates = [group["lr"] for group in optimizer.param_groups]
    for group in optimizer.param_groups:
        group["lr"] = 0.0
    step(random_batch(1, negatives, difficult, (64, 80), args.seed + 1))
    for group, rate in zip(optimizer.param_groups, rates):
        group["lr"] = rate
    batch = random_batch(tuples, negatives, difficult, tuple(config.model.input_size), args.seed)
    if cuda:  # the input stays on the CPU; each pass is moved to the device
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device) / 2**20
    else:
        baseline, peak_rss, _ = memory_probe()

    # First step: its losses and gradients for the comparison, and the tensor peak.
    optimizer.zero_grad(set_to_none=True)
    first = {}

    def measured() -> None:
        first["losses"] = forward_backward(objective, objective, batch, tuples_per_pass, device).values

    tensors = None if cuda else tensor_peak_mb(measured)
    if cuda:
        measured()
    grads = {n: p.grad.detach().cpu().clone() for n, p in objective.named_parameters() if p.grad is not None}
    torch.save({"losses": first["losses"], "grads": grads}, args.result)
    del grads
    optimizer.step()
    objective.after_step()

    wall: List[float] = []
    cpu: List[float] = []
    for _ in range(args.repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        step(batch)
        if cuda:
            torch.cuda.synchronize(device)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    if cuda:
        peak = torch.cuda.max_memory_allocated(device) / 2**20 - baseline
        tensors = peak
    else:
        peak = peak_rss() - baseline
    print(json.dumps({
        "peak_mb": peak, "tensor_peak_mb": tensors, "wall_s": statistics.median(wall), "cpu_s": statistics.median(cpu),
        "wall_all": wall, "images": int(batch.images.shape[0]),
        "input_mb": batch.images.numel() * batch.images.element_size() / 2**20,
        "frozen_chunk": config.model.frozen_chunk, "tuples_per_pass": tuples_per_pass,
    }))


def run_variant(name: str, args: argparse.Namespace, result: str) -> Dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--result", result,
               "--repeats", str(args.repeats), "--seed", str(args.seed), "--device", args.device]
    for override in args.overrides:
        command += ["--set", override]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        sys.exit(f"{name} worker failed:\n{completed.stderr}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def available_mb() -> Optional[float]:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def compare(a: Dict, b: Dict) -> Dict[str, float]:
    """Largest relative difference of the losses, and of the gradients (max abs diff over
    the max abs value, per parameter)."""
    losses = max(abs(a["losses"][k] - b["losses"][k]) / max(abs(a["losses"][k]), 1e-12) for k in a["losses"])
    grads = max(float((a["grads"][n] - b["grads"][n]).abs().max() / a["grads"][n].abs().max().clamp_min(1e-30))
                for n in a["grads"])
    return {"losses": losses, "grads": grads}


def per_parameter(a: Dict, b: Dict) -> Dict[str, float]:
    return {n: float((a["grads"][n] - b["grads"][n]).abs().max() / a["grads"][n].abs().max().clamp_min(1e-30))
            for n in a["grads"]}


def render(args, results: Dict[str, Dict], skipped: Dict[str, str], diffs: Dict[str, Dict], started: float,
           machine: str) -> str:
    cuda = args.device.startswith("cuda")
    ref = results["before_1"]
    argv = " ".join(sys.argv[1:])
    peak_label = "peak MB (`max_memory_allocated`)" if cuda else "peak RSS MB"
    tensor_label = "tensor peak MB (= `max_memory_allocated` on a GPU)"
    lines = [
        "## The paper's training step: memory and time (VGG16 + NetVLAD-64, 480x640)",
        "",
        f"Command: `python benchmarks/train_step_memory.py{' ' + argv if argv else ''}`  ",
        f"Machine: {machine}. Total run time {(time.time() - started) / 60:.1f} min.",
        "",
        f"Workload: `configs/pitts30k_vgg16_netvlad.yaml` with random weights (`pretrained: none`), generation 1 "
        f"(SARE-ind on region negatives + 0.5 x soft region loss), SGD; tuples of 22 random images of 480x640 "
        f"(query, positive, 10 negatives, 10 difficult positives), {ref['input_mb']:,.0f} MB of input per tuple. "
        f"One optimiser step; time = median of {args.repeats} steps after a profiled first step; each variant in a "
        f"fresh process. Peak memory is over a baseline holding the model, the optimiser state and the input "
        f"images: the peak RSS increase (`VmHWM`), and the peak of bytes held by torch tensors (the CPU "
        f"allocator's total in the profiler's memory events: what `torch.cuda.max_memory_allocated` counts on a "
        f"GPU, cuDNN workspaces aside). MB = 2^20 bytes.",
        "",
        f"| tuples per step | variant | frozen_chunk | tuples_per_pass | {peak_label} | {tensor_label} "
        f"| wall s per step | CPU s per step | time vs before |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, (tuples, label) in VARIANTS.items():
        before = results.get(f"before_{tuples}")
        if name in skipped:
            lines.append(f"| {tuples} | {label} | all | 0 | {skipped[name]} | | | | |")
            continue
        if name not in results:
            continue
        r = results[name]
        chunk = "all" if name.startswith("before") else ("auto" if r["frozen_chunk"] == 0 else r["frozen_chunk"])
        ratio = f"{r['wall_s'] / before['wall_s']:.2f}x" if before else "n/a"
        lines.append(f"| {tuples} | {label} | {chunk} | {r['tuples_per_pass']} | {r['peak_mb']:,.0f} | "
                     f"{r['tensor_peak_mb']:,.0f} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {ratio} |")
    lines.append("")
    for name, d in diffs.items():
        lines.append(f"First-step losses and gradients, {name}: largest relative difference {d['losses']:.1e} "
                     f"(losses), {d['grads']:.1e} (gradients, max abs diff / max abs value per parameter).  ")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--before-4", choices=("auto", "run", "skip"), default="auto",
                        help="the 4-tuple step without chunking: run it only if the memory is available (auto)")
    parser.add_argument("--variants", nargs="*", choices=list(VARIANTS), help="run only these")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="a config override on top of the paper's configuration (e.g. a smaller input_size)")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--worker", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    started = time.time()
    machine = machine_description(args.device)
    results: Dict[str, Dict] = {}
    skipped: Dict[str, str] = {}
    outputs: Dict[str, Dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants or list(VARIANTS):
            if name == "before_4" and args.before_4 != "run":
                one = results.get("before_1")
                estimate = 4 * one["peak_mb"] if one else None
                free = available_mb()
                if args.before_4 == "skip" or estimate is None or free is None or free < 1.5 * estimate:
                    why = f"~{estimate:,.0f} (estimated: 4 x the 1-tuple peak; not run" if estimate else "(not run"
                    skipped[name] = why + (f", {free:,.0f} MB available)" if free is not None else ")")
                    print(f"{name}: skipped", file=sys.stderr)
                    continue
            path = os.path.join(tmp, f"{name}.pt")
            results[name] = run_variant(name, args, path)
            outputs[name] = torch.load(path)
            print(f"{name}: {json.dumps(results[name])}", file=sys.stderr)
    diffs = {}
    for after, before in (("after_1", "before_1"), ("after_ckpt_1", "before_1"), ("after_4", "before_4")):
        if after in outputs and before in outputs:
            diffs[f"{VARIANTS[after][1]} vs before ({VARIANTS[after][0]} tuple(s))"] = compare(outputs[before],
                                                                                              outputs[after])
            print(after, per_parameter(outputs[before], outputs[after]), file=sys.stderr)
    if "before_1" not in results:
        sys.exit("the table needs the before_1 variant")
    block = render(args, results, skipped, diffs, started, machine)
    print(block)
    if not args.no_write:
        write_block("train_step_memory", block)
        print("wrote docs/benchmarks.md")


if __name__ == "__main__":
    main()
