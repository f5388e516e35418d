"""The SFRS authors' released models (OpenIBL; SFRS, Ge et al., ECCV 2020) as sfrs models.

Two layouts, both VGG16 + NetVLAD with K clusters (K = 64 in every release):

- the hub file (``vgg16_netvlad.pth``, the SFRS model): a plain state dict
  ``base_model.base.{i}.weight|bias`` (torchvision VGG16 ``features.{i}``, i <= 28),
  ``net_vlad.conv.weight`` (K, 512, 1, 1), ``net_vlad.centroids`` (K, 512), and its
  PCA-whitening as a 1x1 convolution, ``pca_layer.weight`` (P, 512K, 1, 1) and
  ``pca_layer.bias`` (P,);
- a training checkpoint (``checkpoint{gen}_{epoch}.pth.tar``, ``model_best.pth.tar``):
  ``{"state_dict", "epoch", ["generation",] "best_recall5"}``, the same keys without
  ``pca_layer`` (perhaps prefixed ``module.``), with its PCA in the HDF5 file
  ``pca_params_<name up to its first dot>.h5`` next to it: ``U`` (512K, n), ``lams`` (n,),
  ``mu`` (512K, 1), ``Utmu`` (n, 1).

Their forward is the one of :class:`~sfrs.models.GeoNet` (conv5_3 before its ReLU;
NetVLAD on L2-normalised local descriptors, intra-normalised, flattened cluster-major,
L2; PCA ``y = W v + b``; L2). Their input is not ImageNet's: RGB in [0, 255] minus a
per-channel mean (MatConvNet VGG16), at 480x640. That pre-processing is written into the
model's configuration, so every command feeds the converted model what it expects.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import h5py
import numpy as np
import torch
import torchvision
from torch import Tensor

from sfrs.config import ModelConfig
from sfrs.errors import CheckpointError, ConfigError
from sfrs.models.network import GeoNet, build_network
from sfrs.models.whitening import PCAWhitening
from sfrs.utils.checkpoint_file import load_checkpoint_file

#: ToTensor() then Normalize(OPENIBL_MEAN, OPENIBL_STD) = RGB in [0, 255] minus 255 * mean.
OPENIBL_MEAN: Tuple[float, float, float] = (0.48501960784313836, 0.4579568627450961, 0.4076039215686255)
OPENIBL_STD: Tuple[float, float, float] = (0.00392156862745098,) * 3
OPENIBL_INPUT_SIZE: Tuple[int, int] = (480, 640)
#: principal directions the authors keep from a PCA file.
OPENIBL_PCA_DIM = 4096

HUB = "hub file"
TRAINING = "training checkpoint"
_CHECKPOINT_KEYS = ("state_dict", "epoch", "generation", "best_recall5")
_PCA_DATASETS = ("U", "lams", "mu", "Utmu")
_FOLDED_PCA = ("pca_layer.weight", "pca_layer.bias")
_LOCAL_DIM = 512  # conv5_3 channels

PathLike = Union[str, Path]


@dataclass
class Converted:
    """A converted model, where it came from (plain data, saved with it) and one line saying so."""

    network: GeoNet
    source: Dict[str, Any]
    description: str


def openibl_model_config(clusters: int, input_size: Tuple[int, int] = OPENIBL_INPUT_SIZE) -> ModelConfig:
    """The sfrs description of the authors' VGG16 + NetVLAD-``clusters``, their pre-processing included."""
    return ModelConfig(
        backbone="vgg16", pretrained="none", head="netvlad", head_options={"clusters": int(clusters)},
        input_size=(int(input_size[0]), int(input_size[1])), mean=OPENIBL_MEAN, std=OPENIBL_STD,
    )


