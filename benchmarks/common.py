"""Shared by the benchmark scripts: machine description and marked blocks in docs/benchmarks.md."""
from __future__ import annotations

import os
import platform
import re
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "benchmarks.md"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_description(device: str = "cpu") -> str:
    if device.startswith("cuda"):
        hardware = torch.cuda.get_device_name(torch.device(device))
    else:
        load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
        hardware = (f"{os.cpu_count()} CPUs ({cpu_name()}), {torch.get_num_threads()} torch threads, "
                    f"load average before the run {load}")
    return (f"{hardware}; torch {torch.__version__}, device `{device}`, Python {platform.python_version()}, "
            f"{time.strftime('%Y-%m-%d')}")


def write_block(name: str, block: str, path: Path = DOCS) -> None:
    """Replace the block between ``<!-- name:start -->`` and ``<!-- name:end -->`` in
    ``path`` (appending it when absent), leaving the other benchmarks' sections alone."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    body = f"{start}\n{block.strip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: body, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + body + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
