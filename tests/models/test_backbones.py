"""Backbone catalogue: the module contract across every backbone x head pair (with a tiny
timm ViT and a tiny timm CNN), trainable modes, and strict loading of local / ImageNet
state dicts (no real downloads)."""
import pytest
import torch
import torchvision
from torch import nn

from sfrs.errors import CheckpointError, ConfigError
from sfrs.models.backbones import IMAGENET_MEAN, IMAGENET_STD, build_backbone, list_backbones
from sfrs.models.heads import build_head, list_heads

CATALOGUE = list_backbones()
#: timm backbones in the contract, cut small: ViT-Ti after 2 blocks, ResNet-18 at stage 2.
TIMM_OPTIONS = {
    "timm:vit_tiny_patch16_224": {"blocks": 2},
    "timm:resnet18": {"stage": 2},
}
BACKBONES = CATALOGUE + list(TIMM_OPTIONS)
EXPECTED_CHANNELS = {
    "vgg16": 512,
    "resnet18_conv4": 256,
    "resnet18_conv5": 512,
    "resnet50_conv4": 1024,
    "resnet50_conv5": 2048,
    "small": 128,
    "timm:vit_tiny_patch16_224": 192,
    "timm:resnet18": 128,
}
# Parameter-name prefixes trained with trainable="default".
DEFAULT_TRAINABLE = {
    "vgg16": ("features.24.", "features.26.", "features.28."),
    "resnet18_conv4": ("layer3.",),
    "resnet18_conv5": ("layer4.",),
    "resnet50_conv4": ("layer3.",),
    "resnet50_conv5": ("layer4.",),
    "small": ("",),
    "timm:vit_tiny_patch16_224": ("model.blocks.", "model.norm."),  # last 4 blocks: both kept
    "timm:resnet18": ("model.layer2.",),  # the last stage kept
}
#: small options where a head's defaults are large; every other registered head with its defaults.
HEAD_OPTIONS = {
    "netvlad": dict(clusters=4),
    "gem": dict(fc_dim=16),
    "crn": dict(clusters=4),
    "mixvpr": dict(grid=[4, 4], out_channels=32),
    "salad": dict(clusters=8, cluster_dim=16, token_dim=16, hidden_dim=32),
}


def test_list_backbones__catalogue():
    assert sorted(BACKBONES) == sorted(EXPECTED_CHANNELS)
    assert not any(name.startswith("timm:") for name in CATALOGUE)


def build(name, **kwargs):
    backbone = build_backbone(name, options=TIMM_OPTIONS.get(name), **kwargs)
    if name.startswith("timm:"):
        # timm zero-initialises the last batch-norm scale of each residual block, which
        # leaves the block's other layers without gradient until it moves
        for module in backbone.modules():
            if isinstance(module, nn.BatchNorm2d):
                nn.init.uniform_(module.weight, 0.5, 1.5)
    return backbone


def features_and_token(backbone, head, images):
    """The backbone's map, and its class token for a head that uses one (as GeoNet does)."""
    if getattr(head, "class_token", "none") != "none" and backbone.class_token:
        return backbone.forward_tokens(images)
    return backbone(images), None


def head_outputs(head, features, token):
    if token is None:
        return head(features), head.regions(features)
    return head(features, class_token=token), head.regions(features, class_token=token)


@pytest.mark.parametrize("head_name", list_heads())
@pytest.mark.parametrize("backbone_name", BACKBONES)
def test_backbone_head__contract_shapes_norms_and_gradients(backbone_name, head_name):
    check_contract(backbone_name, head_name, HEAD_OPTIONS.get(head_name, {}))


