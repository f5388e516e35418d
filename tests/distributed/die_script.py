"""Rank 1 dies before a collective; rank 0 must fail fast with a clear line."""
import os
import sys

from sfrs import distributed
from sfrs.errors import SfrsError

distributed.setup("cpu", timeout_s=30)
if distributed.rank() == 1:
    os._exit(3)
try:
    distributed.barrier()
    distributed.all_reduce_sum(1.0)
except SfrsError as exc:
    print(f"error: {exc}", file=sys.stderr, flush=True)
    sys.exit(2)
