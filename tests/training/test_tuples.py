import numpy as np
import torch

from sfrs.config import Config, build_config
from sfrs.data import load_image, open_dataset
from sfrs.models import build_network
from sfrs.training import ViewRequest
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
    teacher = np.arange(2 * 2 * 9, dtype=np.float32).reshape(2, 2, 9)
    dataset = TupleDataset(split, tuples, 2, transform, seed=0, teacher=teacher)
    batch = dataset.collate([dataset[1], dataset[0]])  # labels must follow their tuple, not a row index
    assert batch.images.shape[0] == 2 * 5  # query + positive + 2 negatives + 1 valid difficult each
    assert batch.difficult[1, 1] == -1 and batch.difficult[0, 0] == -1
    torch.testing.assert_close(batch.teacher, torch.from_numpy(teacher[[1, 0]]))
    batch = dataset.collate([dataset[0], dataset[1]])

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
    a = TupleDataset(split, tuples, 1, transform, seed=5)
    torch.manual_seed(123)
    first = a[1]["images"]
    torch.manual_seed(999)  # global RNG state must not matter
    second = a[1]["images"]
    torch.testing.assert_close(first, second)
    other_seed = TupleDataset(split, tuples, 1, transform, seed=6)[1]["images"]
    assert not torch.equal(first, other_seed)


def test_views__requested_by_terms_arrive_in_the_batch(tiny_city_root):
    split = open_dataset("synthetic:tiny", "train")
    model = build_network(build_config(Config, overrides=TINY_MODEL).model)
    transform = model.transform()
    flipped = ViewRequest("positive", lambda image: transform(image).flip(-1))
    tuples = assemble_tuples(np.array([0, 3]), np.array([10, 11]), np.array([[20], [22]]), np.zeros((2, 0), int))
    dataset = TupleDataset(split, tuples, 1, transform, seed=0, views={"flipped": flipped})
    batch = dataset.collate([dataset[0], dataset[1]])
    assert batch.views["flipped"].shape == (2, 3, 48, 64)
    torch.testing.assert_close(batch.views["flipped"][1], transform(load_image(split.database_paths[11])).flip(-1))
