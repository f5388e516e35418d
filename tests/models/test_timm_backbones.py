"""timm backbones (``model.backbone: timm:<model>``): shapes, equality with timm's own
forward, cuts, trainable modes, local / fetched weights, the class token in GeoNet, model
files, and the frozen-prefix / checkpointed training forward. Tiny models: a ViT-Ti cut
after 1-3 blocks at 32x48, a ResNet-18 cut at stage 2-3 at 32x32."""
import copy
import json
import math
import time

import pytest
import safetensors.torch
import timm
import numpy as np
import torch
from click.testing import CliRunner
from torch import nn

from sfrs.config import ModelConfig
from sfrs.errors import CheckpointError, ConfigError
from sfrs.models import GeoNet, TimmBackbone, build_network, load_network, network_from_payload
from sfrs.models import network as network_module
from sfrs.models.backbone_chain import frozen_prefix
from sfrs.models.backbones import build_backbone

VIT = "vit_tiny_patch16_224"
CNN = "resnet18"


def vit(blocks=2, **kwargs):
    return build_backbone(f"timm:{VIT}", options={"blocks": blocks}, **kwargs)


def timm_vit(seed=0):
    """timm's own ViT-Ti (random weights, seeded), whatever size it is given."""
    torch.manual_seed(seed)
    return timm.create_model(VIT, dynamic_img_size=True).eval()


def saved(tmp_path, state, name):
    path = tmp_path / name
    if name.endswith(".safetensors"):
        safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return str(path)


