"""Optimiser, learning-rate schedule and training-time augmentation from the config."""
from __future__ import annotations

import torch
from torchvision import transforms

from sfrs.config import AugmentConfig, OptimConfig
from sfrs.errors import ConfigError

OPTIMIZERS = ("sgd", "adam", "adamw")


def build_optimizer(model: torch.nn.Module, optim: OptimConfig) -> torch.optim.Optimizer:
    """Only parameters that train (``requires_grad``) are handed to the optimiser."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("model has no trainable parameter (check model.trainable)")
    if optim.optimizer == "sgd":
        return torch.optim.SGD(params, lr=optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay)
    if optim.optimizer == "adam":
        return torch.optim.Adam(params, lr=optim.lr, weight_decay=optim.weight_decay)
    if optim.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay)
    raise ConfigError(f"optim.optimizer '{optim.optimizer}' is unknown (choose {', '.join(OPTIMIZERS)})")


def build_scheduler(optimizer: torch.optim.Optimizer, optim: OptimConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """Step schedule counted in epochs of the current generation (stepped once per epoch)."""
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(optim.lr_step_epochs, 1), gamma=optim.lr_gamma)


def build_train_transform(model, augment: AugmentConfig):
    """Resize to the model's input, colour jitter, normalise (the model owns mean/std)."""
    steps = [transforms.Resize(tuple(model.input_size))]
    if any(v > 0 for v in augment.color_jitter):
        b, c, s, h = augment.color_jitter
        steps.append(transforms.ColorJitter(brightness=b, contrast=c, saturation=s, hue=h))
    steps += [transforms.ToTensor(), transforms.Normalize(model.mean, model.std)]
    return transforms.Compose(steps)
