"""Training Pheno-CA networks on well-level profiles (Linsley et al., "Neural scaling laws
for phenotypic drug discovery").

Inputs are plain arrays: ``X`` float32 ``(n_wells, d)`` already preprocessed, integer
labels in ``0..n_classes-1``, optional integer nuisance labels per well. Nothing here
reads files.

Supervision
-----------
:func:`train_encoder` trains a :class:`~moa_core.phenoca.models.ResidualMLP` encoder plus
a head (linear, or the 3-layer :class:`~moa_core.phenoca.models.MLPHead`) with softmax
cross-entropy. Two uses, as in the paper:

- **IBP** (Inverse Biological Process) pretraining: ``y`` = molecule identity over every
  training compound, the out-of-distribution (OOD, non-Pheno-CA) ones included;
- **task-supervised** models: ``y`` = MoA or target of the Pheno-CA compounds.

:func:`fit_probe` then freezes an encoder and fits the paper's 3-layer MLP probe on its
representations (``encoder=None``: on the raw profiles, the "profiles" baseline), and
:func:`knn_scores` is a training-free cosine k-NN baseline.

Model selection (deviation from the paper)
------------------------------------------
The paper ends training "if test performance stopped improving for 15 epochs". Here
early stopping and the choice of the kept weights use the **validation split only**
(``FitConfig.select``: validation loss, default, or validation accuracy); none of these
functions takes test data. After training the weights of the best validation epoch are
restored.

Nuisance invariance (paper, Appendix C)
---------------------------------------
With ``nuisances`` (e.g. ``{"source": ..., "batch": ..., "well": ...}``, one integer
label per training well) :func:`train_encoder` adds one linear head per nuisance
(:class:`~moa_core.phenoca.models.NuisanceHeads`). Per step, with ``r = encoder(x)``::

    loss = CE(head(r), y)                                   task
         + sum_j CE(h_j(stopgrad(r)), n_j)                  nuisance heads (encoder untouched)
         + invariance_weight * sum_j KL(U_j || softmax(h_j'(r)))   encoder only

``h_j'`` is ``h_j`` with its weights detached and ``U_j`` the uniform distribution over
the ``K_j`` values of nuisance ``j``. ``KL(U || p) = CE(U, p) - log K_j``: the paper's
"cross entropy between the predicted well/batch/source and a uniform distribution",
shifted by the constant ``log K_j`` so that it is 0 at the optimum (same gradient). The
heads keep learning to predict the nuisance from the current representation while the
encoder is pushed to make them maximally uncertain (an adversarial game, as in
domain-adversarial training, but with the uniform-target loss instead of a gradient
reversal). ``invariance_weight=0`` keeps the heads as pure monitors (their validation
accuracy is recorded when ``val_nuisances`` is given) and leaves the encoder's training
exactly as without nuisances (the heads are drawn from a forked RNG, so even the
encoder's initial weights and dropout masks are the same). Caveat: the adversaries are
linear and see only the current representation, so the loss removes *linearly*
decodable nuisance information; a freshly trained nonlinear probe can still recover
part of it (measure invariance with a fresh probe on held-out wells, not with the
training heads alone). The paper also feeds the image's source into the model's
input; that is left to the caller (append a one-hot source to ``X``).

Deviations and defaults
-----------------------
The paper: AdamW, learning rate 1e-4, batch 6000, mixed precision (Accelerate), patience
15 (:meth:`FitConfig.paper`). The defaults here are for a 2-core CPU: batch 512 and
learning rate 1e-3 (10x the paper's, since small batches and short CPU budgets need
larger steps to converge in a few epochs), weight decay 1e-2 (AdamW's default; the paper
does not give one), patience 10, dropout 0.1 in the residual branches (the paper gives
none). bf16 autocast is used on CUDA only (``amp``; fused AdamW there); on CPU
everything is float32.

Data pipeline: the training arrays are moved to the device once; every epoch draws one
random permutation from a seeded ``torch.Generator`` and each step gathers its batch
with one ``index_select`` of a permutation slice (no DataLoader, no per-sample Python).
The last ``n % batch_size`` wells of each permutation are dropped (a different random
subset every epoch; avoids a tiny last batch for BatchNorm), unless ``n < batch_size``
(then one full-data batch per epoch). Losses are summed on the device and read once per
epoch (no per-step host synchronisation).

Determinism: ``torch.manual_seed(seed)`` before the weights are drawn (it also drives
dropout) and the permutation generator seeded with ``seed``: two runs with the same
seed, data and config give bit-identical weights and histories on CPU.

Records: every trained object keeps ``history`` (one dict per epoch: ``epoch``,
``train_loss`` (task cross-entropy), ``val_loss``, ``val_accuracy``, ``steps``,
``seconds``, and with nuisances ``train_nuisance_loss``, ``train_invariance_loss``,
``val_nuisance_accuracy``), ``best_epoch``, ``seconds`` (wall time of the call),
``train_seconds`` (optimisation steps only), ``param_count`` and ``wells_per_second``
(training wells processed per second of optimisation steps).
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from moa_core.errors import MoaInputError
from moa_core.phenoca.models import Classifier, MLPHead, NuisanceHeads, ResidualMLP, param_count

__all__ = ["FitConfig", "Probe", "TrainedModel", "embed", "fit_probe", "knn_scores", "train_encoder"]


@dataclass
class FitConfig:
    """Optimisation settings shared by :func:`train_encoder` and :func:`fit_probe`.

    ``select``: ``"val_loss"`` (lower is better) or ``"val_accuracy"`` decides the best
    epoch and early stopping (``patience`` epochs without improvement). ``max_steps`` and
    ``max_minutes`` (wall time of the call) cap the run; whichever limit comes first ends
    it, after a final validation of the partial epoch. ``device``: ``"auto"`` (CUDA if
    available) or a torch device string. ``num_threads``: torch intra-op threads during
    the call (restored afterwards). ``amp``: bf16 autocast, CUDA only.
    """

    epochs: int = 50
    batch_size: int = 512  # paper: 6000 on a 24 GB GPU
    lr: float = 1e-3  # paper: 1e-4 (with batch 6000 and hours of GPU training)
    weight_decay: float = 1e-2
    patience: int = 10  # paper: 15
    select: str = "val_loss"
    max_steps: int | None = None
    max_minutes: float | None = None
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = None
    amp: bool = True
    eval_batch_size: int = 8192

    def __post_init__(self) -> None:
        if self.select not in ("val_loss", "val_accuracy"):
            raise ValueError(f"FitConfig.select must be 'val_loss' or 'val_accuracy', got {self.select!r}")
        if self.epochs < 1 or self.batch_size < 2 or self.patience < 1 or self.eval_batch_size < 1:
            raise ValueError("FitConfig needs epochs >= 1, batch_size >= 2, patience >= 1, eval_batch_size >= 1")

    @classmethod
    def paper(cls, **overrides: Any) -> FitConfig:
        """The paper's settings: AdamW lr 1e-4, batch 6000, mixed precision, patience 15
        (epochs are not given; training took up to 16 GPU-hours: capped at 500 here)."""
        return cls(**{"epochs": 500, "batch_size": 6000, "lr": 1e-4, "patience": 15, "amp": True, **overrides})

    def resolved_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- helpers


def _autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when ``amp``; a no-op on CPU."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    if not n:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _features(X: Any, name: str, d: int | None = None) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or len(X) == 0:
        raise MoaInputError(f"{name} must be a non-empty 2-D array (n_wells, n_features), got shape {X.shape}")
    if d is not None and X.shape[1] != d:
        raise MoaInputError(f"{name} has {X.shape[1]} features, expected {d}")
    if not np.isfinite(X).all():
        bad = np.argwhere(~np.isfinite(X))[0]
        raise MoaInputError(f"{name} has a non-finite value (row {bad[0]}, column {bad[1]})")
    return X


def _labels(y: Any, n: int, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise MoaInputError(f"{name} must be 1-D with {n} entries (one per well), got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if not (np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y))):
            raise MoaInputError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if (y < 0).any():
        raise MoaInputError(f"{name} has negative class indices (labels must be 0..n_classes-1)")
    return y


def _module_device(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return torch.device("cpu")


def _as_encoder(obj: Any) -> nn.Module | None:
    if obj is None:
        return None
    if isinstance(obj, TrainedModel):
        return obj.encoder
    if isinstance(obj, Probe):
        return obj.encoder
    if isinstance(obj, Classifier):
        return obj.encoder
    if isinstance(obj, nn.Module):
        return obj
    raise TypeError(
        f"expected an encoder module, a Classifier, a TrainedModel, a Probe or None; got {type(obj).__name__}"
    )


def _batched(module: nn.Module, X: torch.Tensor, batch_size: int, device: torch.device, amp: bool) -> torch.Tensor:
    """``module(X)`` in eval mode / inference mode, batched, float32 on ``device``."""
    was_training = module.training
    module.eval()
    try:
        out = []
        with torch.inference_mode(), _autocast(device, amp):
            for i in range(0, len(X), batch_size):
                out.append(module(X[i : i + batch_size].to(device, non_blocking=True)).float())
        return torch.cat(out)
    finally:
        module.train(was_training)


def _evaluate(logits: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    loss = F.cross_entropy(logits, y).item()
    acc = (logits.argmax(1) == y).float().mean().item()
    return loss, acc


@dataclass
class _LoopResult:
    history: list[dict[str, Any]]
    best_epoch: int
    best_val_loss: float
    best_val_accuracy: float
    train_seconds: float
    wells_seen: int
    stopped: str


def _fit_loop(
    trained: nn.Module,
    step_loss: Callable[
        [torch.Tensor, torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, dict[str, torch.Tensor]]
    ],
    evaluate: Callable[[], dict[str, Any]],
    X: torch.Tensor,
    y: torch.Tensor,
    N: torch.Tensor | None,
    config: FitConfig,
    device: torch.device,
    t_start: float,
) -> _LoopResult:
    """The shared epoch loop: AdamW over ``trained``'s parameters, permutation batches,
    validation per epoch, early stopping and restoration of the best weights."""
    params = [p for p in trained.parameters() if p.requires_grad]
    # fused AdamW on CUDA (one kernel for all parameters); the default per-tensor loop on CPU
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=device.type == "cuda")
    gen = torch.Generator().manual_seed(config.seed)
    n = len(X)
    bs = min(config.batch_size, n)
    steps_per_epoch = n // bs
    higher_better = config.select == "val_accuracy"

    history: list[dict[str, Any]] = []
    best_score, best_epoch, best_state = -math.inf, -1, None
    best_loss, best_acc = math.nan, math.nan
    since_best, total_steps, wells_seen, train_seconds = 0, 0, 0, 0.0
    stopped = "epochs"
    for epoch in range(config.epochs):
        trained.train()
        t_ep = time.perf_counter()
        perm = torch.randperm(n, generator=gen).to(device, non_blocking=True)
        loss_sum = torch.zeros((), device=device)
        extra_sum: dict[str, torch.Tensor] = {}
        steps = 0
        limit = None
        for s in range(steps_per_epoch):
            idx = perm[s * bs : (s + 1) * bs]
            xb, yb = X.index_select(0, idx), y.index_select(0, idx)
            nb = N.index_select(0, idx) if N is not None else None
            with _autocast(device, config.amp):
                loss, parts = step_loss(xb, yb, nb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += parts["task"]
            for k, v in parts.items():
                if k != "task":
                    extra_sum[k] = extra_sum.get(k, 0.0) + v
            steps += 1
            total_steps += 1
            if config.max_steps is not None and total_steps >= config.max_steps:
                limit = "max_steps"
            elif config.max_minutes is not None and time.perf_counter() - t_start >= 60.0 * config.max_minutes:
                limit = "max_minutes"
            if limit:
                break
        _sync(device)
        train_seconds += time.perf_counter() - t_ep
        wells_seen += steps * bs
        rec: dict[str, Any] = {"epoch": epoch, "steps": steps, "train_loss": loss_sum.item() / max(steps, 1)}
        for k, v in extra_sum.items():
            rec[f"train_{k}_loss"] = float(v) / steps
        rec.update(evaluate())
        rec["seconds"] = time.perf_counter() - t_ep
        history.append(rec)
        score = rec["val_accuracy"] if higher_better else -rec["val_loss"]
        if score > best_score:
            best_score, best_epoch, since_best = score, epoch, 0
            best_loss, best_acc = rec["val_loss"], rec["val_accuracy"]
            best_state = copy.deepcopy(trained.state_dict())
        else:
            since_best += 1
        if limit:
            stopped = limit
            break
        if since_best >= config.patience:
            stopped = "patience"
            break
    if best_state is not None:
        trained.load_state_dict(best_state)
    trained.eval()
    return _LoopResult(history, best_epoch, best_loss, best_acc, train_seconds, wells_seen, stopped)


# --------------------------------------------------------------------------- encoder training


@dataclass
class TrainedModel:
    """An encoder + head trained by :func:`train_encoder` (best validation epoch restored).

    ``param_count``: encoder + head (nuisance heads excluded); ``encoder_param_count``:
    the encoder alone (the "model size" of the scaling study).
    """

    model: Classifier
    nuisance_heads: NuisanceHeads | None
    n_classes: int
    width: int
    depth: int
    invariance_weight: float
    config: FitConfig
    history: list[dict[str, Any]]
    best_epoch: int
    best_val_loss: float
    best_val_accuracy: float
    stopped: str
    seconds: float
    train_seconds: float
    wells_per_second: float
    param_count: int
    encoder_param_count: int
    nuisance_classes: dict[str, int] = field(default_factory=dict)

    @property
    def encoder(self) -> ResidualMLP:
        return self.model.encoder  # type: ignore[return-value]

    def embed(self, X: Any, batch_size: int = 8192) -> np.ndarray:
        return embed(self, X, batch_size)

    def true_class_scores(self, X: Any, y: Any, batch_size: int = 8192) -> tuple[np.ndarray, np.ndarray]:
        """Per row: the softmax probability of its true class ``y`` and that class's 1-based rank (ties by
        class index), computed in blocks of rows (never the ``(n, n_classes)`` matrix at once); the same
        numbers as :meth:`predict_proba` followed by :func:`moa_core.phenoca.tasks.true_class_rank`."""
        X = _features(X, "X", self.encoder.in_dim)
        y = np.asarray(y, dtype=np.int64)
        rows = max(1, min(batch_size, (1 << 26) // max(self.n_classes, 1)))
        pt, rank = np.empty(len(y)), np.empty(len(y), np.int64)
        for i in range(0, len(y), rows):
            p = self.predict_proba(X[i : i + rows], batch_size=rows).astype(np.float64)
            yy = y[i : i + rows]
            st = p[np.arange(len(yy)), yy][:, None]
            idx = np.arange(p.shape[1])[None, :]
            pt[i : i + rows] = st[:, 0]
            rank[i : i + rows] = 1 + (p > st).sum(axis=1) + ((p == st) & (idx < yy[:, None])).sum(axis=1)
        return pt, rank

    def predict_proba(self, X: Any, batch_size: int = 8192) -> np.ndarray:
        """Softmax class probabilities of the encoder + head, ``(n, n_classes)``."""
        X = _features(X, "X", self.encoder.in_dim)
        dev = _module_device(self.model)
        logits = _batched(self.model, torch.from_numpy(X), batch_size, dev, self.config.amp)
        return torch.softmax(logits, 1).cpu().numpy()


def _final_linear(head: nn.Module) -> nn.Linear:
    """The last ``nn.Linear`` of a head (the class scores)."""
    lin = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if not lin:
        raise ValueError("the head has no linear layer")
    return lin[-1]


def _head_hidden(head: nn.Module, rep: torch.Tensor) -> torch.Tensor:
    """The head's input to its last linear layer (``rep`` itself for a linear head)."""
    mods = list(head.net) if hasattr(head, "net") else [head]
    out = rep
    for m in mods[:-1]:
        out = m(out)
    return out