def check_contract(backbone_name, head_name, head_options):
    """Shapes, unit norms, region 0 = global, and a gradient for exactly the trainable
    parameters (the default ones)."""
    torch.manual_seed(0)
    backbone = build(backbone_name, pretrained="none")
    head = build_head(head_name, dim=backbone.out_channels, **head_options)
    if getattr(head, "class_token", "none") == "required" and not backbone.class_token:
        pytest.skip(f"head {head_name} needs a class token, which {backbone_name} has not (GeoNet refuses the pair)")
    assert backbone.name == backbone_name
    assert backbone.out_channels == EXPECTED_CHANNELS[backbone_name]
    assert len(backbone.default_mean) == 3 and len(backbone.default_std) == 3
    backbone.train()
    head.train()

    B = 2
    images = torch.randn(B, 3, 64, 64)
    features, token = features_and_token(backbone, head, images)
    assert features.shape[:2] == (B, backbone.out_channels)
    assert features.shape[2] == 64 // backbone.stride and features.shape[3] == 64 // backbone.stride
    out, regions = head_outputs(head, features, token)
    assert out.shape == (B, head.out_dim) and regions.shape == (B, 9, head.out_dim)
    assert torch.isfinite(out).all() and torch.isfinite(regions).all()
    torch.testing.assert_close(out.norm(dim=1), torch.ones(B))
    torch.testing.assert_close(regions.norm(dim=2), torch.ones(B, 9))
    torch.testing.assert_close(regions[:, 0], out, rtol=1e-4, atol=1e-5)

    generator = torch.Generator().manual_seed(1)
    loss = (out * torch.randn(out.shape, generator=generator)).sum()
    loss = loss + (regions * torch.randn(regions.shape, generator=generator)).sum()
    loss.backward()
    for module, prefix in ((backbone, "backbone."), (head, "head.")):
        for name, param in module.named_parameters():
            if param.requires_grad:
                assert param.grad is not None, prefix + name
                assert torch.isfinite(param.grad).all(), prefix + name
                assert param.grad.abs().sum() > 0, prefix + name
            else:
                assert param.grad is None, prefix + name
    trainable = {n for n, p in backbone.named_parameters() if p.requires_grad}
    assert trainable == {
        n for n, _ in backbone.named_parameters() if n.startswith(DEFAULT_TRAINABLE[backbone_name])
    }
    assert trainable


@pytest.mark.parametrize("mode", ["default", "all", "none"])
@pytest.mark.parametrize("backbone_name", BACKBONES)
def test_backbone__trainable_modes_set_requires_grad(backbone_name, mode):
    backbone = build(backbone_name, trainable=mode)
    names = [n for n, _ in backbone.named_parameters()]
    trainable = [n for n, p in backbone.named_parameters() if p.requires_grad]
    if mode == "all":
        assert trainable == names
    elif mode == "none":
        assert trainable == []
    else:
        assert trainable == [n for n in names if n.startswith(DEFAULT_TRAINABLE[backbone_name])]
        assert 0 < len(trainable) <= len(names)
    assert backbone.trainable == mode


@pytest.mark.parametrize("backbone_name", ["small", "resnet18_conv5"])
def test_backbone__trainable_all_gives_every_parameter_a_gradient(backbone_name):
    torch.manual_seed(0)
    backbone = build_backbone(backbone_name, trainable="all").train()
    head = build_head("gem", dim=backbone.out_channels)
    (head(backbone(torch.randn(2, 3, 64, 64))) * torch.randn(2, head.out_dim)).sum().backward()
    for name, param in backbone.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_backbone__unknown_name_or_mode_is_config_error():
    with pytest.raises(ConfigError, match="unknown backbone 'vgg19'.*vgg16.*timm:<timm model name>"):
        build_backbone("vgg19")
    with pytest.raises(ConfigError, match="unknown trainable mode 'some'"):
        build_backbone("small", trainable="some")


def test_vgg16__cut_at_conv5_3_before_relu_and_pool5():
    backbone = build_backbone("vgg16")
    layers = list(backbone.features)
    assert isinstance(layers[-1], nn.Conv2d) and layers[-1].out_channels == 512
    assert sum(isinstance(m, nn.MaxPool2d) for m in layers) == 4
    assert sum(isinstance(m, nn.Conv2d) for m in layers) == 13
    with torch.no_grad():
        assert backbone(torch.zeros(1, 3, 480, 640)).shape == (1, 512, 30, 40)
    assert backbone.default_mean == IMAGENET_MEAN and backbone.default_std == IMAGENET_STD
    # conv5_1..conv5_3 train by default: 3 weights + 3 biases.
    assert sum(p.requires_grad for p in backbone.parameters()) == 6


