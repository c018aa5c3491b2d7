"""A randomly initialised efficientnet_pytorch B0 whose pooled features depend on its input.

efficientnet_pytorch's own initialisation (PyTorch's default for convolutions, running statistics (0, 1))
lets the signal vanish through the 16 blocks: on the real CPJUMP1 fields the pooled features of such a
network differ by ~1e-8 between a DMSO and an FK-866 field, so an equivalence test on them could not fail.
Here the convolutions get He (fan-out) initialisation, as torchvision's EfficientNet, and the batch-norm
statistics are calibrated on the fields themselves (cumulative averages over two half-resolution passes),
as a trained network's would be: pooled features then differ by ~0.1 between fields (spread ~0.02 per
feature), so a padding or scaling difference shows.
"""

from __future__ import annotations

import torch


def input_sensitive_upstream(x: torch.Tensor, num_classes: int = 11, seed: int = 0) -> torch.nn.Module:
    """efficientnet_pytorch's 5-channel B0 (eval mode), He-initialised, batch norm calibrated on ``x``
    (``(N, 5, H, W)`` upstream input)."""
    import efficientnet_pytorch

    torch.manual_seed(seed)
    model = efficientnet_pytorch.EfficientNet.from_name("efficientnet-b0", num_classes=num_classes, in_channels=5)
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, mode="fan_out")
        elif isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the calibration passes
            m.weight.data.normal_(1, 0.1)
            m.bias.data.normal_(0, 0.1)
    model.train()
    with torch.no_grad():
        for dy, dx in ((0, 0), (1, 1)):
            model.extract_features(x[:, :, dy::2, dx::2].contiguous())
    return model.eval()


def pooled_spread(model: torch.nn.Module, x: torch.Tensor) -> float:
    """The median over features of the per-feature SD of the pooled features across the fields of ``x``."""
    with torch.no_grad():
        feats = model._avg_pooling(model.extract_features(x)).flatten(1)
    return float(feats.std(0).median())