# -- shapes ----------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(32, 48), (64, 32)])
def test_vit__patch_map_shape_stride_channels_and_class_token(size):
    backbone = vit().eval()
    assert isinstance(backbone, TimmBackbone) and backbone.name == f"timm:{VIT}"
    assert backbone.stride == 16 and backbone.out_channels == 192 and backbone.class_token
    assert backbone.default_mean == (0.5, 0.5, 0.5) and backbone.default_std == (0.5, 0.5, 0.5)
    with torch.no_grad():
        feature_map, token = backbone.forward_tokens(torch.randn(2, 3, *size))
        plain = backbone(torch.randn(2, 3, *size))
    assert feature_map.shape == plain.shape == (2, 192, size[0] // 16, size[1] // 16)
    assert token.shape == (2, 192)


@pytest.mark.parametrize("size", [(32, 32), (64, 48)])
def test_cnn__map_shape_stride_and_channels_from_feature_info(size):
    backbone = build_backbone(f"timm:{CNN}", options={"stage": 2}).eval()
    assert backbone.stride == 8 and backbone.out_channels == 128 and not backbone.class_token
    with torch.no_grad():
        assert backbone(torch.randn(2, 3, *size)).shape == (2, 128, size[0] // 8, size[1] // 8)
    default = build_backbone(f"timm:{CNN}")  # the last level: layer4
    assert default.stride == 32 and default.out_channels == 512


def test_convnext__flattened_stages_cut_and_shaped():
    backbone = build_backbone("timm:convnext_atto", options={"stage": 1}).eval()
    assert backbone.stride == 8 and backbone.out_channels == 80
    assert [list(stage._modules) for stage in backbone.stages()] == [["0", "1", "2"], ["0"]]
    with torch.no_grad():
        assert backbone(torch.randn(1, 3, 32, 48)).shape == (1, 80, 4, 6)


# -- equality with timm's own forward ---------------------------------------------------
def test_vit__map_and_class_token_equal_timms_forward_features(tmp_path):
    reference = timm_vit()
    path = saved(tmp_path, reference.state_dict(), "vit.pt")
    full = build_backbone(f"timm:{VIT}", pretrained=path).eval()  # all 12 blocks
    images = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        feature_map, token = full.forward_tokens(images)
        tokens = reference.forward_features(images)  # (B, 1 + 2*3, C), final norm applied
    expected = tokens[:, 1:].reshape(2, 2, 3, 192).permute(0, 3, 1, 2)
    torch.testing.assert_close(feature_map, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(token, tokens[:, 0], rtol=1e-5, atol=1e-5)


def test_vit__cut_after_block_n_equals_timms_normalised_intermediate(tmp_path):
    reference = timm_vit()
    path = saved(tmp_path, reference.state_dict(), "vit.pt")
    backbone = vit(blocks=3, pretrained=path).eval()
    assert len(backbone.model.blocks) == 3
    images = torch.randn(2, 3, 48, 32)
    with torch.no_grad():
        (expected,) = reference.forward_intermediates(images, indices=[2], norm=True, intermediates_only=True)
        got = backbone(images)
    assert got.shape == (2, 192, 3, 2)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_vit_with_registers__prefix_tokens_dropped_and_class_token_first():
    backbone = build_backbone("timm:vit_small_patch14_reg4_dinov2", options={"blocks": 1}).eval()
    assert backbone.prefix_tokens == 5 and backbone.stride == 14 and backbone.class_token
    images = torch.randn(1, 3, 28, 42)
    reference = copy.deepcopy(backbone.model)
    with torch.no_grad():
        feature_map, token = backbone.forward_tokens(images)
        tokens = reference.forward_features(images)
    assert tokens.shape == (1, 5 + 2 * 3, 384)
    torch.testing.assert_close(feature_map, tokens[:, 5:].reshape(1, 2, 3, 384).permute(0, 3, 1, 2))
    torch.testing.assert_close(token, tokens[:, 0])


def test_cnn__map_equals_timms_features_only_output(tmp_path):
    torch.manual_seed(0)
    full = timm.create_model(CNN)
    path = saved(tmp_path, full.state_dict(), "resnet18.safetensors")
    backbone = build_backbone(f"timm:{CNN}", pretrained=path, options={"stage": 3}).eval()
    reference = timm.create_model(CNN, features_only=True, out_indices=(3,)).eval()
    reference.load_state_dict(full.state_dict(), strict=False)  # its chain stops at layer3
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(backbone(images), reference(images)[0])


# -- input sizes and options ------------------------------------------------------------
def test_vit__size_not_a_multiple_of_the_patch_is_refused():
    backbone = vit()
    with pytest.raises(ConfigError, match=r"input size 33x48 is not a multiple of the patch size 16"):
        backbone(torch.randn(1, 3, 33, 48))
    config = ModelConfig(backbone=f"timm:{VIT}", backbone_options={"blocks": 1}, head="gem", head_options={},
                         input_size=(40, 48))
    with pytest.raises(ConfigError, match=r"model.input_size: input size 40x48 .*patch size 16.*nearest multiples: 32x48"):
        build_network(config)


@pytest.mark.parametrize("name, options, fragment", [
    (f"timm:{VIT}", {"stage": 2}, r"no option 'stage' \(its options: blocks"),
    (f"timm:{VIT}", {"blocks": 13}, r"backbone_options.blocks must be an integer from 1 to 12"),
    (f"timm:{VIT}", {"blocks": 0}, r"from 1 to 12 .* got 0"),
    (f"timm:{VIT}", {"blocks": "2"}, r"got '2'"),
    (f"timm:{CNN}", {"stage": 5}, r"backbone_options.stage must be an integer from 0 to 4"),
    (f"timm:{CNN}", {"stage": True}, r"got True"),
    (f"timm:{CNN}", {"blocks": 2}, r"no option 'blocks' \(its options: stage"),
    ("small", {"stage": 1}, r"backbone 'small' takes no options"),
    ("timm:no_such_model", {}, r"unknown timm model 'no_such_model'"),
    ("timm:efficientnet_b0", {}, r"EfficientNetFeatures"),
])
def test_backbone_options__refused_in_one_line(name, options, fragment):
    with pytest.raises(ConfigError, match=fragment) as info:
        build_backbone(name, options=options)
    assert "\n" not in str(info.value)


# -- trainable modes --------------------------------------------------------------------
def trained(backbone):
    return {n for n, p in backbone.named_parameters() if p.requires_grad}


def with_prefixes(backbone, *prefixes):
    return {n for n, _ in backbone.named_parameters() if n.startswith(prefixes)}


def test_vit__last_n_trains_the_last_blocks_and_the_final_norm():
    backbone = vit(blocks=3, trainable="last:2")
    assert trained(backbone) == with_prefixes(backbone, "model.blocks.1.", "model.blocks.2.", "model.norm.")
    backbone.set_trainable("default")  # last 4 blocks, here all 3 kept
    assert trained(backbone) == with_prefixes(backbone, "model.blocks.", "model.norm.")
    assert "model.cls_token" not in trained(backbone) and "model.pos_embed" not in trained(backbone)
    backbone.set_trainable("all")
    assert trained(backbone) == {n for n, _ in backbone.named_parameters()}
    backbone.set_trainable("none")
    assert trained(backbone) == set()
    with pytest.raises(ConfigError, match=r"'last:4'.*has 3 trainable units.*between 1 and 3"):
        backbone.set_trainable("last:4")


def test_vit__default_trains_the_last_four_of_twelve_blocks():
    backbone = vit(blocks=12)
    assert trained(backbone) == with_prefixes(
        backbone, "model.blocks.8.", "model.blocks.9.", "model.blocks.10.", "model.blocks.11.", "model.norm.")


def test_cnn__last_n_trains_the_last_stages_default_the_last():
    backbone = build_backbone(f"timm:{CNN}", options={"stage": 3}, trainable="last:2")
    assert trained(backbone) == with_prefixes(backbone, "model.layer2.", "model.layer3.")
    backbone.set_trainable("default")
    assert trained(backbone) == with_prefixes(backbone, "model.layer3.")


def test_torchvision_backbone__last_n_counts_blocks_of_its_chain():
    backbone = build_backbone("resnet18_conv4", trainable="last:2")  # the two blocks of layer3
    assert trained(backbone) == with_prefixes(backbone, "layer3.")
    backbone = build_backbone("small", trainable="last:1")  # the last convolution
    assert trained(backbone) == with_prefixes(backbone, "features.12.")


@pytest.mark.parametrize("mode", ["last:0", "last:", "last:x", "last:-1", "first:2"])
def test_trainable__malformed_last_n_is_config_error(mode):
    with pytest.raises(ConfigError, match=r"unknown trainable mode .*last:N"):
        build_backbone("small", trainable=mode)


# -- weights ----------------------------------------------------------------------------
@pytest.mark.parametrize("file_name", ["vit.safetensors", "vit.pt"])
def test_local_weights__full_timm_state_dict_gives_identical_outputs(tmp_path, file_name):
    reference = timm_vit(seed=3)
    path = saved(tmp_path, reference.state_dict(), file_name)
    backbone = vit(blocks=2, pretrained=path).eval()
    for key, value in backbone.model.state_dict().items():
        torch.testing.assert_close(value, reference.state_dict()[key], rtol=0, atol=0, msg=key)
    images = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        (expected,) = reference.forward_intermediates(images, indices=[1], norm=True, intermediates_only=True)
        torch.testing.assert_close(backbone(images), expected, rtol=0, atol=0)


def test_local_weights__kept_part_alone_loads_and_flattened_cnn_names_map(tmp_path):
    source = vit(blocks=2)
    path = saved(tmp_path, source.model.state_dict(), "kept.safetensors")
    loaded = vit(blocks=2, pretrained=path)
    for key, value in source.model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[key], value, rtol=0, atol=0)
    # convnext's stages.N are stages_N in timm's feature chain: a full timm file still loads
    torch.manual_seed(1)
    full = timm.create_model("convnext_atto")
    path = saved(tmp_path, full.state_dict(), "convnext.pt")
    cnn = build_backbone("timm:convnext_atto", pretrained=path, options={"stage": 1})
    torch.testing.assert_close(cnn.model.state_dict()["stages_1.blocks.0.conv_dw.weight"],
                               full.state_dict()["stages.1.blocks.0.conv_dw.weight"], rtol=0, atol=0)


def test_local_weights__mismatched_or_corrupt_file_is_checkpoint_error(tmp_path):
    wrong = saved(tmp_path, timm.create_model(CNN).state_dict(), "resnet.safetensors")
    with pytest.raises(CheckpointError) as info:
        vit(pretrained=wrong)
    message = str(info.value)
    assert "resnet.safetensors" in message and f"timm:{VIT}" in message and "\n" not in message
    assert "missing keys" in message and "unexpected keys" in message

    state = timm_vit().state_dict()
    state["blocks.0.attn.qkv.weight"] = state["blocks.0.attn.qkv.weight"][:10]
    misshaped = saved(tmp_path, state, "misshaped.pt")
    with pytest.raises(CheckpointError, match=r"misshaped\.pt.*shape mismatch blocks\.0\.attn\.qkv\.weight"):
        vit(pretrained=misshaped)

    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(CheckpointError, match=r"cannot read pretrained weights file .*corrupt\.safetensors"):
        vit(pretrained=str(corrupt))


def test_pretrained_imagenet__fetch_failure_is_one_line_checkpoint_error(monkeypatch):
    create = timm.create_model

    def offline(name, pretrained=False, **kwargs):
        if pretrained:
            raise OSError("We couldn't connect to the hub\nname resolution failed")
        return create(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(CheckpointError) as info:
        vit(pretrained="imagenet")
    message = str(info.value)
    assert f"timm model '{VIT}'" in message and "--pretrained none" in message
    assert "name resolution" in message and "\n" not in message


def test_pretrained_imagenet__timms_pretrained_weights_are_kept(monkeypatch):
    reference = timm_vit(seed=5)
    create = timm.create_model
    asked = []

    def fetched(name, pretrained=False, **kwargs):
        model = create(name, pretrained=False, **kwargs)
        if pretrained:
            asked.append(name)
            model.load_state_dict(reference.state_dict())
        return model

    monkeypatch.setattr(timm, "create_model", fetched)
    backbone = vit(blocks=2, pretrained="imagenet")
    assert asked == [VIT]
    torch.testing.assert_close(backbone.model.blocks[1].mlp.fc2.weight, reference.blocks[1].mlp.fc2.weight)


# -- GeoNet: class token routing, model files --------------------------------------------
def vit_config(**changes):
    fields = dict(backbone=f"timm:{VIT}", backbone_options={"blocks": 2}, head="gem", head_options={},
                  input_size=(32, 48))
    fields.update(changes)
    return ModelConfig(**fields)


class TokenProbe(nn.Module):
    """A head that declares a class-token use and records what it was given."""

    def __init__(self, uses, dim):
        super().__init__()
        self.class_token, self.out_dim, self.seen = uses, dim, []
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, features, class_token=None):
        self.seen.append(class_token)
        pooled = features.mean(dim=(2, 3)) * self.scale
        if class_token is not None:
            pooled = pooled + class_token
        return nn.functional.normalize(pooled, dim=1)

    def regions(self, features, class_token=None):
        return self.forward(features, class_token).unsqueeze(1).repeat(1, 9, 1)


def probe_network(monkeypatch, uses, config):
    monkeypatch.setattr(network_module, "build_head", lambda name, dim, **options: TokenProbe(uses, dim))
    return GeoNet(config)


def test_geonet__class_token_reaches_heads_that_use_it(monkeypatch):
    network = probe_network(monkeypatch, "optional", vit_config()).eval()
    images = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        network(images)
        network.region_descriptors(images)
        _, token = network.backbone.forward_tokens(images)
    assert len(network.head.seen) == 2
    for seen in network.head.seen:
        torch.testing.assert_close(seen, token)

    cnn = probe_network(monkeypatch, "optional", vit_config(backbone=f"timm:{CNN}", backbone_options={"stage": 2}))
    with torch.no_grad():
        cnn(torch.randn(2, 3, 32, 48))
    assert cnn.head.seen == [None]

    unused = probe_network(monkeypatch, "none", vit_config())
    with torch.no_grad():
        unused(images)
    assert unused.head.seen == [None]


def test_geonet__required_class_token_on_a_cnn_is_config_error(monkeypatch):
    with pytest.raises(ConfigError, match=r"head 'cls' needs a backbone with a class token, e\.g\. timm:vit_small"):
        build_network(ModelConfig(backbone=f"timm:{CNN}", backbone_options={"stage": 2}, head="cls",
                                  head_options={}, input_size=(32, 48)))
    with pytest.raises(ConfigError, match=r"needs a backbone with a class token"):
        probe_network(monkeypatch, "required", vit_config(backbone="small", backbone_options={}))


def test_geonet__timm_model_file_round_trips_with_equal_descriptors(tmp_path):
    torch.manual_seed(0)
    network = build_network(vit_config(trainable="last:1", head="netvlad", head_options={"clusters": 4})).eval()
    network.save(tmp_path / "model.pt")
    loaded = load_network(tmp_path / "model.pt").eval()
    assert loaded.config.backbone_options == {"blocks": 2} and loaded.config == network.config
    assert loaded.mean == (0.5, 0.5, 0.5)
    images = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), network(images), rtol=0, atol=0)
        torch.testing.assert_close(loaded.region_descriptors(images), network.region_descriptors(images),
                                   rtol=0, atol=0)


