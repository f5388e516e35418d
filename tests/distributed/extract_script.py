"""Run under torchrun (or alone): sharded extraction of the tiny city, saved by rank 0."""
import sys

import numpy as np
import torch

from sfrs import distributed
from sfrs.config import Config, build_config
from sfrs.data import open_dataset
from sfrs.models import build_network
from sfrs.retrieval import extract_descriptors_sharded
from tests.tiny import TINY_MODEL

distributed.setup("cpu")
torch.manual_seed(0)
model = build_network(build_config(Config, overrides=TINY_MODEL).model)
split = open_dataset("synthetic:tiny", "test")
descriptors = extract_descriptors_sharded(model, split.database_paths, model.transform(), batch_size=7, progress=False)
if distributed.is_main():
    np.save(sys.argv[1], descriptors)
distributed.teardown()
