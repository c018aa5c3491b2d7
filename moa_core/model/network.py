"""The MOAProfiler network: torchvision EfficientNet-B0 with a 5-channel stem.

Wong et al. (2023): "The only modification to EfficientNet was adjusting the input
layer to receive five channels instead of three." Random initialization (ImageNet
weights expect 3 channels and cannot be downloaded here anyway).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import efficientnet_b0

EMBEDDING_DIM = 1280


def build_model(num_classes: int, in_channels: int = 5, dropout: float = 0.2) -> nn.Module:
    """EfficientNet-B0 (random init) with an ``in_channels`` stem and ``num_classes`` outputs."""
    model = efficientnet_b0(weights=None, num_classes=num_classes, dropout=dropout)
    old = model.features[0][0]
    stem = nn.Conv2d(
        in_channels, old.out_channels, kernel_size=old.kernel_size, stride=old.stride, padding=old.padding, bias=False
    )
    nn.init.kaiming_normal_(stem.weight, mode="fan_out")
    model.features[0][0] = stem
    # torchvision initializes the head uniform(+-1/sqrt(num_classes)): fine for ImageNet's
    # 1000 classes, but with tens of MOA classes the initial logits have SD ~10 and
    # from-scratch SGD thrashes. Start the head near zero (initial loss ~ log C).
    head = model.classifier[-1]
    nn.init.normal_(head.weight, std=0.01)
    nn.init.zeros_(head.bias)
    return model


def embed_and_logits(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled 1280-d features (last conv block -> global average pool -> flatten) and logits."""
    feats = torch.flatten(model.avgpool(model.features(x).float()), 1)  # pooled in fp32 under bf16 autocast
    return feats, model.classifier(feats)
