"""Shared by the benchmark scripts: machine description and marked blocks in docs/benchmarks.md."""
from __future__ import annotations

import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Optional

import torch

from sfrs.utils.io import write_marked_block

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
    """Replace the marked block ``name`` in docs/benchmarks.md, leaving the other sections alone."""
    write_marked_block(path, name, block, "Benchmarks")


def _maxrss_mb() -> float:
    scale = 1.0 if sys.platform == "darwin" else 1024.0  # KiB on Linux, bytes on macOS
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _status_mb(field: str) -> Optional[float]:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def memory_probe():
    """(baseline MB, peak function, method) for the peak-over-baseline measurement.

    On Linux: reset VmHWM to the current RSS and read VmHWM at the end. ``ru_maxrss`` is
    not usable as such in a subprocess: Linux keeps it across ``execve``, so a child starts
    with the RSS its parent had when it forked (1 GB here after the 1M x 256 data).
    """
    if _status_mb("VmHWM") is not None and _reset_peak():
        return _status_mb("VmRSS"), lambda: _status_mb("VmHWM"), "VmHWM"
    return _maxrss_mb(), _maxrss_mb, "ru_maxrss"