def test_small__is_batchnorm_free_and_maps_96x128_to_12x16():
    backbone = build_backbone("small")
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in backbone.modules())
    with torch.no_grad():
        assert backbone(torch.zeros(2, 3, 96, 128)).shape == (2, 128, 12, 16)


def test_resnet__frozen_batchnorm_stays_in_eval_mode():
    backbone = build_backbone("resnet18_conv4").train()
    assert not backbone.bn1.training and not backbone.layer1[0].bn1.training
    assert backbone.layer3[0].bn1.training
    backbone.set_trainable("all")
    assert backbone.bn1.training
    backbone.eval()
    assert not backbone.layer3[0].bn1.training


def _assert_loaded(backbone, state):
    for key, value in backbone.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("backbone_name", ["resnet18_conv4", "resnet18_conv5"])
def test_pretrained_path__torchvision_full_state_dict_loads(tmp_path, backbone_name):
    torch.manual_seed(0)
    full = torchvision.models.resnet18(weights=None)
    with torch.no_grad():
        full.bn1.running_mean.uniform_()  # buffers load too
    state = full.state_dict()
    path = tmp_path / "resnet18-random.pth"
    torch.save(state, path)
    backbone = build_backbone(backbone_name, pretrained=str(path))
    _assert_loaded(backbone, state)


def test_pretrained_path__truncated_state_dict_round_trips(tmp_path):
    for name in ("resnet18_conv4", "small"):
        source = build_backbone(name)
        path = tmp_path / f"{name}.pth"
        torch.save(source.state_dict(), path)
        _assert_loaded(build_backbone(name, pretrained=str(path)), source.state_dict())


def test_pretrained_path__mismatched_state_dict_is_checkpoint_error(tmp_path):
    state = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path / "wrong-model.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"wrong-model\.pth.*resnet50_conv4.*shape mismatch"):
        build_backbone("resnet50_conv4", pretrained=str(path))

    state["conv_one.weight"] = state.pop("conv1.weight")
    renamed = tmp_path / "renamed.pth"
    torch.save(state, renamed)
    with pytest.raises(CheckpointError) as info:
        build_backbone("resnet18_conv4", pretrained=str(renamed))
    message = str(info.value)
    assert "renamed.pth" in message and "\n" not in message
    assert "missing keys conv1.weight" in message and "unexpected keys conv_one.weight" in message


def test_pretrained_path__unreadable_or_absent_file_is_checkpoint_error(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match=r"garbage\.pth"):
        build_backbone("small", pretrained=str(garbage))
    not_a_dict = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], not_a_dict)
    with pytest.raises(CheckpointError, match=r"list\.pth.*not a state dict"):
        build_backbone("small", pretrained=str(not_a_dict))
    with pytest.raises(CheckpointError, match=r"absent\.pth does not exist"):
        build_backbone("small", pretrained=str(tmp_path / "absent.pth"))


def test_pretrained_imagenet__small_has_no_imagenet_weights():
    with pytest.raises(CheckpointError, match="'small' has no ImageNet weights.*--pretrained none"):
        build_backbone("small", pretrained="imagenet")


def test_pretrained_imagenet__failed_download_is_one_line_checkpoint_error(monkeypatch):
    def offline(self, *args, **kwargs):
        raise OSError("<urlopen error [Errno -3]\n Temporary failure in name resolution>")

    monkeypatch.setattr(torchvision.models._api.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(CheckpointError) as info:
        build_backbone("resnet18_conv4", pretrained="imagenet")
    message = str(info.value)
    assert "\n" not in message
    assert "ResNet18_Weights.IMAGENET1K_V1" in message and "resnet18-f37072fd.pth" in message
    assert "--pretrained none" in message and "name resolution" in message


def test_pretrained_imagenet__fetched_state_dict_is_loaded(monkeypatch):
    state = torchvision.models.resnet18(weights=None).state_dict()
    fetched = []

    def fake_get_state_dict(self, *args, **kwargs):
        fetched.append(self)
        return state

    monkeypatch.setattr(torchvision.models._api.WeightsEnum, "get_state_dict", fake_get_state_dict)
    backbone = build_backbone("resnet18_conv5", pretrained="imagenet")
    assert fetched == [torchvision.models.ResNet18_Weights.IMAGENET1K_V1]
    _assert_loaded(backbone, state)
