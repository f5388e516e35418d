"""The SFRS authors' released layouts (their key names and shapes, random weights) converted
to sfrs models give the descriptors of the authors' forward, written out here in float64
without sfrs.models: VGG16 conv stack on RGB in [0, 255] minus the mean, NetVLAD,
intra-normalisation, L2, PCA(-whitening), L2."""
import json
from collections import OrderedDict

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image

from sfrs.cli.convert import main as convert_main
from sfrs.cli.eval import main as eval_main
from sfrs.config import ModelConfig
from sfrs.errors import CheckpointError, ConfigError
from sfrs.models import convert_openibl, load_network
from sfrs.models.openibl import check_openibl_state, openibl_model_config

# torchvision VGG16 features: (index, in, out) of each 3x3 convolution up to conv5_3
CONVS = [(0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256), (12, 256, 256),
         (14, 256, 256), (17, 256, 512), (19, 512, 512), (21, 512, 512), (24, 512, 512),
         (26, 512, 512), (28, 512, 512)]
POOL_AFTER = {2, 7, 14, 21}
MEAN_255 = 255 * torch.tensor([0.48501960784313836, 0.4579568627450961, 0.4076039215686255], dtype=torch.float64)
CLUSTERS = 4
LOCAL = 512
FOLDED_DIM = 16
PCA_COLUMNS = 24  # more directions in the file than kept
PCA_DIM = 12
SIZE = (64, 80)  # (H, W): a 4x5 conv5_3 map


