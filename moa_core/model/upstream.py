"""The network the paper's published checkpoints were trained in, on torchvision's EfficientNet-B0.

Wong et al. (2023) trained ``EfficientNet.from_name("efficientnet-b0", num_classes=C, in_channels=5)``
of efficientnet_pytorch 0.7.1 (vendored in ``pfizer-opensource/moa-profiler``) and saved
``model.state_dict()`` (under ``DataParallel`` the keys start with ``module.``). That network
differs from torchvision's ``efficientnet_b0`` in three ways that change its output, which
:func:`build_upstream_model` reproduces on torchvision's modules:

1. **Padding.** efficientnet_pytorch pads its convolutions TensorFlow-style ("same"): for
   ``from_name`` the padding is *static*, computed once for the 224-px image size its B0 config
   assumes (``Conv2dStaticSamePadding``), whatever the input's size: a k×k stride-2 convolution
   pads ``(k-2)//2`` before and ``k-2 - (k-2)//2`` after (0/1 for k = 3, 1/2 for k = 5), where
   torchvision pads ``(k-1)//2`` on both sides. On 1080-px fields the two disagree in every
   stride-2 layer and even in the feature maps' sizes (the 135-px stage becomes 67 px upstream,
   68 px in torchvision).
2. **Batch norm.** eps = 1e-3 and momentum = 0.01 (TensorFlow's 0.99), torchvision's B0 uses
   PyTorch's defaults (1e-5, 0.1).
3. **Parameter names.** ``_conv_stem``/``_bn0``/``_blocks.{i}``/``_conv_head``/``_bn1``/``_fc``;
   :func:`convert_upstream_state_dict` maps them onto torchvision's ``features``/``classifier``.

Everything else (MBConv order, squeeze-excitation of ``input_filters // 4`` channels with SiLU and
a sigmoid gate, the 1280-d head, global average pooling) is the same computation, so
:func:`moa_core.model.network.embed_and_logits` gives upstream's ``getLatentRepresentation``
(pooled 1280-d features) and its logits. The equivalence is tested against efficientnet_pytorch
itself on real CPJUMP1 fields (``tests/moa_core/test_upstream_network.py``).

Why not efficientnet_pytorch as a dependency: its last release is from 2020 and unmaintained,
while this variant keeps one network family in the project (channels-last, bf16 autocast, the
training and embedding code of :mod:`moa_core.model`); efficientnet_pytorch stays a test
dependency that proves the two compute the same thing.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import efficientnet_b0

from moa_core.errors import SchemaError

#: The image size efficientnet_pytorch's B0 config assumes; its static "same" padding is computed for it.
UPSTREAM_IMAGE_SIZE = 224
BN_EPS = 1e-3
BN_MOMENTUM = 0.01


def static_same_padding(in_size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow "same" padding ``(before, after)`` of one axis for an input of ``in_size`` pixels.

    Mirrors efficientnet_pytorch's ``Conv2dStaticSamePadding``: the output has ``ceil(in / stride)``
    pixels, the total padding is what that needs, and the odd pixel goes after.
    """
    out = math.ceil(in_size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - in_size, 0)
    return total // 2, total - total // 2


class StaticSamePadConv2d(nn.Conv2d):
    """A ``Conv2d`` with a fixed, possibly asymmetric zero padding applied before the convolution.

    Parameter names are a plain ``Conv2d``'s (``weight``, ``bias``), so state dicts map one to one.
    """

    def __init__(self, conv: nn.Conv2d, pad_h: tuple[int, int], pad_w: tuple[int, int]):
        super().__init__(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=0,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
        )
        self.pad = (pad_w[0], pad_w[1], pad_h[0], pad_h[1])  # F.pad order: left, right, top, bottom

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.pad) if any(self.pad) else x)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, static_pad={self.pad}"


def _conv_input_sizes(model: nn.Module, in_channels: int, image_size: int) -> dict[str, tuple[int, int]]:
    """Spatial input size of every ``Conv2d`` of ``model`` on an ``image_size`` input (one forward pass)."""
    sizes: dict[str, tuple[int, int]] = {}

    def record(name: str):
        def hook(_mod: nn.Module, args: tuple) -> None:  # returns None: the input is left as it is
            sizes.setdefault(name, tuple(args[0].shape[-2:]))

        return hook

    hooks = [m.register_forward_pre_hook(record(n)) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, in_channels, image_size, image_size))
    finally:
        for h in hooks:
            h.remove()
    return sizes


def build_upstream_model(num_classes: int, in_channels: int = 5) -> nn.Module:
    """EfficientNet-B0 that computes what efficientnet_pytorch's ``from_name("efficientnet-b0")`` computes.

    torchvision's modules with batch norm eps 1e-3 / momentum 0.01, an ``in_channels`` stem, and every
    convolution wider than 1×1 padded statically as efficientnet_pytorch pads it for a 224-px image
    (see the module docstring). Randomly initialised; load weights with
    :func:`convert_upstream_state_dict` (or :func:`moa_core.model.pretrained.load_paper_model`).
    """
    model = efficientnet_b0(
        weights=None, num_classes=num_classes, norm_layer=partial(nn.BatchNorm2d, eps=BN_EPS, momentum=BN_MOMENTUM)
    )
    old = model.features[0][0]
    model.features[0][0] = nn.Conv2d(in_channels, old.out_channels, kernel_size=3, stride=2, padding=1, bias=False)
    sizes = _conv_input_sizes(model, in_channels, UPSTREAM_IMAGE_SIZE)
    for name, conv in list(model.named_modules()):
        if not isinstance(conv, nn.Conv2d) or conv.kernel_size == (1, 1):
            continue
        (h, w), (kh, kw), (sh, sw) = sizes[name], conv.kernel_size, conv.stride
        new = StaticSamePadConv2d(
            conv,
            static_same_padding(h, kh, sh, conv.dilation[0]),
            static_same_padding(w, kw, sw, conv.dilation[1]),
        )
        new.load_state_dict(conv.state_dict())
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, new)
    return model