def convert_openibl(
    path: PathLike,
    pca_path: Optional[PathLike] = None,
    *,
    pca_dim: Optional[int] = None,
    whiten: Optional[bool] = None,
    input_size: Tuple[int, int] = OPENIBL_INPUT_SIZE,
    trust: bool = False,
) -> Converted:
    """The network of an OpenIBL hub file or training checkpoint (with its PCA file).

    ``path`` is read with ``weights_only`` (the hub file, a plain state dict, needs no
    more); a file holding other pickled objects (e.g. a training checkpoint saved with
    numpy values) is refused unless ``trust``, since unpickling it can run code. A training checkpoint takes its PCA from ``pca_path``, else
    from ``pca_params_<stem>.h5`` next to it when present, else has none (512K-d output):
    the first ``pca_dim`` (default 4,096) principal directions, divided by
    sqrt(eigenvalue) unless ``whiten`` is False. A hub file has its PCA already.

    Raises:
        CheckpointError: one line naming the file and the first missing or unexpected key,
            dataset or shape.
        ConfigError: PCA options that the file leaves nothing to apply to.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    content = load_checkpoint_file(path, trust=trust, what="OpenIBL model file")
    layout, state, source = _unwrap(content, path)
    if layout == HUB and (pca_path is not None or pca_dim is not None or whiten is not None):
        raise ConfigError(f"{path}: a hub file holds its PCA-whitening already; "
                          "--pca, --pca-dim and --no-whiten apply to training checkpoints")
    clusters, folded_dim = check_openibl_state(state, path, folded_pca=layout == HUB)
    network = build_network(openibl_model_config(clusters, input_size), load_pretrained=False)
    renamed = {_sfrs_key(k): v for k, v in state.items() if k not in _FOLDED_PCA}
    network.load_state_dict(renamed, strict=True)  # keys and shapes checked above
    what = f"{path}: OpenIBL {layout}, VGG16 + NetVLAD-{clusters}"
    head_dim = network.head_dim
    if layout == HUB:
        weight = state["pca_layer.weight"].reshape(folded_dim, head_dim)
        network.set_pca(PCAWhitening(torch.zeros(head_dim), weight.t().contiguous(), state["pca_layer.bias"]))
        source["pca"] = "folded in"
        what += f", PCA-whitening {head_dim:,} -> {folded_dim:,} folded in"
    else:
        found = Path(pca_path) if pca_path is not None else _pca_next_to(path)
        if found is None and (pca_dim is not None or whiten is not None):
            raise ConfigError(f"{path}: --pca-dim and --no-whiten need a PCA file (--pca, or {_pca_name(path)} next to it)")
        if found is None:
            what += (f"; no PCA (no --pca, no {_pca_name(path)} next to it): "
                     f"{head_dim:,}-d NetVLAD descriptors")
        else:
            pca_dim = OPENIBL_PCA_DIM if pca_dim is None else pca_dim
            whiten = whiten is not False
            network.set_pca(read_openibl_pca(found, head_dim, pca_dim, whiten))
            source.update(pca_file=found.name, pca="whitened" if whiten else "not whitened")
            what += f", PCA{'-whitening' if whiten else ''} {head_dim:,} -> {pca_dim:,} from {found}"
    del state, content
    return Converted(network.eval(), source, what)


def check_openibl_state(state: Mapping[str, Tensor], path: PathLike, folded_pca: bool) -> Tuple[int, Optional[int]]:
    """(clusters, folded PCA output dimension or None) of an OpenIBL state dict.

    Raises:
        CheckpointError: the first missing or unexpected key, or the first shape that is
            not the layout's, naming ``path``.
    """
    layout = f"OpenIBL {HUB if folded_pca else TRAINING} (VGG16 + NetVLAD)"
    backbone = _vgg16_shapes()
    expected = list(backbone) + ["net_vlad.conv.weight", "net_vlad.centroids"] + (list(_FOLDED_PCA) if folded_pca else [])
    for key in expected:
        if key not in state:
            raise CheckpointError(f"{path}: not an {layout}: missing key {key}")
    for key in state:
        if key not in expected:
            raise CheckpointError(f"{path}: not an {layout}: unexpected key {key}")
    centroids = state["net_vlad.centroids"].shape
    if len(centroids) != 2 or centroids[1] != _LOCAL_DIM or centroids[0] < 1:
        raise CheckpointError(f"{path}: net_vlad.centroids has shape {tuple(centroids)}, expected (K, {_LOCAL_DIM})")
    clusters = int(centroids[0])
    shapes = {**backbone, "net_vlad.conv.weight": (clusters, _LOCAL_DIM, 1, 1)}
    folded_dim = None
    if folded_pca:
        folded_dim = int(state["pca_layer.bias"].shape[0]) if state["pca_layer.bias"].dim() == 1 else -1
        if folded_dim < 1:
            raise CheckpointError(f"{path}: pca_layer.bias has shape {tuple(state['pca_layer.bias'].shape)}, expected (P,)")
        shapes["pca_layer.weight"] = (folded_dim, clusters * _LOCAL_DIM, 1, 1)
    for key, shape in shapes.items():
        if tuple(state[key].shape) != tuple(shape):
            raise CheckpointError(f"{path}: {key} has shape {tuple(state[key].shape)}, expected {tuple(shape)}")
    return clusters, folded_dim


def read_openibl_pca(path: PathLike, in_dim: int, dim: int = OPENIBL_PCA_DIM, whiten: bool = True) -> PCAWhitening:
    """PCA(-whitening) ``in_dim -> dim`` of an OpenIBL ``pca_params_*.h5`` file, as the
    authors apply it: ``U`` cut to its first ``dim`` columns, divided by sqrt(``lams``) if
    ``whiten``; ``y = U^T (v - mu)``, then L2.

    Raises:
        CheckpointError: not HDF5, a missing or unexpected dataset, a wrong shape, fewer
            than ``dim`` directions, or a non-positive eigenvalue to whiten by.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: PCA file not found")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read PCA parameters ({' '.join(str(exc).split())})") from None
    with handle:
        for name in _PCA_DATASETS:
            if not isinstance(handle.get(name), h5py.Dataset):
                raise CheckpointError(f"{path}: not an OpenIBL PCA file: missing dataset {name}")
        for name in handle:
            if name not in _PCA_DATASETS:
                raise CheckpointError(f"{path}: not an OpenIBL PCA file: unexpected dataset {name}")
        columns = handle["U"].shape[1] if handle["U"].ndim == 2 else -1
        expected = {"U": (in_dim, columns), "lams": (columns,), "mu": (in_dim, 1), "Utmu": (columns, 1)}
        for name, shape in expected.items():
            if handle[name].shape != shape:
                want = shape if columns > 0 else f"({in_dim}, n)"
                raise CheckpointError(f"{path}: {name} has shape {handle[name].shape}, expected {want}")
        if dim > columns:
            raise CheckpointError(f"{path}: {columns:,} principal directions, fewer than the {dim:,} asked for")
        directions = np.asarray(handle["U"][:, :dim], dtype=np.float32)
        eigenvalues = np.asarray(handle["lams"][:dim], dtype=np.float64)
        mean = np.asarray(handle["mu"][:, 0], dtype=np.float32)
    if whiten:
        if not np.all(eigenvalues > 0):
            raise CheckpointError(f"{path}: lams has non-positive values among the first {dim:,}; use --no-whiten")
        directions /= np.sqrt(eigenvalues).astype(np.float32)
    return PCAWhitening(torch.from_numpy(mean), torch.from_numpy(directions))


