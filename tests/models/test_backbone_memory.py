"""Training-time memory of the backbones: the frozen blocks in no-grad chunks and
activation checkpointing give the outputs, gradients and batch-norm statistics of the
plain whole-batch forward; inference runs the whole batch at once; old model files load."""
import copy

import pytest
import torch

from sfrs.config import ModelConfig, to_dict
from sfrs.models import backbones as backbones_module
from sfrs.models import build_network, network_from_payload
from sfrs.models.backbone_chain import frozen_prefix
from sfrs.models.backbones import build_backbone
from sfrs.models.heads import build_head


def plain_forward(backbone, images):
    """The backbones written out as torchvision composes them, independently of stages()."""
    if backbone.name in ("vgg16", "small"):
        return backbone.features(images)
    x = backbone.maxpool(backbone.relu(backbone.bn1(backbone.conv1(images))))
    x = backbone.layer3(backbone.layer2(backbone.layer1(x)))
    return backbone.layer4(x) if hasattr(backbone, "layer4") else x


def loss_of(backbone, head, features, seed=1):
    generator = torch.Generator().manual_seed(seed)
    regions = head.regions(features)
    return (regions * torch.randn(regions.shape, generator=generator, dtype=regions.dtype)).sum()


def grads(*modules):
    return {f"{i}.{n}": p.grad.clone() for i, m in enumerate(modules) for n, p in m.named_parameters()
            if p.grad is not None}


def pair(name, trainable="default", **options):
    """A backbone + NetVLAD head with the given memory options and a plain copy of both, in
    float64: a ReLU flipped by float32 rounding would move a gradient by more than rounding."""
    torch.manual_seed(0)
    backbone = build_backbone(name, trainable=trainable, **options).double().train()
    head = build_head("netvlad", dim=backbone.out_channels, clusters=4).double().train()
    return (backbone, head), (copy.deepcopy(backbone), copy.deepcopy(head))


def assert_close(got, want, what, tolerance=1e-10):
    """Equal up to float64 rounding: max |difference| within ``tolerance`` x max |want|
    (convolutions on a chunk of a batch may sum in another order)."""
    got, want = got.detach(), want.detach()
    scale = float(want.abs().max()) if want.numel() else 0.0
    error = float((got - want).abs().max()) if want.numel() else 0.0
    assert error <= tolerance * scale + 1e-12, f"{what}: max abs difference {error:.3g} at scale {scale:.3g}"


def assert_same_step(options, name, trainable="default", batch=4, size=(64, 64)):
    (backbone, head), (reference, reference_head) = pair(name, trainable, **options)
    images = torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    features = backbone(images)
    expected = plain_forward(reference, images)
    assert_close(features, expected, "features")
    loss_of(backbone, head, features).backward()
    loss_of(reference, reference_head, expected).backward()
    got, want = grads(backbone, head), grads(reference, reference_head)
    assert got.keys() == want.keys() and want
    for key in want:
        assert_close(got[key], want[key], key)
    # batch-norm running statistics moved exactly as by the plain forward
    for key, value in reference.state_dict().items():
        assert_close(backbone.state_dict()[key].double(), value.double(), key)


@pytest.mark.parametrize("name, chunk", [("vgg16", 1), ("vgg16", 0), ("resnet18_conv4", 2), ("resnet18_conv5", 1)])
def test_frozen_chunks__same_features_gradients_and_statistics_as_the_whole_batch(name, chunk):
    assert_same_step({"frozen_chunk": chunk}, name)


@pytest.mark.parametrize("name, trainable", [("vgg16", "default"), ("vgg16", "all"), ("resnet18_conv4", "all"),
                                             ("small", "default")])
def test_checkpoint_activations__same_gradients_and_running_statistics_updated_once(name, trainable):
    assert_same_step({"checkpoint_activations": True, "frozen_chunk": 2}, name, trainable=trainable)


@pytest.mark.parametrize("name, trainable, frozen", [
    ("vgg16", "default", 4),      # the pooling blocks 1-4 (conv1_1 .. pool4)
    ("vgg16", "all", 0),
    ("vgg16", "none", 5),
    ("resnet18_conv4", "default", 5),   # stem + layer1 (2 blocks) + layer2 (2 blocks)
    ("resnet18_conv5", "default", 7),
    ("resnet18_conv4", "none", 7),      # frozen batch norm is in eval mode: per image
    ("small", "default", 0),
])
def test_frozen_prefix__ends_at_the_first_block_to_train(name, trainable, frozen):
    backbone = build_backbone(name, trainable=trainable).train()
    assert backbone_module_prefix(backbone) == frozen


