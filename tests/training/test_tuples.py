import numpy as np
import torch

from sfrs.config import Config, build_config
from sfrs.data.formats import open_dataset
from sfrs.data.images import load_image
from sfrs.models.network import build_network
from sfrs.training.optim import build_train_transform
from sfrs.training.tuples import TupleDataset, assemble_tuples
from tests.tiny import TINY_MODEL


def test_collate__positions_point_at_the_right_images(tiny_city_root):
    split = open_dataset("synthetic:tiny", "train")
    model = build_network(build_config(Config, overrides=TINY_MODEL).model)
    transform = model.transform()
    tuples = assemble_tuples(
        np.array([0, 3]), np.array([10, 11]), np.array([[20, 21], [22, 23]]), np.array([[30, -1], [-1, 31]])
    )
    dataset = TupleDataset(split, np.array([7, 8]), tuples, 2, transform, seed=0)
    batch = dataset.collate([dataset[0], dataset[1]])
    assert batch.images.shape[0] == 2 * 5  # query + positive + 2 negatives + 1 valid difficult each
    assert batch.rows.tolist() == [7, 8]
    assert batch.difficult[0, 1] == -1 and batch.difficult[1, 0] == -1

    def image(path):
        return transform(load_image(path))

    torch.testing.assert_close(batch.images[batch.query[1]], image(split.query_paths[3]))
    torch.testing.assert_close(batch.images[batch.positive[0]], image(split.database_paths[10]))
    torch.testing.assert_close(batch.images[batch.negatives[1, 1]], image(split.database_paths[23]))
    torch.testing.assert_close(batch.images[batch.difficult[1, 1]], image(split.database_paths[31]))


def test_augmentation__depends_on_seed_and_index_only(tiny_city_root):
    split = open_dataset("synthetic:tiny", "train")
    config = build_config(Config, overrides=TINY_MODEL)
    model = build_network(config.model)
    transform = build_train_transform(model, config.augment)
    tuples = assemble_tuples(np.array([0, 1]), np.array([2, 3]), np.array([[4], [5]]), np.zeros((2, 0), int))
    a = TupleDataset(split, np.arange(2), tuples, 1, transform, seed=5)
    torch.manual_seed(123)
    first = a[1][0]
    torch.manual_seed(999)  # global RNG state must not matter
    second = a[1][0]
    torch.testing.assert_close(first, second)
    other_seed = TupleDataset(split, np.arange(2), tuples, 1, transform, seed=6)[1][0]
    assert not torch.equal(first, other_seed)