def train_encoder(
    X_train: Any,
    y_train: Any,
    X_val: Any,
    y_val: Any,
    *,
    width: int,
    depth: int,
    config: FitConfig | None = None,
    nuisances: Mapping[str, Any] | None = None,
    invariance_weight: float = 0.0,
    val_nuisances: Mapping[str, Any] | None = None,
    n_classes: int | None = None,
    head_layers: int = 1,
    head_hidden: int = 256,
    dropout: float = 0.1,
    sampled_classes: int | None = None,
    val_limit: int | None = None,
) -> TrainedModel:
    """Train ``ResidualMLP(d, width, depth)`` + a head with cross-entropy on ``y_train``.

    IBP: ``y`` = molecule index over all training compounds (OOD ones included), the
    validation wells being other replicates of the same molecules; task supervision:
    ``y`` = MoA / target index. ``head_layers=1``: linear head (default); 3: the
    paper's 3-layer MLP. ``n_classes`` defaults to ``max(y_train, y_val) + 1``.

    ``nuisances``: name -> integer label per training well; ``invariance_weight > 0``
    adds the uniform-target adversarial loss described in the module docstring.
    ``val_nuisances`` (same names, per validation well) only adds the heads' validation
    accuracy to the history. There is deliberately no test argument: early stopping and
    the kept weights use the validation split alone.

    ``sampled_classes`` (IBP over ~100,000 molecules on a CPU): each step's softmax runs over
    the batch's own classes and ``sampled_classes`` other classes drawn uniformly without
    replacement, with the log-Q correction (Jean et al. 2015: a drawn class's logit minus
    ``log(K_drawn / K_absent)``; the batch's classes are always in), so the gradient is that of
    the full softmax in expectation at a fraction of the cost (the paper trains the full softmax
    on GPUs). Validation always uses the full softmax, on a seeded subset of ``val_limit`` wells
    when given.
    """
    config = config or FitConfig()
    t_start = time.perf_counter()
    Xtr = _features(X_train, "X_train")
    d = Xtr.shape[1]
    Xva = _features(X_val, "X_val", d)
    ytr, yva = _labels(y_train, len(Xtr), "y_train"), _labels(y_val, len(Xva), "y_val")
    if len(Xtr) < 2:
        raise MoaInputError("train_encoder needs at least 2 training wells (BatchNorm)")
    k = int(n_classes) if n_classes is not None else int(max(ytr.max(), yva.max())) + 1
    if max(ytr.max(), yva.max()) >= k:
        raise MoaInputError(f"labels must be < n_classes={k}")
    if invariance_weight < 0:
        raise ValueError(f"invariance_weight must be >= 0, got {invariance_weight}")
    if sampled_classes is not None and (sampled_classes < 1 or invariance_weight > 0):
        raise ValueError("sampled_classes must be >= 1 and cannot be combined with invariance_weight")
    if val_limit is not None and len(Xva) > val_limit:
        keep = np.sort(np.random.default_rng([config.seed, 5]).choice(len(Xva), val_limit, replace=False))
        Xva, yva = Xva[keep], yva[keep]
        if val_nuisances is not None:
            val_nuisances = {n: np.asarray(v)[keep] for n, v in val_nuisances.items()}

    names: list[str] = list(nuisances) if nuisances else []
    ntr_cols, nva_cols, nuis_k = [], [], {}
    for name in names:
        a = _labels(nuisances[name], len(Xtr), f"nuisances[{name!r}]")  # type: ignore[index]
        b = None
        if val_nuisances is not None and name in val_nuisances:
            b = _labels(val_nuisances[name], len(Xva), f"val_nuisances[{name!r}]")
        nuis_k[name] = int(max(a.max(), b.max() if b is not None else 0)) + 1
        ntr_cols.append(a)
        nva_cols.append(b)
    if invariance_weight > 0 and not names:
        raise ValueError("invariance_weight > 0 needs nuisances")

    device = config.resolved_device()
    with _threads(config.num_threads):
        torch.manual_seed(config.seed)
        encoder = ResidualMLP(d, width, depth, dropout)
        head: nn.Module = MLPHead(width, k, hidden=head_hidden, layers=head_layers, dropout=dropout)
        model = Classifier(encoder, head).to(device)
        nheads = None
        if names:  # drawn from a forked RNG: the encoder's init and dropout masks stay as without nuisances
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed + 1)
                nheads = NuisanceHeads(width, nuis_k).to(device)
        trained = nn.ModuleDict({"model": model, **({"nuisance": nheads} if nheads is not None else {})})

        X = torch.from_numpy(Xtr).to(device)
        y = torch.from_numpy(ytr).to(device)
        N = torch.from_numpy(np.stack(ntr_cols, 1)).to(device) if names else None
        Xv = torch.from_numpy(Xva).to(device)
        yv = torch.from_numpy(yva).to(device)
        log_k = {name: math.log(nuis_k[name]) for name in names}
        w = float(invariance_weight)

        sample_gen = torch.Generator(device="cpu").manual_seed(config.seed + 2)
        final = _final_linear(head)

        def sampled_ce(rep: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            h = _head_hidden(head, rep)
            pos = torch.unique(yb)
            absent = k - len(pos)
            n_draw = min(int(sampled_classes), absent)  # type: ignore[arg-type]
            mask = torch.ones(k, dtype=torch.bool, device=yb.device)
            mask[pos] = False
            pool = torch.nonzero(mask).squeeze(1)
            draw = pool[torch.randperm(len(pool), generator=sample_gen)[:n_draw].to(pool.device)]
            cls = torch.cat([pos, draw])
            logits = h @ final.weight[cls].T + final.bias[cls]
            if n_draw:  # log-Q: a drawn class stands for absent / n_draw classes
                corr = torch.zeros(len(cls), device=logits.device, dtype=logits.dtype)
                corr[len(pos) :] = math.log(absent / n_draw)
                logits = logits + corr
            target = torch.searchsorted(pos, yb)
            return F.cross_entropy(logits.float(), target)

        def step_loss(xb: torch.Tensor, yb: torch.Tensor, nb: torch.Tensor | None):
            if sampled_classes is not None:
                task = sampled_ce(encoder(xb), yb)
                return task, {"task": task.detach()}
            rep, logits = model.forward_features(xb)
            task = F.cross_entropy(logits, yb)
            if nheads is None:
                return task, {"task": task.detach()}
            det = nheads(rep.detach())
            nuis = sum(F.cross_entropy(det[nm], nb[:, j]) for j, nm in enumerate(names))  # type: ignore[index]
            loss = task + nuis
            parts = {"task": task.detach(), "nuisance": nuis.detach()}
            if w > 0:
                adv = nheads(rep, detach_params=True)
                inv = sum(-F.log_softmax(adv[nm].float(), 1).mean(1).mean() - log_k[nm] for nm in names)
                loss = loss + w * inv
                parts["invariance"] = inv.detach()
            return loss, parts

        # rows per evaluation block: <= 2^26 logits at once (256 MB), whatever the number of classes
        eval_rows = max(1, min(config.eval_batch_size, (1 << 26) // max(k, 1)))

        def evaluate() -> dict[str, Any]:
            rep = _batched(encoder, Xv, config.eval_batch_size, device, config.amp)
            with torch.inference_mode():
                was = head.training
                head.eval()
                n_loss, n_ok = 0.0, 0
                for i in range(0, len(rep), eval_rows):
                    lg = head(rep[i : i + eval_rows]).float()
                    yy = yv[i : i + eval_rows]
                    n_loss += float(F.cross_entropy(lg, yy, reduction="sum"))
                    n_ok += int((lg.argmax(1) == yy).sum())
                head.train(was)
                loss, acc = n_loss / max(len(rep), 1), n_ok / max(len(rep), 1)
                rec: dict[str, Any] = {"val_loss": loss, "val_accuracy": acc}
                if nheads is not None and any(b is not None for b in nva_cols):
                    out = nheads(rep)
                    rec["val_nuisance_accuracy"] = {
                        nm: (out[nm].argmax(1).cpu().numpy() == nva_cols[j]).mean().item()
                        for j, nm in enumerate(names)
                        if nva_cols[j] is not None
                    }
            return rec

        res = _fit_loop(trained, step_loss, evaluate, X, y, N, config, device, t_start)
    return TrainedModel(
        model=model,
        nuisance_heads=nheads,
        n_classes=k,
        width=width,
        depth=depth,
        invariance_weight=w,
        config=config,
        history=res.history,
        best_epoch=res.best_epoch,
        best_val_loss=res.best_val_loss,
        best_val_accuracy=res.best_val_accuracy,
        stopped=res.stopped,
        seconds=time.perf_counter() - t_start,
        train_seconds=res.train_seconds,
        wells_per_second=res.wells_seen / res.train_seconds if res.train_seconds > 0 else math.nan,
        param_count=param_count(model),
        encoder_param_count=param_count(encoder),
        nuisance_classes=nuis_k,
    )


# --------------------------------------------------------------------------- embedding


def embed(model_or_encoder: Any, X: Any, batch_size: int = 8192) -> np.ndarray:
    """Representations ``(n, width)`` float32 of ``X``: the encoder of a :class:`TrainedModel`,
    :class:`Probe` or :class:`~moa_core.phenoca.models.Classifier`, or an encoder module
    itself; ``None`` is the identity (returns ``X`` as float32, the "profiles" baseline).

    Eval mode (BatchNorm running statistics, no dropout; the module's mode is restored
    afterwards and its buffers are not modified), inference mode, bf16 autocast on CUDA,
    on the module's own device.
    """
    enc = _as_encoder(model_or_encoder)
    if enc is None:
        return _features(X, "X").copy()
    Xn = _features(X, "X", getattr(enc, "in_dim", None))
    dev = _module_device(enc)
    return _batched(enc, torch.from_numpy(Xn), batch_size, dev, True).cpu().numpy()


# --------------------------------------------------------------------------- probes


@dataclass
class Probe:
    """A 3-layer MLP probe on a frozen encoder's representations (or on raw profiles)."""

    head: MLPHead
    encoder: nn.Module | None
    n_classes: int
    config: FitConfig
    history: list[dict[str, Any]]
    best_epoch: int
    best_val_loss: float
    best_val_accuracy: float
    stopped: str
    seconds: float
    train_seconds: float
    wells_per_second: float
    param_count: int

    def predict_proba_reps(self, reps: Any, batch_size: int = 8192) -> np.ndarray:
        """Probabilities from precomputed representations ``(n, in_dim)``."""
        R = _features(reps, "reps", self.head.in_dim)
        dev = _module_device(self.head)
        logits = _batched(self.head, torch.from_numpy(R), batch_size, dev, self.config.amp)
        return torch.softmax(logits, 1).cpu().numpy()

    def predict_proba(self, X: Any, batch_size: int = 8192) -> np.ndarray:
        """Softmax class probabilities ``(n, n_classes)`` of profiles ``X`` (through the frozen encoder)."""
        return self.predict_proba_reps(embed(self.encoder, X, batch_size), batch_size)


def fit_probe(
    encoder: Any,
    X_train: Any,
    y_train: Any,
    X_val: Any,
    y_val: Any,
    config: FitConfig | None = None,
    *,
    n_classes: int | None = None,
    hidden: int = 256,
    layers: int = 3,
    dropout: float = 0.1,
) -> Probe:
    """Freeze ``encoder`` and fit the paper's 3-layer :class:`MLPHead` probe on it.

    The encoder (an encoder module, :class:`Classifier`, :class:`TrainedModel`, or
    ``None`` for raw profiles) is frozen in place: every parameter gets
    ``requires_grad=False`` and the module is put (and left) in eval mode, so neither
    its weights nor its BatchNorm running statistics change. Its representations of the
    training and validation wells are computed once; the probe is then trained on them
    with early stopping on the validation split (no test argument).
    """
    config = config or FitConfig()
    t_start = time.perf_counter()
    enc = _as_encoder(encoder)
    if enc is not None:
        for p in enc.parameters():
            p.requires_grad_(False)
        enc.eval()
    Xtr = _features(X_train, "X_train")
    Xva = _features(X_val, "X_val", Xtr.shape[1])
    ytr, yva = _labels(y_train, len(Xtr), "y_train"), _labels(y_val, len(Xva), "y_val")
    if len(Xtr) < 2:
        raise MoaInputError("fit_probe needs at least 2 training wells (BatchNorm)")
    k = int(n_classes) if n_classes is not None else int(max(ytr.max(), yva.max())) + 1
    if max(ytr.max(), yva.max()) >= k:
        raise MoaInputError(f"labels must be < n_classes={k}")
    device = config.resolved_device()
    with _threads(config.num_threads):
        Rtr = torch.from_numpy(embed(enc, Xtr, config.eval_batch_size)).to(device)
        Rva = torch.from_numpy(embed(enc, Xva, config.eval_batch_size)).to(device)
        y = torch.from_numpy(ytr).to(device)
        yv = torch.from_numpy(yva).to(device)
        torch.manual_seed(config.seed)
        head = MLPHead(Rtr.shape[1], k, hidden=hidden, layers=layers, dropout=dropout).to(device)

        def step_loss(xb: torch.Tensor, yb: torch.Tensor, nb: torch.Tensor | None):
            task = F.cross_entropy(head(xb), yb)
            return task, {"task": task.detach()}

        def evaluate() -> dict[str, Any]:
            loss, acc = _evaluate(_batched(head, Rva, config.eval_batch_size, device, config.amp), yv)
            return {"val_loss": loss, "val_accuracy": acc}

        res = _fit_loop(head, step_loss, evaluate, Rtr, y, None, config, device, t_start)
    return Probe(
        head=head,
        encoder=enc,
        n_classes=k,
        config=config,
        history=res.history,
        best_epoch=res.best_epoch,
        best_val_loss=res.best_val_loss,
        best_val_accuracy=res.best_val_accuracy,
        stopped=res.stopped,
        seconds=time.perf_counter() - t_start,
        train_seconds=res.train_seconds,
        wells_per_second=res.wells_seen / res.train_seconds if res.train_seconds > 0 else math.nan,
        param_count=param_count(head),
    )


# --------------------------------------------------------------------------- k-NN baseline


def knn_scores(
    train_reps: Any,
    train_labels: Any,
    test_reps: Any,
    k: int = 10,
    classes: Any = None,
    *,
    weighted: bool = False,
    batch_size: int = 4096,
) -> np.ndarray:
    """Cosine k-nearest-neighbour class scores, ``(n_test, n_classes)``.

    For each test vector, its ``k`` training vectors of highest cosine similarity
    (``k`` capped at ``n_train``); the score of class ``c`` is the fraction of those ``k``
    neighbours labelled ``c`` (rows sum to 1), or with ``weighted=True`` the sum of their
    cosine similarities divided by ``k``. Columns follow ``classes`` (default: the sorted
    unique training labels); training labels outside ``classes`` are an error. Zero
    vectors have similarity 0 to everything. No training involved (a baseline).
    """
    A = np.asarray(train_reps, dtype=np.float32)
    B = np.asarray(test_reps, dtype=np.float32)
    lab = np.asarray(train_labels)
    if A.ndim != 2 or B.ndim != 2 or A.shape[1] != B.shape[1] or len(lab) != len(A) or len(A) == 0:
        raise MoaInputError(
            f"knn_scores needs train (n, d), labels (n,), test (m, d); got {A.shape}, {lab.shape}, {B.shape}"
        )
    classes = np.unique(lab) if classes is None else np.asarray(classes)
    order = np.argsort(classes, kind="stable")
    pos = np.searchsorted(classes[order], lab)
    pos = np.clip(pos, 0, len(classes) - 1)
    code = order[pos]
    if not np.array_equal(classes[code], lab):
        raise MoaInputError("train_labels has labels not in classes")
    k = int(min(max(k, 1), len(A)))
    A = A / np.maximum(np.linalg.norm(A, axis=1, keepdims=True), 1e-12)
    B = B / np.maximum(np.linalg.norm(B, axis=1, keepdims=True), 1e-12)
    out = np.zeros((len(B), len(classes)), dtype=np.float64)
    for i in range(0, len(B), batch_size):
        S = B[i : i + batch_size] @ A.T
        if k < len(A):
            nn_idx = np.argpartition(-S, k - 1, axis=1)[:, :k]
        else:
            nn_idx = np.broadcast_to(np.arange(len(A)), S.shape)
        rows = np.repeat(np.arange(len(S)), k)
        w = np.take_along_axis(S, nn_idx, 1).ravel().astype(np.float64) if weighted else np.ones(rows.size)
        np.add.at(out[i : i + batch_size], (rows, code[nn_idx].ravel()), w)
    return out / k
