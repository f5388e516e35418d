"""The EM loop of EM-CVGL (Li et al., 2024) on cached frozen features.

Each step draws a batch (view-A rows without replacement, epoch after epoch; every
view-B row unless ``optim.gallery_size`` is set), encodes both views with the shared
adapter (in one BatchNorm batch, or one per view as the reference: ``adapter.batch_norm``),
and then:

- E-step: mutual-nearest-neighbour pseudo-labels among the batch's rows (``pseudo_labels.scope:
  batch``, the reference) or searched over the whole target set (``whole_set``; the labels
  inside the batch are kept);
- M-step: ``w_nce * InfoNCE + w_rec * (rec(A) + rec(B))`` minimised by one AdamW step
  (linear warm-up, cosine decay, gradient values clipped).

Resume: ``checkpoints/last.pt`` holds the step, the adapter (temperature and BatchNorm
statistics included), the optimiser and the per-step history, written atomically every
``checkpoint_every`` steps. Batches are a function of (seed, step) only, so a resumed
run takes the very steps an uninterrupted one would and ends with the same weights.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from sfrs.adaptation.config import AdaptConfig
from sfrs.adaptation.losses import reconstruction_l1, symmetric_info_nce
from sfrs.adaptation.pseudo_labels import PseudoLabels, pseudo_labels, restrict_to_batch, whole_set_pseudo_labels
from sfrs.errors import CheckpointError, ConfigError, SfrsError
from sfrs.models import Adapter
from sfrs.utils.checkpoint_file import load_checkpoint_file, save_checkpoint_file

STATE_FORMAT = "sfrs-adapt-state"
STATE_VERSION = 1
#: random-stream purposes: batches of view A and of view B never share a stream.
_VIEW_A, _VIEW_B = 1, 2

PositiveTest = Callable[[np.ndarray, np.ndarray], np.ndarray]
#: rows per forward pass when the adapter encodes cached features without gradients.
ENCODE_CHUNK = 8192


class AdaptationError(SfrsError):
    """The adaptation cannot go on (e.g. a non-finite loss); one line for the user."""


def lr_at(step: int, steps: int, base: float, warmup: int) -> float:
    """Learning rate of ``step`` (0-based): linear warm-up ``base * (step + 1) / (warmup + 1)``
    for the first ``warmup`` steps, then cosine decay from ``base`` to 0 at ``steps``.

    (The reference's scheduler gives its first step a learning rate of 0; here every step
    moves the weights.)
    """
    if step < warmup:
        return base * (step + 1) / (warmup + 1)
    progress = (step - warmup) / max(1, steps - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * progress))


@torch.no_grad()
def encode_rows(adapter: Adapter, features: Tensor) -> Tensor:
    """(N, D) frozen features -> (N, H) adapted descriptors in eval mode (as retrieval sees
    them), in chunks; the adapter's train/eval mode is restored."""
    was_training = adapter.training
    adapter.eval()
    try:
        parts = [adapter(features[start:start + ENCODE_CHUNK]) for start in range(0, features.shape[0], ENCODE_CHUNK)]
    finally:
        adapter.train(was_training)
    return torch.cat(parts) if parts else features.new_zeros((0, adapter.out_dim))


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), *(int(k) for k in keys)]))


def batch_rows(num: int, size: int, step: int, seed: int) -> np.ndarray:
    """View-A rows of ``step``: the stream of per-epoch permutations of ``range(num)``
    (epoch e shuffled by (seed, e)) cut into consecutive batches of ``min(size, num)``."""
    size = min(size, num)
    start = step * size
    rows: List[np.ndarray] = []
    epoch, offset = divmod(start, num)
    while sum(len(r) for r in rows) < size:
        order = _rng(seed, _VIEW_A, epoch).permutation(num)
        rows.append(order[offset:offset + size - sum(len(r) for r in rows)])
        epoch, offset = epoch + 1, 0
    return np.concatenate(rows)


def gallery_rows(num: int, size: int, step: int, seed: int) -> np.ndarray:
    """View-B rows of ``step``: all of them (``size`` 0 or >= num), else a sorted random subset."""
    if size <= 0 or size >= num:
        return np.arange(num)
    return np.sort(_rng(seed, _VIEW_B, step).choice(num, size=size, replace=False))