def test_geonet__older_model_file_without_backbone_options_loads():
    network = build_network(ModelConfig(head="gem", head_options={}))
    payload = network.checkpoint_payload()
    del payload["model_config"]["backbone_options"]
    assert network_from_payload(payload).config.backbone_options == {}


# -- training forward: frozen prefix in chunks, checkpointing ---------------------------
def gradients(module):
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def assert_same_step(backbone, reference_forward, reference, images, expected_frozen):
    """The backbone's training forward and backward equal timm's own on a copy."""
    assert frozen_prefix(backbone.stages()) == expected_frozen
    generator = torch.Generator().manual_seed(2)
    got = backbone(images)
    want = reference_forward(reference, images)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    weights = torch.randn(got.shape, generator=generator, dtype=got.dtype)
    (got * weights).sum().backward()
    (want * weights).sum().backward()
    mine, theirs = gradients(backbone.model), gradients(reference)
    assert mine and mine.keys() == {n for n, p in backbone.model.named_parameters() if p.requires_grad}
    assert mine.keys() <= theirs.keys()
    for key in mine:
        torch.testing.assert_close(mine[key], theirs[key], rtol=1e-10, atol=1e-10, msg=key)


@pytest.mark.parametrize("checkpointed", [False, True])
def test_vit__frozen_prefix_chunks_and_checkpointing_match_the_plain_forward(checkpointed):
    torch.manual_seed(0)
    backbone = vit(blocks=3, trainable="last:1", frozen_chunk=1, checkpoint_activations=checkpointed)
    backbone = backbone.double().train()
    reference = copy.deepcopy(backbone.model)

    def plain(model, images):
        (out,) = model.forward_intermediates(images, indices=[2], norm=True, intermediates_only=True)
        return out

    images = torch.randn(3, 3, 32, 48, dtype=torch.float64)
    assert_same_step(backbone, plain, reference, images, expected_frozen=3)  # embedding, blocks 0 and 1