def random_state(seed, folded_dim=None):
    g = torch.Generator().manual_seed(seed)
    state = OrderedDict()
    for index, cin, cout in CONVS:
        state[f"base_model.base.{index}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * (2 / (9 * cin)) ** 0.5
        state[f"base_model.base.{index}.bias"] = 0.1 * torch.randn(cout, generator=g)
    state["net_vlad.conv.weight"] = 3 * torch.randn(CLUSTERS, LOCAL, 1, 1, generator=g) / LOCAL ** 0.5
    state["net_vlad.centroids"] = torch.randn(CLUSTERS, LOCAL, generator=g) / LOCAL ** 0.5
    if folded_dim:
        state["pca_layer.weight"] = torch.randn(folded_dim, CLUSTERS * LOCAL, 1, 1, generator=g) / (CLUSTERS * LOCAL) ** 0.5
        state["pca_layer.bias"] = 0.1 * torch.randn(folded_dim, generator=g)
    return state


def write_pca_file(path, seed=1):
    rng = np.random.default_rng(seed)
    dim = CLUSTERS * LOCAL
    u = (rng.standard_normal((dim, PCA_COLUMNS)) / dim ** 0.5).astype(np.float32)
    lams = rng.uniform(0.05, 1.0, PCA_COLUMNS).astype(np.float32)
    mu = (0.01 * rng.standard_normal((dim, 1))).astype(np.float32)
    with h5py.File(path, "w") as handle:
        handle.create_dataset("U", data=u)
        handle.create_dataset("lams", data=lams)
        handle.create_dataset("mu", data=mu)
        handle.create_dataset("Utmu", data=u.T @ mu)
    return u.astype(np.float64), lams.astype(np.float64), mu.astype(np.float64)


def authors_descriptor(state, image, pca_weight=None, pca_bias=None):
    """(D,) float64 descriptor of an (H, W, 3) uint8 RGB image, the authors' way."""
    x = torch.from_numpy(image).double().permute(2, 0, 1)[None] - MEAN_255[:, None, None]
    for index, _, _ in CONVS:
        x = F.conv2d(x, state[f"base_model.base.{index}.weight"].double(),
                     state[f"base_model.base.{index}.bias"].double(), padding=1)
        if index != 28:  # conv5_3 is taken before its ReLU
            x = x.clamp(min=0)
        if index in POOL_AFTER:
            x = F.max_pool2d(x, 2)
    local = x[0].reshape(LOCAL, -1).T  # (N, 512)
    local = local / local.norm(dim=1, keepdim=True)
    assignment = torch.softmax(local @ state["net_vlad.conv.weight"].double()[:, :, 0, 0].T, dim=1)  # (N, K)
    centroids = state["net_vlad.centroids"].double()
    vlad = torch.stack([(assignment[:, k, None] * (local - centroids[k])).sum(dim=0) for k in range(CLUSTERS)])
    vlad = vlad / vlad.norm(dim=1, keepdim=True)
    v = vlad.reshape(-1)  # cluster-major
    v = v / v.norm()
    if pca_weight is None:
        return v
    y = pca_weight @ v + pca_bias
    return y / y.norm()


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    image = np.random.default_rng(0).integers(0, 256, size=SIZE + (3,), dtype=np.uint8)
    path = tmp_path_factory.mktemp("image") / "query.png"
    Image.fromarray(image).save(path)  # lossless; at the model's input size, so not resized
    return path, image


@pytest.fixture(scope="module")
def hub_file(tmp_path_factory):
    state = random_state(0, folded_dim=FOLDED_DIM)
    path = tmp_path_factory.mktemp("hub") / "vgg16_netvlad.pth"
    torch.save(state, path)
    return path, state


def training_checkpoint(folder, name="checkpoint2_4.pth.tar"):
    state = random_state(3)
    torch.save({"state_dict": OrderedDict(("module." + k, v) for k, v in state.items()),
                "epoch": 5, "generation": 2, "best_recall5": 0.91}, folder / name)
    return folder / name, state


def our_descriptor(network, image_path):
    with torch.no_grad():
        return network(network.transform()(Image.open(image_path).convert("RGB"))[None])[0].double()


def assert_same_descriptor(ours, reference):
    assert ours.shape == reference.shape
    assert float((ours - reference).norm() / reference.norm()) < 1e-5


def test_hub_file__descriptors_match_the_authors_forward_in_float64(hub_file, image_file):
    path, state = hub_file
    converted = convert_openibl(path, input_size=SIZE)
    network = converted.network
    assert network.out_dim == FOLDED_DIM and network.input_size == SIZE
    assert network.mean == tuple(MEAN_255.div(255).tolist()) and network.std == (1 / 255,) * 3
    assert converted.source == {"format": "openibl", "file": path.name, "layout": "hub file", "pca": "folded in"}
    weight, bias = state["pca_layer.weight"].double()[:, :, 0, 0], state["pca_layer.bias"].double()
    assert_same_descriptor(our_descriptor(network, image_file[0]), authors_descriptor(state, image_file[1], weight, bias))


@pytest.mark.parametrize("whiten", [True, False])
def test_training_checkpoint__with_its_pca_file_matches_the_authors_forward(tmp_path, image_file, whiten):
    path, state = training_checkpoint(tmp_path)
    u, lams, mu = write_pca_file(tmp_path / "pca_params_checkpoint2_4.h5")  # found next to it
    converted = convert_openibl(path, pca_dim=PCA_DIM, whiten=whiten, input_size=SIZE)
    assert converted.network.out_dim == PCA_DIM
    assert converted.source["epoch"] == 5 and converted.source["generation"] == 2
    assert converted.source["pca_file"] == "pca_params_checkpoint2_4.h5"
    directions = u[:, :PCA_DIM] / np.sqrt(lams[:PCA_DIM]) if whiten else u[:, :PCA_DIM]
    weight = torch.from_numpy(directions.T)
    bias = -weight @ torch.from_numpy(mu[:, 0])
    reference = authors_descriptor(state, image_file[1], weight, bias)
    assert_same_descriptor(our_descriptor(converted.network, image_file[0]), reference)


def test_training_checkpoint__explicit_pca_file_or_none(tmp_path, image_file):
    path, state = training_checkpoint(tmp_path, "model_best.pth.tar")
    bare = convert_openibl(path, input_size=SIZE)
    assert bare.network.pca is None and bare.network.out_dim == CLUSTERS * LOCAL
    assert_same_descriptor(our_descriptor(bare.network, image_file[0]), authors_descriptor(state, image_file[1]))
    u, lams, mu = write_pca_file(tmp_path / "elsewhere.h5")
    with_pca = convert_openibl(path, tmp_path / "elsewhere.h5", pca_dim=PCA_DIM, input_size=SIZE)
    assert with_pca.network.out_dim == PCA_DIM and with_pca.source["pca_file"] == "elsewhere.h5"


def meta(shape):
    return torch.empty(shape, device="meta")


def test_released_shapes__netvlad_64_and_4096_d_at_480x640():
    """The shapes of the released files, without allocating their 512 MB PCA."""
    hub = {f"base_model.base.{i}.{kind}": meta((cout, cin, 3, 3) if kind == "weight" else (cout,))
           for i, cin, cout in CONVS for kind in ("weight", "bias")}
    hub.update({"net_vlad.conv.weight": meta((64, 512, 1, 1)), "net_vlad.centroids": meta((64, 512)),
                "pca_layer.weight": meta((4096, 32768, 1, 1)), "pca_layer.bias": meta((4096,))})
    assert check_openibl_state(hub, "hub.pth", folded_pca=True) == (64, 4096)
    training = {k: v for k, v in hub.items() if not k.startswith("pca_layer")}
    assert check_openibl_state(training, "model_best.pth.tar", folded_pca=False) == (64, None)
    config = openibl_model_config(64)
    assert config.backbone == "vgg16" and config.head == "netvlad" and config.head_options == {"clusters": 64}
    assert config.input_size == (480, 640) and config.std == (0.00392156862745098,) * 3
    assert config.mean == (0.48501960784313836, 0.4579568627450961, 0.4076039215686255)


def _without(state, key):
    return OrderedDict((k, v) for k, v in state.items() if k != key)


BAD_STATES = {
    "missing key net_vlad.centroids": lambda s: _without(s, "net_vlad.centroids"),
    "unexpected key classifier.0.weight": lambda s: OrderedDict(s, **{"classifier.0.weight": torch.zeros(1)}),
    "base_model.base.28.weight has shape (512, 256, 3, 3), expected (512, 512, 3, 3)":
        lambda s: OrderedDict(s, **{"base_model.base.28.weight": torch.zeros(512, 256, 3, 3)}),
    "pca_layer.weight has shape (16, 1024, 1, 1), expected (16, 2048, 1, 1)":
        lambda s: OrderedDict(s, **{"pca_layer.weight": torch.zeros(16, 1024, 1, 1)}),
    "missing key pca_layer.bias": lambda s: _without(s, "pca_layer.bias"),
}


@pytest.mark.parametrize("problem", sorted(BAD_STATES))
def test_bad_hub_file__one_line_naming_the_file_and_the_first_problem(hub_file, tmp_path, problem):
    path = tmp_path / "bad.pth"
    torch.save(BAD_STATES[problem](hub_file[1]), path)
    with pytest.raises(CheckpointError) as error:
        convert_openibl(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ") and problem in message and "\n" not in message


def test_bad_training_files__one_line_naming_the_file_and_the_first_problem(tmp_path):
    path, state = training_checkpoint(tmp_path)
    torch.save({"state_dict": state, "epoch": 1, "optimizer": {}}, tmp_path / "other.pth.tar")
    with pytest.raises(CheckpointError, match=r"other\.pth\.tar: .*unexpected key optimizer$"):
        convert_openibl(tmp_path / "other.pth.tar")
    torch.save({"state_dict": OrderedDict(state, **{"pca_layer.bias": torch.zeros(4)})}, tmp_path / "folded.pth.tar")
    with pytest.raises(CheckpointError, match=r"folded\.pth\.tar: .*unexpected key pca_layer\.bias$"):
        convert_openibl(tmp_path / "folded.pth.tar")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match=r"list\.pth: not an OpenIBL model file: a list"):
        convert_openibl(tmp_path / "list.pth")
    pca = tmp_path / "pca.h5"
    write_pca_file(pca)
    with h5py.File(pca, "a") as handle:
        del handle["lams"]
    with pytest.raises(CheckpointError, match=r"pca\.h5: not an OpenIBL PCA file: missing dataset lams$"):
        convert_openibl(path, pca, pca_dim=PCA_DIM)
    write_pca_file(pca)
    with pytest.raises(CheckpointError, match=r"pca\.h5: 24 principal directions, fewer than the 4,096 asked for$"):
        convert_openibl(path, pca)
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(CheckpointError, match=r"text\.h5: cannot read PCA parameters"):
        convert_openibl(path, tmp_path / "text.h5")


def test_pca_options_without_a_pca_to_apply__refused(hub_file, tmp_path):
    with pytest.raises(ConfigError, match="holds its PCA-whitening already"):
        convert_openibl(hub_file[0], pca_dim=128)
    path, _ = training_checkpoint(tmp_path)
    with pytest.raises(ConfigError, match="need a PCA file"):
        convert_openibl(path, whiten=False)


def test_cli__writes_a_weights_only_model_file_and_says_what_it_holds(hub_file, tmp_path):
    output = tmp_path / "paper.pt"
    result = CliRunner().invoke(convert_main, ["--from", "openibl", str(hub_file[0]), "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert "hub file, VGG16 + NetVLAD-4, PCA-whitening 2,048 -> 16 folded in" in result.output
    assert f"written {output}: vgg16 + netvlad, 16-d; input 480x640 RGB" in result.output
    payload = torch.load(output, weights_only=True)
    assert payload["converted_from"]["layout"] == "hub file"
    assert payload["model_config"]["input_size"] in ([480, 640], (480, 640))


def test_cli__bad_file_is_one_line_and_exit_code_2(hub_file, tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save(_without(hub_file[1], "net_vlad.conv.weight"), bad)
    result = CliRunner().invoke(convert_main, ["--from", "openibl", str(bad), "--output", str(tmp_path / "o.pt")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"sfrs-convert: error: {bad}: not an OpenIBL hub file (VGG16 + NetVLAD): missing key net_vlad.conv.weight"]
    assert not (tmp_path / "o.pt").exists()


def test_cli__checkpoint_holding_pickled_objects_needs_trust_checkpoint(tmp_path):
    """A training checkpoint saved with numpy values cannot be read without unpickling:
    refused in one line naming the file, converted with --trust-checkpoint."""
    import numpy as np

    state = random_state(3)
    source = tmp_path / "checkpoint2_4.pth.tar"
    torch.save({"state_dict": OrderedDict(("module." + k, v) for k, v in state.items()),
                "epoch": 5, "best_recall5": np.float64(0.91)}, source)
    command = ["--from", "openibl", str(source), "--output", str(tmp_path / "o.pt")]
    refused = CliRunner().invoke(convert_main, command)
    assert refused.exit_code == 2 and len(refused.output.strip().splitlines()) == 1
    assert str(source) in refused.output and "--trust-checkpoint" in refused.output
    assert not (tmp_path / "o.pt").exists()
    trusted = CliRunner().invoke(convert_main, [*command, "--trust-checkpoint"])
    assert trusted.exit_code == 0, trusted.output
    assert torch.load(tmp_path / "o.pt", weights_only=True)["converted_from"]["layout"] == "training checkpoint"


def write_vg_folder(root, images):
    """Two database images and one query (closer to the first) at the model's input size."""
    for kind, names in (("database", ["@0@0@.png", "@100@0@.png"]), ("queries", ["@3@0@.png"])):
        folder = root / "images" / "test" / kind
        folder.mkdir(parents=True)
        for name in names:
            Image.fromarray(next(images)).save(folder / name)


def test_converted_file__read_by_load_network_sfrs_eval_and_init_from(hub_file, image_file, tmp_path):
    from sfrs.training.initialise import _from_model_file

    converted = convert_openibl(hub_file[0], input_size=SIZE)
    path = tmp_path / "paper.pt"
    converted.network.save(path, extra={"converted_from": converted.source})
    loaded = load_network(path)
    assert loaded.config == converted.network.config
    assert torch.equal(our_descriptor(loaded, image_file[0]), our_descriptor(converted.network, image_file[0]))

    rng = np.random.default_rng(1)
    write_vg_folder(tmp_path / "city", iter([rng.integers(0, 256, SIZE + (3,), dtype=np.uint8) for _ in range(3)]))
    result = CliRunner().invoke(eval_main, ["--checkpoint", str(path), "--dataset", str(tmp_path / "city"),
                                            "--json", str(tmp_path / "r.json"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r.json").read_text())["descriptor_dim"] == FOLDED_DIM

    wanted = ModelConfig(backbone="vgg16", head="netvlad", head_options={"clusters": CLUSTERS}, input_size=SIZE)
    student = _from_model_file(str(path), wanted, "cpu", False)
    assert student.pca is None and student.mean == loaded.mean and student.std == loaded.std
