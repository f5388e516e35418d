"""Projection heads of the self-supervised terms on high-dimensional descriptors.

VG-SSL's heads take the global descriptor; a 32,768-d NetVLAD vector (VGG16 + NetVLAD-64)
makes the first Linear of a 4,096-wide head 134M parameters. ``sfrs`` puts a learned
linear reduction in front (``loss.terms.<name>.reduce_dim``; automatic: to 512 above
4,096 dimensions). This script measures, side by side in one run, parameters, the time of
one forward + backward of the projection and loss for a batch of GeoPairs, and peak memory
over the baseline, for the reference heads with and without the reduction.

Usage (from the repository root):
    python benchmarks/ssl_head.py [--pairs 64] [--repeats 3] [--no-write]
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

import torch  # noqa: E402

from benchmarks.common import machine_description, memory_probe, write_block  # noqa: E402
from sfrs.training.terms.geopair import mlp  # noqa: E402
from sfrs.training.terms.ssl_losses import nt_xent, vicreg_parts  # noqa: E402

HEADS = {  # name: (hidden, out, layers, loss)
    "simclr Linear(d, 1024)": (2048, 1024, 1, "simclr"),
    "vicreg 2 x 4096": (4096, 4096, 2, "vicreg"),
}


def head(dim: int, reduce: int, hidden: int, out: int, layers: int) -> torch.nn.Module:
    body = mlp(reduce or dim, hidden, out, layers)
    return torch.nn.Sequential(torch.nn.Linear(dim, reduce), body) if reduce else body


def measure(dim: int, reduce: int, spec, pairs: int, repeats: int):
    hidden, out, layers, loss = spec
    torch.manual_seed(0)
    module = head(dim, reduce, hidden, out, layers)
    x, y = torch.randn(pairs, dim, requires_grad=True), torch.randn(pairs, dim)
    params = sum(p.numel() for p in module.parameters())
    baseline, peak, _ = memory_probe()
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        z1, z2 = module(x), module(y)
        value = nt_xent(z1, z2, 0.07) if loss == "simclr" else sum(vicreg_parts(z1, z2).values())
        value.backward()
        times.append((time.perf_counter() - start) * 1000)
        module.zero_grad(set_to_none=True)
        x.grad = None
    return params, statistics.median(times[1:]), peak() - baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    lines = [
        "## Self-supervised projection heads on NetVLAD descriptors",
        "",
        "Command: `python benchmarks/ssl_head.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "") + "`  ",
        f"Machine: {machine_description()}.",
        "",
        f"One forward + backward of the projection of {args.pairs} GeoPairs (both sides) and the loss, "
        f"median of {args.repeats} after a warm-up; the network itself is not included.",
        "",
        "| descriptor | head | reduction | head parameters | ms per step | peak MB |",
        "|---:|---|---|---:|---:|---:|",
    ]
    for dim in (2048, 32768):
        for name, spec in HEADS.items():
            for reduce in (0, 1024, 512):
                params, ms, mb = measure(dim, reduce, spec, args.pairs, args.repeats)
                label = f"Linear({dim:,}, {reduce})" if reduce else "none"
                lines.append(f"| {dim:,} | {name} | {label} | {params / 1e6:,.1f}M | {ms:,.0f} | {mb:,.0f} |")
    lines += ["", "Default: no reduction up to 4,096 dimensions, a learned Linear(d, 512) above "
              "(`loss.terms.<name>.reduce_dim`, 0 = none)."]
    block = "\n".join(lines)
    print(block)
    if not args.no_write:
        write_block("ssl_head", block)


if __name__ == "__main__":
    main()
