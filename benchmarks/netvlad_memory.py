"""NetVLAD aggregation: memory and time of our formulation vs the materialised residual.

Ours (``sfrs.models.heads.NetVLAD``) computes V = A^T X - c_k * sum_i a_ik with one batched
matmul. The reference implementation materialises the (B, K, D, h*w) residual tensor and
then takes a weighted sum over locations; that tensor is ~629 MB for a batch of 4 VGG16
conv5_3 maps of 480x640 images (30x40x512, K = 64).

Each variant runs forward + backward (gradients w.r.t. the features, the centroids and the
assignment weights) in a fresh subprocess. Peak memory is the increase of the process's
peak RSS (``VmHWM``, reset through /proc/self/clear_refs) over its baseline taken after the inputs are
allocated and a tiny warm-up has loaded the kernels; on CUDA it is
``torch.cuda.max_memory_allocated`` over the allocated baseline. Time is the median over
``--repeats`` runs after ``--warmup`` runs. Both variants share parameters and inputs
(same seed); the parent checks that their outputs and gradients agree.

Usage (from the repository root):
    python benchmarks/netvlad_memory.py [--repeats 5] [--no-write]

Writes a Markdown table between ``<!-- netvlad_memory:start -->`` and
``<!-- netvlad_memory:end -->`` in docs/benchmarks.md, leaving the rest of the file alone.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks.common import cpu_name, memory_probe, write_block  # noqa: E402
from sfrs.models import NetVLAD  # noqa: E402

VARIANTS = {
    "ours": "ours: `A^T X - c_k * sum_i a_ik` (one matmul)",
    "materialised": "materialised residual (B, K, D, h*w) (reference)",
}


def materialised_netvlad(head: NetVLAD, x: torch.Tensor) -> torch.Tensor:
    """The reference formulation: residual tensor (B, K, D, N), weighted, summed over N."""
    n, c = x.shape[:2]
    if head.normalize_input:
        x = F.normalize(x, p=2, dim=1)
    soft_assign = F.softmax(head.assign(x).view(n, head.clusters, -1), dim=1)
    x_flatten = x.view(n, c, -1)
    residual = x_flatten.expand(head.clusters, -1, -1, -1).permute(1, 0, 2, 3) - \
        head.centroids.expand(x_flatten.size(-1), -1, -1).permute(1, 2, 0).unsqueeze(0)
    residual *= soft_assign.unsqueeze(2)
    vlad = residual.sum(dim=-1)
    vlad = F.normalize(vlad, p=2, dim=2)
    vlad = vlad.view(x.size(0), -1)
    return F.normalize(vlad, p=2, dim=1)


def _make(args: argparse.Namespace, batch: int, height: int, width: int, device: torch.device):
    torch.manual_seed(args.seed)
    head = NetVLAD(clusters=args.clusters, dim=args.dim).to(device)
    generator = torch.Generator().manual_seed(args.seed + 1)
    x = torch.randn(batch, args.dim, height, width, generator=generator).to(device).requires_grad_(True)
    grad_out = torch.randn(batch, head.out_dim, generator=generator).to(device)
    return head, x, grad_out


def _step(variant: str, head: NetVLAD, x: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
    out = head(x) if variant == "ours" else materialised_netvlad(head, x)
    out.backward(grad_out)
    return out


def worker(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    # Tiny warm-up: loads kernels, thread pools and allocator arenas before the baseline.
    _step(args.worker, *_make(args, 1, 2, 2, device))
    head, x, grad_out = _make(args, args.batch, args.height, args.width, device)
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device) / 2**20
    else:
        baseline, peak_rss, _ = memory_probe()
    times: List[float] = []
    out = None
    for i in range(args.warmup + args.repeats):
        head.zero_grad(set_to_none=True)
        x.grad = None
        start = time.perf_counter()
        out = _step(args.worker, head, x, grad_out)
        if cuda:
            torch.cuda.synchronize(device)
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated(device) / 2**20 if cuda else peak_rss()) - baseline
    torch.save(
        {
            "out": out.detach().cpu(),
            "grad_x": x.grad.cpu(),
            "grad_centroids": head.centroids.grad.cpu(),
            "grad_assign": head.assign.weight.grad.cpu(),
        },
        args.result,
    )
    print(json.dumps({"median_ms": 1000 * statistics.median(times), "min_ms": 1000 * min(times),
                      "peak_mb": peak,
                      "times_ms": [1000 * t for t in times]}))


def run_variant(variant: str, args: argparse.Namespace, result: str) -> Dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", variant, "--result", result]
    for key in ("batch", "height", "width", "dim", "clusters", "repeats", "warmup", "seed", "device"):
        command += [f"--{key}", str(getattr(args, key))]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        sys.exit(f"{variant} worker failed:\n{completed.stderr}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def render(args: argparse.Namespace, results: Dict[str, Dict], diffs: Dict[str, float],
           load: str) -> str:
    ref = results["materialised"]
    residual_mb = args.batch * args.clusters * args.dim * args.height * args.width * 4 / 2**20
    if args.device.startswith("cuda"):
        machine = f"{torch.cuda.get_device_name(torch.device(args.device))}, "
        memory = "`torch.cuda.max_memory_allocated` minus the allocated baseline"
    else:
        machine = (f"{os.cpu_count()} CPUs ({cpu_name()}), {torch.get_num_threads()} torch threads, "
                   f"load average before the run {load} (other jobs share the CPUs: times are "
                   f"noisy, memory is not), ")
        memory = ("peak RSS increase (`VmHWM` of /proc/self/status, reset to the current RSS once the "
                  "inputs are allocated) over that baseline")
    argv = " ".join(sys.argv[1:])
    vgg = " (VGG16 conv5_3 of a 480x640 image)" if (args.dim, args.height, args.width) == (512, 30, 40) else ""
    lines = [
        "## NetVLAD aggregation: memory and time",
        "",
        f"Command: `python benchmarks/netvlad_memory.py{' ' + argv if argv else ''}`  ",
        f"Machine: {machine}torch {torch.__version__}, device `{args.device}`, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}.",
        "",
        f"Workload: batch {args.batch}, feature map {args.dim}x{args.height}x{args.width}{vgg}, "
        f"K = {args.clusters}, float32; forward + backward "
        f"(gradients w.r.t. features, centroids and assignment weights). Median of "
        f"{args.repeats} runs after {args.warmup} warm-up; each variant in a fresh process; "
        f"peak memory = {memory}. The materialised residual tensor alone is "
        f"{residual_mb:,.0f} MB (MB = 2^20 bytes throughout).",
        "",
        "| variant | median ms (fwd+bwd) | min ms | peak MB | median time vs materialised "
        "| peak memory vs materialised |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for variant, label in VARIANTS.items():
        r = results[variant]
        lines.append(
            f"| {label} | {r['median_ms']:,.1f} | {r['min_ms']:,.1f} | {r['peak_mb']:,.1f} | "
            f"{r['median_ms'] / ref['median_ms']:.3f}x | {r['peak_mb'] / ref['peak_mb']:.3f}x |"
        )
    ours = results["ours"]
    speedup = ref["median_ms"] / ours["median_ms"]
    speed = f"{speedup:,.1f}x faster" if speedup >= 1 else f"{1 / speedup:,.1f}x slower"
    lines += [
        "",
        f"Ours uses {ref['peak_mb'] / max(ours['peak_mb'], 1e-6):,.1f}x less peak memory and is "
        f"{speed} (median; {ref['min_ms'] / ours['min_ms']:,.1f}x by the fastest run). "
        f"Outputs agree: max abs diff "
        f"{diffs['out']:.2e} (descriptors), {diffs['grad_x']:.2e} (feature gradients), "
        f"{diffs['grad_centroids']:.2e} (centroid gradients), "
        f"{diffs['grad_assign']:.2e} (assignment-weight gradients).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--height", type=int, default=30)
    parser.add_argument("--width", type=int, default=40)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--clusters", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--docs", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--worker", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    results, outputs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in VARIANTS:
            result = os.path.join(tmp, f"{variant}.pt")
            results[variant] = run_variant(variant, args, result)
            times = ", ".join(f"{t:.0f}" for t in results[variant]["times_ms"])
            print(f"{variant}: run times ms [{times}]", file=sys.stderr)
            outputs[variant] = torch.load(result, weights_only=True)
    diffs = {
        key: (outputs["ours"][key] - outputs["materialised"][key]).abs().max().item()
        for key in outputs["ours"]
    }
    block = render(args, results, diffs, load)
    print(block)
    if not args.no_write:
        write_block("netvlad_memory", block, args.docs)
        print(f"wrote {args.docs}")


if __name__ == "__main__":
    main()
