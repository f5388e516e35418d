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
the memory and time of a step do not depend on the values) and the same random images:
a warm-up step on a tiny batch at learning rate 0 (kernels and the optimiser's state
exist, the weights stay as built), a first step whose losses and gradients are compared
across variants, then ``--repeats`` timed steps; every step is profiled (the profiler
adds under 0.1% to a 60 s step here). Peak memory is taken over a baseline holding the
model, the optimiser's state and the step's input images: the peak RSS increase
(``VmHWM``, reset through /proc/self/clear_refs) and the peak of bytes held by torch
tensors (the CPU allocator's total in the profiler's memory events), the quantity
``torch.cuda.max_memory_allocated`` reports on a GPU. On a GPU both columns are
``torch.cuda.max_memory_allocated`` minus the allocated baseline. Because the machine may
be shared, the 1-tuple before and after steps are also timed alternately in one process
(``--rounds``).

The 4-tuple *before* variant needs about four times the 1-tuple one (its activations
grow with the images of the step); it runs only when the machine has 1.5 times that
available (``--before-4 auto``). Otherwise its row is estimated: the 1-tuple peaks times
the 4-tuple / 1-tuple ratio measured at half the input size.

Usage (from the repository root):
    python benchmarks/train_step_memory.py [--repeats 1] [--rounds 2] [--before-4 auto|run|skip]
        [--variants NAME ...] [--set KEY=VALUE] [--no-write]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

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
#: timed against each other in one process, alternating.
TIMED = ("before_1", "after_1")


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