class AdaptationLoop:
    """Trains ``adapter`` on the cached features of the two views.

    Args:
        adapter: the adapter to train, on the device of the features.
        features_a / features_b: (N_A, D) / (N_B, D) float32 frozen features of views A and B.
        config: the run's configuration (``optim``, ``loss``, ``pseudo_labels``, ``seed``,
            ``checkpoint_every``).
        state_path: the resumable checkpoint (``.../checkpoints/last.pt``).
        fingerprint: identity of what the run trains (checkpoint, data, configuration);
            a state file with another fingerprint is refused.
        is_positive: optional ground-truth test of (A rows, B rows) pairs, only to log
            pseudo-label precision.
        writer: optional TensorBoard ``SummaryWriter``.
    """

    def __init__(
        self,
        adapter: Adapter,
        features_a: Tensor,
        features_b: Tensor,
        config: AdaptConfig,
        *,
        state_path: Path,
        fingerprint: str,
        is_positive: Optional[PositiveTest] = None,
        writer: Any = None,
    ) -> None:
        self.adapter = adapter
        self.features_a = features_a
        self.features_b = features_b
        self.config = config
        self.state_path = Path(state_path)
        self.fingerprint = fingerprint
        self.is_positive = is_positive
        self.writer = writer
        optim = config.optim
        for name, rows, per_step in (
            ("A", features_a.shape[0], optim.batch_size),
            ("B", features_b.shape[0], optim.gallery_size or features_b.shape[0]),
        ):
            if min(rows, per_step) < 2:
                raise ConfigError(
                    f"view {name} gives {min(rows, per_step)} row(s) per step: BatchNorm needs at least 2 "
                    f"({rows} images; optim.batch_size {optim.batch_size}, optim.gallery_size {optim.gallery_size})"
                )
        self.optimizer = torch.optim.AdamW(adapter.parameters(), lr=optim.lr, weight_decay=optim.weight_decay)
        self.step = 0
        self.history: List[Dict[str, Any]] = []

    # -- state ------------------------------------------------------------------------------
    def resume(self, trust: bool = False) -> bool:
        """Load ``state_path`` when it exists; True when a previous run was found.
        ``trust`` also reads a state holding pickled objects, which can run code.

        Raises:
            CheckpointError: unreadable or untrusted file, or a run of another model, data
                or configuration.
        """
        if not self.state_path.exists():
            return False
        state = load_checkpoint_file(self.state_path, trust, what="the adaptation state", hint="delete it to start over")
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise CheckpointError(f"{self.state_path}: not an sfrs-adapt state file")
        if state.get("fingerprint") != self.fingerprint:
            raise CheckpointError(
                f"{self.state_path}: this output folder holds an adaptation of another checkpoint, data set or "
                "configuration; choose another --output or delete the folder"
            )
        self.adapter.load_state_dict(state["adapter"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.history = list(state["history"])
        return True

    def save(self) -> None:
        save_checkpoint_file(
            {
                "format": STATE_FORMAT,
                "version": STATE_VERSION,
                "fingerprint": self.fingerprint,
                "step": self.step,
                "adapter": self.adapter.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "history": self.history,
            },
            self.state_path,
        )

    @property
    def done(self) -> bool:
        return self.step >= self.config.optim.steps

    # -- one step -------------------------------------------------------------------------
    def train_step(self) -> Dict[str, Any]:
        """One E-step + M-step; returns the step's record (also appended to ``history``)."""
        config, optim, adapter = self.config, self.config.optim, self.adapter
        step = self.step
        device = self.features_a.device
        rows_a = batch_rows(self.features_a.shape[0], optim.batch_size, step, config.seed)
        rows_b = gallery_rows(self.features_b.shape[0], optim.gallery_size, step, config.seed)
        x_a = self.features_a[torch.as_tensor(rows_a, device=device)]
        x_b = self.features_b[torch.as_tensor(rows_b, device=device)]
        lr = lr_at(step, optim.steps, optim.lr, optim.warmup_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

        adapter.train()
        if config.adapter.batch_norm == "per_view":  # the reference: one BatchNorm batch per view
            encoded_a, encoded_b = adapter.encode(x_a), adapter.encode(x_b)
        else:
            encoded = adapter.encode(torch.cat([x_a, x_b]))
            encoded_a, encoded_b = encoded[: len(x_a)], encoded[len(x_a):]
        similarity = F.normalize(encoded_a, dim=1) @ F.normalize(encoded_b, dim=1).t()
        labels, whole_set = self._e_step(similarity.detach(), rows_a, rows_b)
        scale = adapter.scale
        infonce = symmetric_info_nce(similarity, labels, scale, config.loss.label_smoothing)
        if config.adapter.batch_norm == "per_view":
            decoded_a, decoded_b = adapter.decoder(encoded_a), adapter.decoder(encoded_b)
        else:
            decoded = adapter.decoder(encoded)
            decoded_a, decoded_b = decoded[: len(x_a)], decoded[len(x_a):]
        rec_a = reconstruction_l1(F.normalize(decoded_a, dim=1), x_a)
        rec_b = reconstruction_l1(F.normalize(decoded_b, dim=1), x_b)
        total = config.loss.infonce_weight * infonce + config.loss.reconstruction_weight * (rec_a + rec_b)
        if not torch.isfinite(total):
            raise AdaptationError(
                f"step {step}: the loss is not finite (InfoNCE {infonce.item()}, reconstruction "
                f"{rec_a.item()} / {rec_b.item()}); lower optim.lr"
            )
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if optim.grad_clip > 0:
            torch.nn.utils.clip_grad_value_(adapter.parameters(), optim.grad_clip)
        self.optimizer.step()

        precision = labels.precision(rows_a, rows_b, self.is_positive) if self.is_positive is not None else None
        if whole_set is not None:
            all_a, all_b = np.arange(self.features_a.shape[0]), np.arange(self.features_b.shape[0])
            whole_set_record = {
                "count": whole_set.count,
                "precision": whole_set.precision(all_a, all_b, self.is_positive) if self.is_positive is not None else None,
            }
        else:
            whole_set_record = None
        record = {
            "step": step,
            "lr": lr,
            "losses": {
                "infonce": infonce.item(),
                "reconstruction_a": rec_a.item(),
                "reconstruction_b": rec_b.item(),
                "total": total.item(),
            },
            "mutual": labels.mutual,
            "mutual_only": labels.mutual_only,
            "labels_a": int(labels.rows_a.numel()),
            "labels_b": int(labels.rows_b.numel()),
            "precision": precision,
            "whole_set": whole_set_record,
            # the scale that weighted this step's logits (before the update)
            "temperature": 1.0 / scale.item(),
        }
        self.history.append(record)
        self.step += 1
        self._log(record)
        return record

    def _e_step(
        self, similarity: Tensor, rows_a: np.ndarray, rows_b: np.ndarray
    ) -> Tuple[PseudoLabels, Optional[PseudoLabels]]:
        """The batch's labels (batch positions) and, scope ``whole_set``, those of the whole set."""
        settings = self.config.pseudo_labels
        if settings.scope == "batch":
            return pseudo_labels(similarity, settings.threshold, settings.min_mutual), None
        set_a, set_b = self._whole_set_features()
        everything = whole_set_pseudo_labels(set_a, set_b, settings.threshold, settings.min_mutual)
        batch = restrict_to_batch(everything, rows_a, rows_b, self.features_a.shape[0], self.features_b.shape[0],
                                  device=similarity.device)
        return batch, everything

    @torch.no_grad()
    def _whole_set_features(self) -> Tuple[np.ndarray, np.ndarray]:
        """Both views encoded as a training batch would be, with the whole set as the batch:
        BatchNorm normalises by the set's statistics (joint, or per view as configured),
        not by running statistics, which lag behind the first steps."""
        linear, norm = self.adapter.encoder
        projected = [
            torch.cat([linear(x[start:start + ENCODE_CHUNK]) for start in range(0, x.shape[0], ENCODE_CHUNK)])
            for x in (self.features_a, self.features_b)
        ]

        def normalised(z: Tensor) -> Tensor:
            return F.batch_norm(z, None, None, norm.weight, norm.bias, training=True, eps=norm.eps)

        if self.config.adapter.batch_norm == "per_view":
            encoded = [normalised(z) for z in projected]
        else:
            joint = normalised(torch.cat(projected))
            encoded = [joint[: projected[0].shape[0]], joint[projected[0].shape[0]:]]
        return tuple(F.normalize(z, dim=1).float().cpu().numpy() for z in encoded)

    def _log(self, record: Dict[str, Any]) -> None:
        if self.writer is None:
            return
        step = record["step"]
        for name, value in record["losses"].items():
            self.writer.add_scalar(f"loss/{name}", value, step)
        self.writer.add_scalar("pseudo_labels/count", record["labels_a"] + record["labels_b"], step)
        self.writer.add_scalar("pseudo_labels/mutual_pairs", record["mutual"], step)
        if record["precision"] is not None:
            self.writer.add_scalar("pseudo_labels/precision", 100.0 * record["precision"], step)
        whole_set = record["whole_set"]
        if whole_set is not None:
            self.writer.add_scalar("pseudo_labels/whole_set_count", whole_set["count"], step)
            if whole_set["precision"] is not None:
                self.writer.add_scalar("pseudo_labels/whole_set_precision", 100.0 * whole_set["precision"], step)
        self.writer.add_scalar("temperature", record["temperature"], step)
        self.writer.add_scalar("lr", record["lr"], step)

    # -- the loop ------------------------------------------------------------------------
    def run(self, progress: bool = True, on_step: Optional[Callable[[Dict[str, Any]], None]] = None) -> List[Dict[str, Any]]:
        """Steps until ``optim.steps``, checkpointing every ``checkpoint_every`` steps and at
        the end; ``on_step(record)`` runs after each step (and its checkpoint)."""
        from tqdm import tqdm

        steps = self.config.optim.steps
        with tqdm(total=steps, initial=self.step, desc="adapting", unit="step", disable=not progress,
                  dynamic_ncols=True) as bar:
            while not self.done:
                record = self.train_step()
                if self.step % self.config.checkpoint_every == 0 or self.done:
                    self.save()
                bar.update(1)
                postfix = {"loss": f"{record['losses']['total']:.4f}", "labels": record["labels_a"] + record["labels_b"]}
                if record["precision"] is not None:
                    postfix["precision"] = f"{100 * record['precision']:.1f}%"
                bar.set_postfix(postfix)
                if on_step is not None:
                    on_step(record)
        return self.history