def backbone_module_prefix(backbone):
    return frozen_prefix(backbone.stages())


def test_frozen_prefix__stops_at_batch_norm_using_batch_statistics():
    backbone = build_backbone("resnet18_conv4", trainable="none").train()
    backbone.layer1[1].bn2.train()  # as if it were trainable: its output depends on the batch
    assert backbone_module_prefix(backbone) == 2


def batch_sizes_seen(backbone, images):
    sizes = []
    first_layer = backbone.stages()[0][0]  # the stages are slices sharing the backbone's layers
    handle = first_layer.register_forward_hook(lambda m, i, o: sizes.append(i[0].shape[0]))
    try:
        out = backbone(images)
    finally:
        handle.remove()
    return sizes, out


def test_automatic_chunks__sized_from_the_largest_activation_of_the_first_image(monkeypatch):
    backbone = build_backbone("vgg16").train()
    per_image = 64 * 32 * 32 * 4  # conv1 output of a 32x32 image, float32
    monkeypatch.setattr(backbones_module, "FROZEN_CHUNK_BYTES", 2 * per_image)
    sizes, _ = batch_sizes_seen(backbone, torch.randn(6, 3, 32, 32))
    assert sizes == [1, 2, 2, 1]
    monkeypatch.setattr(backbones_module, "FROZEN_CHUNK_BYTES", 2 * per_image - 1)
    sizes, _ = batch_sizes_seen(backbone, torch.randn(3, 3, 32, 32))
    assert sizes == [1, 1, 1]


def test_given_chunk__splits_the_batch():
    backbone = build_backbone("vgg16", frozen_chunk=4).train()
    sizes, out = batch_sizes_seen(backbone, torch.randn(10, 3, 32, 32))
    assert sizes == [4, 4, 2] and out.shape == (10, 512, 2, 2)


@pytest.mark.parametrize("grad_mode", [torch.no_grad, torch.inference_mode])
def test_inference__whole_batch_at_once_and_bitwise_the_plain_forward(grad_mode):
    backbone = build_backbone("vgg16", frozen_chunk=1, checkpoint_activations=True).eval()
    images = torch.randn(5, 3, 32, 48)
    with grad_mode():
        sizes, out = batch_sizes_seen(backbone, images)
        assert sizes == [5]
        assert torch.equal(out, plain_forward(backbone, images))


def test_gradient_with_respect_to_the_images__plain_forward():
    backbone = build_backbone("vgg16", frozen_chunk=1).train()
    images = torch.randn(3, 3, 32, 32, requires_grad=True)
    sizes, out = batch_sizes_seen(backbone, images)
    out.sum().backward()
    assert sizes == [3] and images.grad is not None and images.grad.abs().sum() > 0


def test_negative_frozen_chunk__refused():
    with pytest.raises(Exception, match="frozen_chunk"):
        build_backbone("small", frozen_chunk=-1)


def test_model_file_without_the_memory_keys__loads_with_their_defaults():
    config = ModelConfig(input_size=(32, 48), head_options={"clusters": 4})
    network = build_network(config)
    payload = network.checkpoint_payload()
    for key in ("frozen_chunk", "checkpoint_activations"):
        del payload["model_config"][key]  # as written before these keys existed
    loaded = network_from_payload(payload)
    assert loaded.config == config
    assert loaded.backbone.frozen_chunk == 0 and not loaded.backbone.checkpoint_activations
    images = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(images), network.eval()(images))


def test_training_memory_settings__apply_to_the_backbone_and_travel_in_the_checkpoint():
    network = build_network(ModelConfig(input_size=(32, 48), head_options={"clusters": 4}))
    network.set_training_memory(3, True)
    assert network.backbone.frozen_chunk == 3 and network.backbone.checkpoint_activations
    saved = network.checkpoint_payload()["model_config"]
    assert saved["frozen_chunk"] == 3 and saved["checkpoint_activations"] is True
    loaded = network_from_payload(network.checkpoint_payload())
    assert loaded.backbone.frozen_chunk == 3 and to_dict(loaded.config) == saved