@contextlib.contextmanager
def tensor_peak(peaks: List[float]) -> Iterator[None]:
    """Profile the block; append the peak of the CPU allocator's total over its value when
    the block started, in MB, to ``peaks``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        yield
    with tempfile.TemporaryDirectory() as tmp:
        trace = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(trace)
        with open(trace) as handle:
            events = json.load(handle)
    events = events["traceEvents"] if isinstance(events, dict) else events
    totals = [e["args"]["Total Allocated"] for e in events
              if e.get("name") == "[memory]" and e.get("args", {}).get("Device Type", 0) == 0]
    peaks.append(max(totals, default=0) / 2**20)


class Setup:
    """One variant's objective, optimiser and step on the paper's configuration (random
    weights from ``seed``), warmed up on a tiny batch."""

    def __init__(self, name: str, args: argparse.Namespace) -> None:
        from sfrs.config import load_config
        from sfrs.models import build_network
        from sfrs.training import Objective, TermContext, build_terms
        from sfrs.training.optim import build_optimizer

        self.device = torch.device(args.device)
        self.tuples = VARIANTS[name][0]
        base = load_config(str(CONFIG), ["model.pretrained=none"] + args.overrides)
        per_tuple = 2 + base.mining.negatives + base.mining.difficult_positives
        config = load_config(str(CONFIG), ["model.pretrained=none"] + args.overrides
                             + variant_overrides(name, self.tuples * per_tuple))
        torch.manual_seed(args.seed)
        network = build_network(config.model, load_pretrained=False)
        network.set_training_memory(config.model.frozen_chunk, config.model.checkpoint_activations)
        network = network.to(self.device)
        context = TermContext(generation=1, schedule=config.train.generations[1],
                              temperature=config.loss.temperature, network=network)
        self.config = config
        self.objective = Objective(network, build_terms(config.loss, context)).to(self.device).train()
        self.optimizer = build_optimizer(self.objective, config.optim)
        self.tuples_per_pass = config.optim.tuples_per_pass
        # Kernels, thread pools and the optimiser's state exist before any measurement. At
        # learning rate 0 the warm-up leaves the weights as built, so that every variant's
        # first step starts from the same bits.
        rates = [group["lr"] for group in self.optimizer.param_groups]
        for group in self.optimizer.param_groups:
            group["lr"] = 0.0
        self.forward_backward(self.batch((64, 80), args.seed + 1))
        self.update()
        for group, rate in zip(self.optimizer.param_groups, rates):
            group["lr"] = rate

    def batch(self, size, seed: int):
        return random_batch(self.tuples, self.config.mining.negatives, self.config.mining.difficult_positives,
                            tuple(size), seed)

    def forward_backward(self, batch) -> Dict[str, float]:
        from sfrs.training.trainer import forward_backward

        self.optimizer.zero_grad(set_to_none=True)
        return forward_backward(self.objective, self.objective, batch, self.tuples_per_pass, self.device).values

    def update(self) -> None:
        self.optimizer.step()
        self.objective.after_step()

    def step(self, batch) -> Tuple[float, float]:
        """One timed optimiser step: (wall, CPU) seconds."""
        started, started_cpu = time.perf_counter(), time.process_time()
        self.forward_backward(batch)
        self.update()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - started, time.process_time() - started_cpu


def timing_worker(args: argparse.Namespace) -> None:
    """The 1-tuple before and after steps alternated in one process (the same machine
    state for both; memory is measured elsewhere)."""
    setups = {name: Setup(name, args) for name in TIMED}
    batch = setups["before_1"].batch(setups["before_1"].config.model.input_size, args.seed)
    times: Dict[str, List[float]] = {name: [] for name in TIMED}
    cpu: Dict[str, List[float]] = {name: [] for name in TIMED}
    for r in range(args.rounds):
        for name in (TIMED if r % 2 == 0 else TIMED[::-1]):
            wall, seconds = setups[name].step(batch)
            times[name].append(wall)
            cpu[name].append(seconds)
    print(json.dumps({"wall": times, "cpu": cpu}))


def worker(args: argparse.Namespace) -> None:
    setup = Setup(args.worker, args)
    config, device, objective = setup.config, setup.device, setup.objective
    cuda = device.type == "cuda"
    tuples_per_pass = setup.tuples_per_pass
    batch = setup.batch(config.model.input_size, args.seed)
    if cuda:  # the input stays on the CPU; each pass is moved to the device
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device) / 2**20
    else:
        baseline, peak_rss, _ = memory_probe()

    wall: List[float] = []
    cpu: List[float] = []
    tensors: List[float] = []
    for r in range(1 + args.repeats):
        with contextlib.nullcontext() if cuda else tensor_peak(tensors):
            if r == 0:  # the first step's losses and gradients, for the comparison (not timed)
                losses = setup.forward_backward(batch)
                grads = {n: p.grad.detach().cpu().clone() for n, p in objective.named_parameters()
                         if p.grad is not None}
                torch.save({"losses": losses, "grads": grads}, args.result)
                del grads
                setup.update()
            else:
                seconds = setup.step(batch)
                wall.append(seconds[0])
                cpu.append(seconds[1])
    if cuda:
        peak = torch.cuda.max_memory_allocated(device) / 2**20 - baseline
        tensors = [peak]
    else:
        peak = peak_rss() - baseline
    print(json.dumps({
        "peak_mb": peak, "tensor_peak_mb": max(tensors), "wall_s": statistics.median(wall), "cpu_s": statistics.median(cpu),
        "wall_all": wall, "images": int(batch.images.shape[0]),
        "input_mb": batch.images.numel() * batch.images.element_size() / 2**20,
        "frozen_chunk": config.model.frozen_chunk, "tuples_per_pass": tuples_per_pass,
        "input_size": list(config.model.input_size),
    }))


def run_variant(name: str, args: argparse.Namespace, result: str, extra: Sequence[str] = ()) -> Dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--result", result,
               "--repeats", str(args.repeats), "--rounds", str(args.rounds), "--seed", str(args.seed),
               "--device", args.device]
    for override in list(args.overrides) + list(extra):
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


def render(args, results: Dict[str, Dict], skipped: Dict[str, Dict], diffs: Dict[str, Dict],
           timing: Optional[Dict[str, List[float]]], started: float, machine: str) -> str:
    cuda = args.device.startswith("cuda")
    ref = results["before_1"]
    argv = " ".join(sys.argv[1:])
    peak_label = "peak MB (`max_memory_allocated`)" if cuda else "peak RSS MB"
    tensor_label = "tensor peak MB (`max_memory_allocated` on a GPU)"
    size = "x".join(str(v) for v in ref["input_size"])
    lines = [
        f"## The paper's training step: memory and time (VGG16 + NetVLAD-64, {size})",
        "",
        f"Command: `python benchmarks/train_step_memory.py{' ' + argv if argv else ''}`  ",
        f"Machine: {machine}. Total run time {(time.time() - started) / 60:.1f} min.",
        "",
        f"Workload: `configs/pitts30k_vgg16_netvlad.yaml` with random weights (`pretrained: none`), generation 1 "
        f"(SARE-ind on region negatives + 0.5 x soft region loss), SGD; tuples of 22 random images of {size} "
        f"(query, positive, 10 negatives, 10 difficult positives), {ref['input_mb']:,.0f} MB of input per tuple. "
        f"Each variant in a fresh process: a first optimiser step (forward, backward, SGD update), whose losses "
        f"and gradients are compared across variants, then {args.repeats} timed step(s), all profiled. Peak memory "
        f"is over a baseline holding the model, the optimiser state and the step's input images: the peak RSS "
        f"increase (`VmHWM`; it also counts memory the C allocator keeps after tensors are freed) and the peak of "
        f"bytes held by torch tensors (the CPU allocator's total in the profiler's memory events: what "
        f"`torch.cuda.max_memory_allocated` counts on a GPU, cuDNN workspaces aside). MB = 2^20 bytes. The machine "
        f"is shared with other jobs: times are noisy, memory is not.",
        "",
        f"| tuples per step | variant | frozen_chunk | tuples_per_pass | {peak_label} | {tensor_label} "
        f"| wall s per step | CPU s per step | wall s per tuple vs before |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, (tuples, label) in VARIANTS.items():
        if name in skipped:
            e = skipped[name]
            if "peak_mb" in e:
                lines.append(f"| {tuples} | {label} | all | 0 | ~{e['peak_mb']:,.0f} (estimated) | "
                             f"~{e['tensor_peak_mb']:,.0f} (estimated) | | | |")
            else:
                lines.append(f"| {tuples} | {label} | all | 0 | not run | | | | |")
            continue
        if name not in results:
            continue
        r = results[name]
        chunk = "all" if name.startswith("before") else ("auto" if r["frozen_chunk"] == 0 else r["frozen_chunk"])
        ratio = (r["wall_s"] / tuples) / ref["wall_s"] if r["wall_s"] else float("nan")
        lines.append(f"| {tuples} | {label} | {chunk} | {r['tuples_per_pass']} | {r['peak_mb']:,.0f} | "
                     f"{r['tensor_peak_mb']:,.0f} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {ratio:.2f}x |")
    lines.append("")
    for name, e in skipped.items():
        available = f"{e['free']:,.0f} MB available" if e.get("free") is not None else "available memory unknown"
        if e.get("ratio_size"):
            lines.append(f"The {VARIANTS[name][0]}-tuple whole step was not run ({available}, 1.5 x its estimate "
                         f"needed); its peaks are the 1-tuple ones times the ratio measured at {e['ratio_size']}: "
                         f"{e['ratio']['peak_mb']:.2f} (RSS), {e['ratio']['tensor_peak_mb']:.2f} (tensors).  ")
        elif "ratio" in e:
            lines.append(f"The {VARIANTS[name][0]}-tuple whole step was not run ({available}); its peaks are "
                         f"estimated as 4 x the 1-tuple ones.  ")
    if timing:
        wall, cpu = timing["wall"], timing["cpu"]
        before, after = (min(wall[name]) for name in TIMED)
        rounds = ", ".join(f"{a / b:.3f}" for b, a in zip(*(wall[name] for name in TIMED)))
        cpu_ratio = min(cpu[TIMED[1]]) / min(cpu[TIMED[0]])
        lines.append(f"Interleaved timing, 1 tuple, both variants in one process alternating ({args.rounds} rounds; "
                     f"other jobs only add time, so the fastest step of each is compared): before {before:.1f} s, "
                     f"after {after:.1f} s: after / before = {after / before:.3f} wall, {cpu_ratio:.3f} CPU "
                     f"(wall ratio per round: {rounds}).  ")
    for name, d in diffs.items():
        lines.append(f"First-step losses and gradients, {name}: largest relative difference {d['losses']:.1e} "
                     f"(losses), {d['grads']:.1e} (gradients, max abs diff / max abs value per parameter).  ")
    if "after_1" in results and "after_ckpt_1" in results:
        saved = results["after_1"]["tensor_peak_mb"] - results["after_ckpt_1"]["tensor_peak_mb"]
        lines.append(f"Activation checkpointing of conv5 lowers the 1-tuple tensor peak by {saved:,.0f} MB.  ")
    return "\n".join(lines)


def estimate_before_4(args: argparse.Namespace, one: Optional[Dict], free: Optional[float], tmp: str) -> Dict:
    """The 4-tuple whole step's peaks, estimated as the 1-tuple ones times the 4-tuple /
    1-tuple ratio measured at half the input size (a quarter of the memory), when that
    fits; else times 4."""
    estimate = {"free": free, "ratio_size": None}
    if one is None:
        return estimate
    ratio = {"peak_mb": 4.0, "tensor_peak_mb": 4.0}
    if args.before_4 == "auto" and free is not None and free >= 1.5 * one["peak_mb"]:
        half = [v // 2 for v in one["input_size"]]
        extra = [f"model.input_size=[{half[0]},{half[1]}]"]
        small = {n: run_variant(n, args, os.path.join(tmp, f"{n}_half.pt"), extra) for n in ("before_1", "before_4")}
        ratio = {key: small["before_4"][key] / small["before_1"][key] for key in ratio}
        estimate["ratio_size"] = "x".join(str(v) for v in half)
    estimate.update({key: value * one[key] for key, value in ratio.items()})
    estimate["ratio"] = ratio
    return estimate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeats", type=int, default=1, help="timed steps after the first (compared) one")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the interleaved 1-tuple timing")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--before-4", choices=("auto", "run", "skip"), default="auto",
                        help="the 4-tuple step without chunking: run it only if the memory is available (auto)")
    parser.add_argument("--variants", nargs="*", choices=list(VARIANTS), help="run only these")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="a config override on top of the paper's configuration (e.g. a smaller input_size)")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--worker", choices=list(VARIANTS) + ["timing"], help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "timing":
        timing_worker(args)
        return
    if args.worker:
        worker(args)
        return

    started = time.time()
    machine = machine_description(args.device)
    results: Dict[str, Dict] = {}
    skipped: Dict[str, Dict] = {}
    outputs: Dict[str, Dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants or list(VARIANTS):
            if name == "before_4" and args.before_4 != "run":
                one = results.get("before_1")
                free = available_mb()
                if args.before_4 == "skip" or one is None or free is None or free < 1.5 * 4 * one["peak_mb"]:
                    skipped[name] = estimate_before_4(args, one, free, tmp)
                    print(f"{name}: skipped ({skipped[name]})", file=sys.stderr)
                    continue
            path = os.path.join(tmp, f"{name}.pt")
            results[name] = run_variant(name, args, path)
            outputs[name] = torch.load(path, weights_only=True)
            print(f"{name}: {json.dumps(results[name])}", file=sys.stderr)
    timing = None
    if all(name in results for name in TIMED) and args.rounds > 0:
        timing = run_variant("timing", args, os.devnull)
        print(f"timing: {json.dumps(timing)}", file=sys.stderr)
    diffs = {}
    for after, before in (("after_1", "before_1"), ("after_ckpt_1", "before_1"), ("after_4", "before_4")):
        if after in outputs and before in outputs:
            diffs[f"{VARIANTS[after][1]} vs before ({VARIANTS[after][0]} tuple(s))"] = compare(outputs[before],
                                                                                              outputs[after])
            print(after, per_parameter(outputs[before], outputs[after]), file=sys.stderr)
    if "before_1" not in results:
        sys.exit("the table needs the before_1 variant")
    block = render(args, results, skipped, diffs, timing, started, machine)
    print(block)
    if not args.no_write:
        write_block("train_step_memory", block)
        print("wrote docs/benchmarks.md")


if __name__ == "__main__":
    main()