@pytest.mark.parametrize("checkpointed", [False, True])
def test_cnn__frozen_prefix_chunks_and_checkpointing_match_the_plain_forward(checkpointed):
    torch.manual_seed(0)
    backbone = build_backbone(f"timm:{CNN}", options={"stage": 3}, trainable="last:1", frozen_chunk=2,
                              checkpoint_activations=checkpointed).double().train()
    reference = copy.deepcopy(backbone.model)
    images = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    assert_same_step(backbone, lambda model, x: model(x)[0], reference, images, expected_frozen=3)
    for key, value in reference.state_dict().items():  # batch-norm statistics moved alike
        torch.testing.assert_close(backbone.model.state_dict()[key], value, rtol=1e-10, atol=1e-10, msg=key)


# -- DINOv2 with SALAD, the target configuration -----------------------------------------
def test_dinov2_salad__builds_and_runs_one_forward_at_56x70():
    config = ModelConfig(backbone="timm:vit_small_patch14_dinov2", head="salad", head_options={}, input_size=(56, 70))
    start = time.perf_counter()
    network = build_network(config).eval()
    assert network.passes_class_token
    with torch.no_grad():
        out = network(torch.randn(2, 3, 56, 70))
    assert out.shape == (2, network.out_dim) and torch.isfinite(out).all()
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2, dtype=out.dtype))
    assert network.backbone.stride == 14 and len(network.backbone.model.blocks) == 12
    assert time.perf_counter() - start < 30


