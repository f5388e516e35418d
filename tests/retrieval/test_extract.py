"""Descriptor extraction: file order, HDF5 streaming, worker processes, clean image errors."""
import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from sfrs.data import build_transform, load_image
from sfrs.errors import DataError
from sfrs.retrieval.extract import extract_descriptors

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


class TinyModel(nn.Module):
    """Per-channel mean and max of the image: (B, 3, H, W) -> (B, 6)."""

    def __init__(self):
        super().__init__()
        self.dropout = nn.Dropout(0.5)  # would randomise descriptors if left in train mode

    def forward(self, images):
        pooled = torch.cat([images.mean(dim=(2, 3)), images.amax(dim=(2, 3))], dim=1)
        return self.dropout(pooled)


@pytest.fixture
def image_paths(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(7):
        path = tmp_path / f"img_{i}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(rng.integers(0, 255, (12 + i, 16, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def reference(paths, transform):
    model = TinyModel().eval()
    with torch.no_grad():
        return np.stack([model(transform(load_image(p))[None])[0].numpy() for p in paths])


def test_extract_descriptors__rows_in_file_order_when_batch_size_does_not_divide_n(image_paths):
    transform = build_transform((8, 8), MEAN, STD)
    model = TinyModel().train()
    got = extract_descriptors(model, image_paths, transform, batch_size=3, progress=False)
    assert got.shape == (7, 6) and got.dtype == np.float32
    np.testing.assert_allclose(got, reference(image_paths, transform), rtol=1e-6, atol=1e-6)
    assert model.training  # the caller's mode is restored


def test_extract_descriptors__streaming_into_hdf5_equals_in_memory(image_paths, tmp_path):
    transform = build_transform((8, 8), MEAN, STD)
    in_memory = extract_descriptors(TinyModel(), image_paths, transform, batch_size=2, progress="test")
    with h5py.File(tmp_path / "desc.h5", "w") as handle:
        dataset = handle.create_dataset("database", shape=(7, 6), dtype="float32")
        returned = extract_descriptors(TinyModel(), image_paths, transform, batch_size=2, out=dataset, progress=False)
        assert returned is dataset
        np.testing.assert_array_equal(dataset[...], in_memory)


def test_extract_descriptors__wrong_out_shape_is_a_value_error(image_paths):
    transform = build_transform((8, 8), MEAN, STD)
    with pytest.raises(ValueError, match="out must have shape"):
        extract_descriptors(TinyModel(), image_paths, transform, out=np.zeros((3, 6)), progress=False)
    with pytest.raises(ValueError, match="4 columns"):
        extract_descriptors(TinyModel(), image_paths, transform, out=np.zeros((7, 4)), progress=False)


def test_extract_descriptors__aspect_preserving_resize_batches_images_of_different_sizes(image_paths):
    transform = build_transform((8, 8), MEAN, STD, shorter_side=8)
    got = extract_descriptors(TinyModel(), image_paths, transform, batch_size=4, progress=False)
    np.testing.assert_allclose(got, reference(image_paths, transform), rtol=1e-6, atol=1e-6)


def test_extract_descriptors__two_workers_give_the_same_rows(image_paths):
    transform = build_transform((8, 8), MEAN, STD)
    got = extract_descriptors(TinyModel(), image_paths, transform, batch_size=3, num_workers=2, progress=False)
    np.testing.assert_allclose(got, reference(image_paths, transform), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_extract_descriptors__corrupt_image_is_a_one_line_error_naming_it(image_paths, num_workers):
    with open(image_paths[4], "wb") as handle:
        handle.write(b"\x89PNG broken")
    transform = build_transform((8, 8), MEAN, STD)
    with pytest.raises(DataError) as info:
        extract_descriptors(TinyModel(), image_paths, transform, batch_size=2, num_workers=num_workers, progress=False)
    message = str(info.value)
    assert message == f"{image_paths[4]}: cannot read image (not a recognised image format)"


def test_extract_descriptors__model_output_must_be_2d(image_paths):
    transform = build_transform((8, 8), MEAN, STD)
    with pytest.raises(ValueError, match=r"shape \(B, D\)"):
        extract_descriptors(lambda x: x, image_paths, transform, progress=False)
