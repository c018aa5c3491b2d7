"""Pheno-CA networks (Linsley et al., "Neural scaling laws for phenotypic drug discovery").

Definitions
-----------
*Residual block* (paper, "Model zoo"): ``block(x) = x + Dropout(GELU(BatchNorm1d(Linear(x))))``
on a ``width``-d vector. The paper states Linear -> BatchNorm1d -> GELU with a residual
connection; the dropout on the residual branch is ours (``dropout=0`` recovers the
paper's block exactly). The Linear keeps its bias as in PyTorch's default (it is
cancelled by the BatchNorm that follows; kept for fidelity, it costs ``width`` params).

*Encoder* :class:`ResidualMLP`: an input projection ``Linear(in_dim, width)`` then
``depth`` residual blocks; its output (``width``-d) is the representation that probes
read. The paper's zoo: depth in {1, 3, 6, 9, 12}, width in {128, 256, 512, 1512}. The
paper does not say how the profile is brought to ``width``; a plain linear projection
(no norm or activation, so the residual stream starts as a linear map of the profile)
is our choice.

*Probe / head* :class:`MLPHead`: the paper's task-specific "3-layer MLP" readout:
``layers - 1`` hidden layers ``Linear -> BatchNorm1d -> GELU -> Dropout`` of ``hidden``
units then a ``Linear`` to ``n_out`` logits; ``layers=1`` is a linear head. Hidden
width, the BatchNorm and the dropout are not given in the paper (ours).

*Nuisance heads* :class:`NuisanceHeads`: one linear classifier per nuisance (source,
batch, plate, well...) on the representation, used adversarially by
:func:`moa_core.phenoca.train.train_encoder` (Appendix C: make the encoder as
inaccurate as possible at predicting well, batch or source). :meth:`NuisanceHeads.forward`
with ``detach_params=True`` evaluates the heads with their weights detached, so the
invariance loss moves only the encoder while the heads themselves are trained (on the
detached representation) to stay the best possible nuisance predictors.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Classifier", "MLPHead", "NuisanceHeads", "ResidualBlock", "ResidualMLP", "param_count"]


def param_count(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``module`` (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


class ResidualBlock(nn.Module):
    """``x + branch(x)``, ``branch = Sequential(Linear, BatchNorm1d, GELU, Dropout)`` (width -> width)."""

    def __init__(self, width: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.branch = nn.Sequential(nn.Linear(width, width), nn.BatchNorm1d(width), nn.GELU(), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


class ResidualMLP(nn.Module):
    """Residual MLP encoder: ``Linear(in_dim, width)`` then ``depth`` :class:`ResidualBlock`.

    ``forward(x)`` returns the ``width``-d representation (no classifier). ``depth=0`` is
    allowed (the projection alone).
    """

    def __init__(self, in_dim: int, width: int, depth: int, dropout: float = 0.1) -> None:
        super().__init__()
        if in_dim < 1 or width < 1 or depth < 0:
            raise ValueError(f"ResidualMLP needs in_dim >= 1, width >= 1, depth >= 0; got {in_dim, width, depth}")
        self.in_dim, self.width, self.depth, self.dropout = in_dim, width, depth, dropout
        self.input = nn.Linear(in_dim, width)
        self.blocks = nn.Sequential(*(ResidualBlock(width, dropout) for _ in range(depth)))

    @property
    def out_dim(self) -> int:
        return self.width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.input(x))

    def param_count(self, trainable_only: bool = False) -> int:
        return param_count(self, trainable_only)


class MLPHead(nn.Module):
    """``layers``-layer MLP readout (paper: 3 layers); ``layers=1`` is a linear classifier."""

    def __init__(self, in_dim: int, n_out: int, hidden: int = 256, layers: int = 3, dropout: float = 0.1) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"MLPHead needs layers >= 1, got {layers}")
        self.in_dim, self.n_out, self.hidden, self.layers = in_dim, n_out, hidden, layers
        mods: list[nn.Module] = []
        d = in_dim
        for _ in range(layers - 1):
            mods += [nn.Linear(d, hidden), nn.BatchNorm1d(hidden), nn.GELU(), nn.Dropout(dropout)]
            d = hidden
        mods.append(nn.Linear(d, n_out))
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def param_count(self, trainable_only: bool = False) -> int:
        return param_count(self, trainable_only)


class Classifier(nn.Module):
    """``head(encoder(x))``; :meth:`forward_features` also returns the representation."""

    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rep = self.encoder(x)
        return rep, self.head(rep)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))

    def param_count(self, trainable_only: bool = False) -> int:
        return param_count(self, trainable_only)


class NuisanceHeads(nn.Module):
    """One ``Linear(in_dim, n_classes)`` per nuisance, keyed by name (``{"source": 3, "batch": 12}``)."""

    def __init__(self, in_dim: int, n_classes: Mapping[str, int]) -> None:
        super().__init__()
        if not n_classes:
            raise ValueError("NuisanceHeads needs at least one nuisance")
        self.heads = nn.ModuleDict({name: nn.Linear(in_dim, int(k)) for name, k in n_classes.items()})

    @property
    def names(self) -> list[str]:
        return list(self.heads.keys())

    def forward(self, rep: torch.Tensor, detach_params: bool = False) -> dict[str, torch.Tensor]:
        """Logits per nuisance. ``detach_params``: the heads' weights are treated as constants
        (gradients flow to ``rep`` only), as the adversarial invariance loss needs."""
        if not detach_params:
            return {name: head(rep) for name, head in self.heads.items()}
        return {name: F.linear(rep, head.weight.detach(), head.bias.detach()) for name, head in self.heads.items()}
