"""Image decoding errors, evaluation transforms and unwrapping of DataLoader worker errors."""
import numpy as np
import pytest
import torch
from PIL import Image

from sfrs.data.images import ImageListDataset, build_transform, load_image, unwrap_worker_error
from sfrs.errors import DataError

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def test_load_image__converts_grayscale_and_rgba_to_rgb(tmp_path):
    for mode in ("L", "RGBA", "P"):
        path = tmp_path / f"{mode}.png"
        Image.new(mode, (5, 4)).save(path)
        image = load_image(path)
        assert image.mode == "RGB" and image.size == (5, 4)


@pytest.mark.parametrize(
    "content, reason", [(None, "No such file"), (b"garbage" * 10, "not a recognised image")], ids=["missing", "corrupt"]
)
def test_load_image__missing_or_corrupt_file_is_a_one_line_data_error(tmp_path, content, reason):
    path = tmp_path / "bad.jpg"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError) as info:
        load_image(path)
    message = str(info.value)
    assert message.startswith(f"{path}: cannot read image (") and reason in message and "\n" not in message


def test_load_image__truncated_jpeg_is_a_data_error(tmp_path):
    path = tmp_path / "full.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(path.read_bytes()[:600])
    with pytest.raises(DataError, match="truncated.jpg: cannot read image"):
        load_image(truncated)


def test_build_transform__squash_gives_exact_size_and_normalises():
    image = Image.new("RGB", (100, 50), (255, 0, 128))
    tensor = build_transform((32, 48), MEAN, STD)(image)
    assert tensor.shape == (3, 32, 48) and tensor.dtype == torch.float32
    expected = (torch.tensor([255, 0, 128]) / 255.0 - torch.tensor(MEAN)) / torch.tensor(STD)
    torch.testing.assert_close(tensor[:, 10, 10], expected, atol=1e-5, rtol=0)


def test_build_transform__shorter_side_keeps_aspect_ratio_and_none_keeps_size():
    landscape = Image.new("RGB", (200, 100))
    portrait = Image.new("RGB", (100, 200))
    transform = build_transform((48, 64), MEAN, STD, shorter_side=50)
    assert transform(landscape).shape == (3, 50, 100)
    assert transform(portrait).shape == (3, 100, 50)
    assert build_transform(None, MEAN, STD)(landscape).shape == (3, 100, 200)


@pytest.mark.parametrize("bad", ["shorter_side", 0, -5, True])
def test_build_transform__rejects_a_shorter_side_that_is_no_pixel_count(bad):
    with pytest.raises(ValueError, match="shorter_side"):
        build_transform((8, 8), MEAN, STD, shorter_side=bad)


def test_image_list_dataset__returns_tensor_and_index(tmp_path):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (6, 6), (i * 50, 0, 0)).save(paths[-1])
    dataset = ImageListDataset(paths, build_transform((4, 4), (0, 0, 0), (1, 1, 1)))
    assert len(dataset) == 3
    image, index = dataset[2]
    assert index == 2 and image.shape == (3, 4, 4)
    assert image[0, 0, 0].item() == pytest.approx(100 / 255)


def test_unwrap_worker_error__returns_the_original_line_of_a_wrapped_error():
    original = "/data/x.jpg: cannot read image (image file is truncated)"
    wrapped = (
        "Caught DataError in DataLoader worker process 1.\nOriginal Traceback (most recent call last):\n"
        '  File "worker.py", line 3, in _worker_loop\n    data = fetcher.fetch(index)\n'
        f"sfrs.errors.DataError: {original}\n"
    )
    assert unwrap_worker_error(DataError(wrapped)) == original
    assert unwrap_worker_error(RuntimeError(wrapped)) == original
    assert unwrap_worker_error(DataError(original)) == original


def test_unwrap_worker_error__real_dataloader_worker(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"nope")
    loader = torch.utils.data.DataLoader(ImageListDataset([bad], build_transform(None, MEAN, STD)), num_workers=1)
    with pytest.raises(DataError) as info:
        next(iter(loader))
    assert "\n" in str(info.value)  # torch wraps the worker traceback into the message
    assert unwrap_worker_error(info.value) == f"{bad}: cannot read image (not a recognised image format)"