_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _block_names(model: nn.Module) -> list[str]:
    """torchvision names of the 16 MBConv blocks, in efficientnet_pytorch's ``_blocks`` order."""
    return [f"features.{s}.{j}" for s in range(1, 8) for j in range(len(model.features[s]))]


def _upstream_key_map(model: nn.Module, expands: set[int]) -> dict[str, str]:
    """efficientnet_pytorch parameter name -> torchvision name, for every parameter and buffer."""
    m: dict[str, str] = {"_conv_stem.weight": "features.0.0.weight", "_conv_head.weight": "features.8.0.weight"}
    m |= {f"_bn0.{p}": f"features.0.1.{p}" for p in _BN} | {f"_bn1.{p}": f"features.8.1.{p}" for p in _BN}
    m |= {"_fc.weight": "classifier.1.weight", "_fc.bias": "classifier.1.bias"}
    for i, tv in enumerate(_block_names(model)):
        up, d = f"_blocks.{i}", int(i in expands)  # torchvision's block.0 is the expansion when there is one
        if d:
            m[f"{up}._expand_conv.weight"] = f"{tv}.block.0.0.weight"
            m |= {f"{up}._bn0.{p}": f"{tv}.block.0.1.{p}" for p in _BN}
        m[f"{up}._depthwise_conv.weight"] = f"{tv}.block.{d}.0.weight"
        m |= {f"{up}._bn1.{p}": f"{tv}.block.{d}.1.{p}" for p in _BN}
        for ours, theirs in (("_se_reduce", "fc1"), ("_se_expand", "fc2")):
            m |= {f"{up}.{ours}.{p}": f"{tv}.block.{d + 1}.{theirs}.{p}" for p in ("weight", "bias")}
        m[f"{up}._project_conv.weight"] = f"{tv}.block.{d + 2}.0.weight"
        m |= {f"{up}._bn2.{p}": f"{tv}.block.{d + 2}.1.{p}" for p in _BN}
    return m


def strip_parallel_prefix(state: dict[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """Drop ``DataParallel``/``DistributedDataParallel``'s leading ``module.`` from every key (as upstream does)."""
    return OrderedDict((k[len("module.") :] if k.startswith("module.") else k, v) for k, v in state.items())


def upstream_shape(state: dict[str, torch.Tensor], source: str = "state dict") -> tuple[int, int]:
    """``(num_classes, in_channels)`` of an efficientnet_pytorch EfficientNet-B0 state dict."""
    for key in ("_fc.weight", "_conv_stem.weight"):
        if key not in state:
            found = ", ".join(list(state)[:3])
            raise SchemaError(
                f"{source}: no {key!r}: not an efficientnet_pytorch EfficientNet state dict (first keys: {found})"
            )
    return int(state["_fc.weight"].shape[0]), int(state["_conv_stem.weight"].shape[1])


def convert_upstream_state_dict(
    state: dict[str, torch.Tensor], model: nn.Module, source: str = "state dict"
) -> OrderedDict[str, torch.Tensor]:
    """efficientnet_pytorch B0 weights (``module.`` prefix or not) renamed for :func:`build_upstream_model`'s model.

    Every upstream key must map and every key of ``model`` must be filled, with equal shapes; anything
    else is a :class:`~moa_core.errors.SchemaError` naming the key and ``source``.
    """
    state = strip_parallel_prefix(state)
    expands = {int(k.split(".")[1]) for k in state if k.startswith("_blocks.") and "._expand_conv." in k}
    key_map = _upstream_key_map(model, expands)
    unknown = [k for k in state if k not in key_map]
    if unknown:
        raise SchemaError(f"{source}: {len(unknown)} key(s) of no EfficientNet-B0, e.g. {unknown[:3]}")
    target = model.state_dict()
    out = OrderedDict()
    for k, v in state.items():
        name = key_map[k]
        if name not in target:
            raise SchemaError(f"{source}: {k!r} maps to {name!r}, which the network lacks (not a B0 checkpoint?)")
        if tuple(target[name].shape) != tuple(v.shape):
            raise SchemaError(
                f"{source}: {k!r} has shape {tuple(v.shape)}, the network's {name!r} {tuple(target[name].shape)}"
            )
        out[name] = v
    missing = [k for k in target if k not in out]
    if missing:
        raise SchemaError(f"{source}: {len(missing)} parameter(s) missing, e.g. {missing[:3]}")
    return out


def load_upstream_state_dict(state: dict[str, torch.Tensor], source: str = "state dict") -> nn.Module:
    """A :func:`build_upstream_model` network (shape read from the weights) with ``state`` loaded, in eval mode."""
    state = strip_parallel_prefix(state)
    num_classes, in_channels = upstream_shape(state, source)
    model = build_upstream_model(num_classes, in_channels)
    model.load_state_dict(convert_upstream_state_dict(state, model, source), strict=True)
    return model.eval()