@pytest.mark.slow
def test_sfrs_train__a_timm_vit_trains_a_generation_with_finite_loss(tiny_city_root, tmp_path):
    from sfrs.cli.train import main as train_main
    from tests.tiny import TINY_TRAINING

    sets = TINY_TRAINING + [f"model.backbone=timm:{VIT}", "model.backbone_options={blocks: 2}",
                            "model.input_size=[48,64]", "model.head_options={clusters: 4}", "model.trainable=last:1"]
    args = [arg for item in sets for arg in ("--set", item)]
    output = tmp_path / "run"
    result = CliRunner().invoke(
        train_main, ["--generations", "1", "--epochs", "1", "--output", str(output), "--no-progress"] + args,
        catch_exceptions=False)
    assert result.exit_code == 0, result.output
    results = json.loads((output / "results.json").read_text())
    (epoch,) = results["epochs"]
    assert all(math.isfinite(v) for v in epoch["losses"].values()), epoch["losses"]
    shipped = load_network(output / "best.pt").config
    assert shipped.backbone == f"timm:{VIT}" and shipped.backbone_options == {"blocks": 2}
    assert shipped.trainable == "last:1"


def test_geonet__shorter_side_resize_is_cropped_to_whole_patches():
    from PIL import Image

    from sfrs.data.images import CropToMultiple

    model = GeoNet(vit_config())
    assert model.input_multiple == 16 and GeoNet(ModelConfig(backbone="small")).input_multiple == 1
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8))
    tensor = model.transform(shorter_side=50)(image)  # resized to 50x66, then 48x64
    assert tuple(tensor.shape) == (3, 48, 64)
    with torch.no_grad():
        assert model(tensor[None]).shape == (1, model.out_dim)
    # the crop is centred: the same pixels as cutting the resized image by hand
    resized = image.resize((66, 50), Image.BILINEAR)
    cropped = np.asarray(CropToMultiple(16)(resized))
    np.testing.assert_array_equal(cropped, np.asarray(resized)[1:49, 1:65])
    assert "CropToMultiple" not in repr(GeoNet(ModelConfig(backbone="small")).transform(shorter_side=50))
