"""Tiny model and training settings that keep tests fast (seconds) on a CPU."""

TINY_MODEL = [
    "model.input_size=[48,64]",
    "model.head_options={clusters: 8}",
    "model.init_images=40",
    "model.init_descriptors_per_image=20",
]

TINY_TRAINING = TINY_MODEL + [
    "mining.negatives=3",
    "mining.difficult_positives=3",
    "mining.positive_candidates=6",
    "mining.rerank_k1=4",
    "mining.cache_refresh=12",
    "train.queries_per_epoch=16",
    "train.checkpoint_every=2",
    "train.tensorboard_examples=2",
    "optim.lr=0.01",
    "data.dataset=synthetic:tiny",
    "data.batch_size=16",
]
