"""Descriptor extraction in fp32 / bf16 (/ fp16), contiguous or channels-last, on this machine.

Measures, side by side in one run:

- this device's attainable convolution throughput: one ``nn.Conv2d`` 3x3 512->512 on a
  30x40 map (VGG16's conv5 at 480x640), GFLOP/s per precision and memory format;
- network throughput (images/s, random input, no image decoding) of VGG16 + NetVLAD
  (64 clusters, random weights) at 480x640 and of the ``small`` model at 96x128, through
  the extraction module (:class:`sfrs.retrieval.test_time.ViewEncoder`: autocast, then
  float32 L2-normalised descriptors), with VGG16's achieved GFLOP/s (its convolution
  FLOPs counted by hooks) as a fraction of the attainable conv throughput;
- Recall@1/5/10 on the ``synthetic:small`` test split of a small trained model
  (``--checkpoint``, or one trained here: generation 0 of the default schedule for
  ``--epochs`` epochs of ``--queries`` queries), fp32 against bf16.

Writes its table into docs/benchmarks.md (block ``extraction_precision``).

Usage (from the repository root; about 3-4 minutes on 2 CPU cores):
    python benchmarks/extraction_precision.py [--images 8] [--repeats 2] [--checkpoint best.pt] [--no-write]
    python benchmarks/extraction_precision.py --tiny --no-write     # seconds: a check of the script
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Tuple

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks.common import machine_description, write_block  # noqa: E402
from sfrs.config import ModelConfig, load_config  # noqa: E402
from sfrs.models import build_network, load_network  # noqa: E402
from sfrs.retrieval import evaluate  # noqa: E402
from sfrs.retrieval.test_time import TestTime, ViewEncoder  # noqa: E402
from sfrs.utils.precision import autocast  # noqa: E402

VARIANTS = (("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True))


def conv_gflops(precision: str, channels_last: bool, batch: int, repeats: int, size: Tuple[int, int]) -> float:
    torch.manual_seed(0)
    conv = nn.Conv2d(512, 512, 3, padding=1)
    x = torch.randn(batch, 512, *size)
    if channels_last:
        conv, x = conv.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    flops = 2 * 512 * 512 * 9 * size[0] * size[1] * batch
    seconds = float("inf")
    with torch.inference_mode(), autocast("cpu", precision):
        conv(x)  # warm-up: kernel selection, allocations
        for _ in range(repeats):  # best call: what the device attains, not what a busy machine leaves
            start = time.perf_counter()
            conv(x)
            seconds = min(seconds, time.perf_counter() - start)
    return flops / seconds / 1e9


def conv_flops_per_image(model: nn.Module, size: Tuple[int, int]) -> float:
    """Multiply-adds x 2 of every Conv2d (and Linear) for one image, counted by hooks."""
    total = [0.0]

    def count(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total[0] += 2 * output.numel() * (module.in_channels // module.groups) * kh * kw
        else:
            total[0] += 2 * output.numel() * module.in_features

    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.inference_mode():
        model.eval()(torch.randn(1, 3, *size))
    for handle in handles:
        handle.remove()
    return total[0]


def images_per_second(model: nn.Module, size: Tuple[int, int], variants, images: int, batch: int,
                      repeats: int) -> Dict[Tuple[str, bool], float]:
    """Best images/s of each (precision, channels_last) variant over ``repeats`` passes of
    ``images`` images; the variants take turns pass by pass, so that a change of load on a
    shared machine touches them alike (and best-of discards the disturbed passes)."""
    model.eval()
    x = torch.randn(images, 3, *size, generator=torch.Generator().manual_seed(0))
    best: Dict[Tuple[str, bool], float] = {}
    with torch.inference_mode():
        for attempt in range(repeats + 1):  # attempt 0: one warm-up batch per variant
            for precision, channels_last in variants:
                model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
                encoder = ViewEncoder(model, precision=precision, channels_last=channels_last)
                count = min(batch, images) if attempt == 0 else images
                start = time.perf_counter()
                for first in range(0, count, batch):
                    out = encoder(x[first:min(first + batch, count)])
                    assert out.dtype == torch.float32
                rate = count / (time.perf_counter() - start)
                if attempt > 0:
                    best[(precision, channels_last)] = max(rate, best.get((precision, channels_last), 0.0))
    model.to(memory_format=torch.contiguous_format)
    return best


def trained_small_model(args, work: Path):
    if args.checkpoint:
        return load_network(args.checkpoint), f"`{args.checkpoint}`"
    from sfrs.training.generations import train

    overrides = [f"data.dataset={args.dataset}", f"train.queries_per_epoch={args.queries}"] + args.overrides
    config = load_config(None, overrides, generations=1, epochs=args.epochs)
    torch.manual_seed(0)
    train(config, work / "run", progress=False, log=lambda line: None)
    return load_network(work / "run" / "best.pt"), (
        f"trained here: generation 0 (SARE), {args.epochs} epochs of {args.queries} queries on {args.dataset} "
        f"train, best on val")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--images", type=int, default=8, help="images per throughput measurement")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--vgg-size", default="480,640")
    parser.add_argument("--small-size", default="96,128")
    parser.add_argument("--checkpoint", help="a trained small model (default: train one here)")
    parser.add_argument("--dataset", default="synthetic:small")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override for training")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes and data: checks the script in seconds")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.tiny:
        args.images, args.batch, args.repeats, args.vgg_size, args.small_size = 2, 2, 1, "64,80", "48,64"
        args.dataset, args.epochs, args.queries = "synthetic:tiny", 1, 16
        args.overrides = args.overrides + ["model.input_size=[48,64]", "model.head_options={clusters: 8}",
                                           "model.init_images=40"]
    vgg_size = tuple(int(v) for v in args.vgg_size.split(","))
    small_size = tuple(int(v) for v in args.small_size.split(","))
    conv_map = (30, 40) if not args.tiny else (8, 10)

    attainable: Dict[Tuple[str, bool], float] = {}
    for precision in ("fp32", "bf16", "fp16"):
        for channels_last in (False, True):
            attainable[(precision, channels_last)] = conv_gflops(precision, channels_last, 4,
                                                                 2 if precision == "fp16" else 8, conv_map)

    torch.manual_seed(0)
    vgg = build_network(ModelConfig(backbone="vgg16", pretrained="none", input_size=vgg_size,
                                    head_options={"clusters": 64}))
    vgg_flops = conv_flops_per_image(vgg, vgg_size)
    small = build_network(ModelConfig(input_size=small_size))
    rows = []
    for name, model, size, flops in (("VGG16 + NetVLAD-64", vgg, vgg_size, vgg_flops),
                                     ("small + NetVLAD-16", small, small_size, None)):
        variants = VARIANTS + ((("fp16", False),) if model is small else ())
        # the small model is ~100x cheaper: more images, so that a measurement lasts long enough
        count = args.images if model is vgg else args.images * 16
        rates = images_per_second(model, size, variants, count, args.batch * (1 if model is vgg else 8), args.repeats)
        for precision, channels_last in variants:
            rows.append((name, size, precision, channels_last, rates[(precision, channels_last)], flops))

    with tempfile.TemporaryDirectory() as work:
        trained, origin = trained_small_model(args, Path(work))
        from sfrs.data import open_dataset

        split = open_dataset(args.dataset, "test")
        recalls = {}
        for precision in ("fp32", "bf16"):
            report = evaluate(trained, split, ns=(1, 5, 10), progress=False, test_time=TestTime(precision=precision))
            recalls[precision] = report.report["recall"]

    command = "python benchmarks/extraction_precision.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    lines = [
        "## Extraction precision: fp32 / bf16, channels-last",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine_description()}.",
        "",
        f"Attainable convolution throughput (`nn.Conv2d` 3x3 512->512 on a batch of 4 {conv_map[0]}x{conv_map[1]} "
        "maps, GFLOP/s, best of 8 calls; fp16 of 2):",
        "",
        "| precision | contiguous | channels-last |",
        "|---|---:|---:|",
    ]
    for precision in ("fp32", "bf16", "fp16"):
        lines.append(f"| {precision} | {attainable[(precision, False)]:,.1f} | {attainable[(precision, True)]:,.1f} |")
    lines += [
        "",
        f"Network throughput: {args.images} random images in batches of {args.batch} (small model: "
        f"{args.images * 16} in batches of {args.batch * 8}), best of {args.repeats} passes after one warm-up batch, "
        "the variants taking turns pass by pass, through the extraction module (autocast, float32 L2-normalised descriptors); "
        "no image decoding. VGG16 counts "
        f"{vgg_flops / 1e9:,.1f} GFLOP per {vgg_size[0]}x{vgg_size[1]} image (convolutions, hooks).",
        "",
        "| model | input | precision | channels-last | images/s | GFLOP/s | of attainable conv |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for name, size, precision, channels_last, rate, flops in rows:
        achieved = f"{rate * flops / 1e9:,.1f}" if flops else ""
        best = max(attainable[(precision, False)], attainable[(precision, True)])
        share = f"{100 * rate * flops / 1e9 / best:.0f}%" if flops else ""
        lines.append(f"| {name} | {size[0]}x{size[1]} | {precision} | {'yes' if channels_last else 'no'} | "
                     f"{rate:,.2f} | {achieved} | {share} |")
    lines += [
        "",
        f"Recall on {args.dataset} test ({split.num_queries:,} queries, {split.num_database:,} database images) of "
        f"the small model ({origin}):",
        "",
        "| precision | R@1 | R@5 | R@10 |",
        "|---|---:|---:|---:|",
    ]
    for precision in ("fp32", "bf16"):
        r = recalls[precision]
        lines.append(f"| {precision} | {r['1']:.1f} | {r['5']:.1f} | {r['10']:.1f} |")
    diff = {n: recalls["bf16"][n] - recalls["fp32"][n] for n in ("1", "5", "10")}
    lines.append(f"| bf16 - fp32 | {diff['1']:+.1f} | {diff['5']:+.1f} | {diff['10']:+.1f} |")
    vgg_rate = {(precision, channels_last): rate for name, _, precision, channels_last, rate, _ in rows
                if name.startswith("VGG16")}
    base = vgg_rate[("fp32", False)]
    lines += [
        "",
        f"Reading: on this machine VGG16 + NetVLAD at {vgg_size[0]}x{vgg_size[1]} extracts "
        f"{vgg_rate[('fp32', True)] / base:.2f}x as fast with channels-last, {vgg_rate[('bf16', False)] / base:.2f}x "
        f"with bf16 and {vgg_rate[('bf16', True)] / base:.2f}x with both, as fp32 contiguous; bf16 moves the small "
        f"model's Recall@1/5/10 by {diff['1']:+.1f}/{diff['5']:+.1f}/{diff['10']:+.1f} points.",
        "",
        "\"Of attainable conv\" divides VGG16's achieved GFLOP/s by the best layout of the same precision in the "
        "first table; it can exceed 100%, the reference being one layer shape (conv5's map) while VGG16's earlier "
        "layers run on larger maps, which may use the cores better. fp16 on a CPU runs through autocast but without fast kernels on most CPUs (see its "
        "conv row); it is measured on the small model only.",
    ]
    block = "\n".join(lines)
    print(block)
    if not args.no_write:
        write_block("extraction_precision", block)


if __name__ == "__main__":
    main()