def _unwrap(content: Any, path: Path) -> Tuple[str, Dict[str, Tensor], Dict[str, Any]]:
    """(layout, state dict without ``module.`` prefixes, provenance) of a loaded file."""
    source: Dict[str, Any] = {"format": "openibl", "file": path.name}
    if not isinstance(content, Mapping):
        raise CheckpointError(f"{path}: not an OpenIBL model file: a {type(content).__name__}, expected a state dict "
                              "(hub file) or a dict with state_dict (training checkpoint)")
    if content.get("format") == "sfrs-model":
        raise CheckpointError(f"{path}: already an sfrs model file; use it as it is")
    if "state_dict" in content:
        layout, state = TRAINING, content["state_dict"]
        for key in content:
            if key not in _CHECKPOINT_KEYS:
                raise CheckpointError(f"{path}: not an OpenIBL {TRAINING}: unexpected key {key}")
        for key in _CHECKPOINT_KEYS[1:]:
            value = content.get(key)
            if isinstance(value, (int, float, Tensor, np.generic)):
                source[key] = value.item() if hasattr(value, "item") else value
    else:
        layout, state = HUB, content
    if not isinstance(state, Mapping) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise CheckpointError(f"{path}: not an OpenIBL {layout}: its state dict is not a mapping of names to tensors")
    if state and all(key.startswith("module.") for key in state):  # saved from DistributedDataParallel
        state = {key[len("module."):]: value for key, value in state.items()}
    source["layout"] = layout
    return layout, dict(state), source


def _vgg16_shapes() -> Dict[str, Tuple[int, ...]]:
    """``base_model.base.{i}.*`` -> shape: torchvision VGG16 ``features`` up to conv5_3."""
    with torch.device("meta"):
        features = torchvision.models.vgg16(weights=None).features[:29]
    return {f"base_model.base.{key}": tuple(value.shape) for key, value in features.state_dict().items()}


def _sfrs_key(key: str) -> str:
    if key.startswith("base_model.base."):
        return "backbone.features." + key[len("base_model.base."):]
    return {"net_vlad.conv.weight": "head.assign.weight", "net_vlad.centroids": "head.centroids"}[key]


def _pca_name(path: Path) -> str:
    return f"pca_params_{path.name.split('.')[0]}.h5"


def _pca_next_to(path: Path) -> Optional[Path]:
    candidate = path.with_name(_pca_name(path))
    return candidate if candidate.is_file() else None
