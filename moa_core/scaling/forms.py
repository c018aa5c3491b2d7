"""The scaling-law forms: formula, parameters, ``predict`` and ``inverse``.

Every form describes a metric that grows with data size ``N`` (higher is better; negate a loss
before fitting). Public methods work on *natural* parameters (the ones in the formulas below,
in units of ``N``):

- ``predict(params, n)`` - the metric at sizes ``n``;
- ``inverse(params, target)`` - the smallest ``N`` at which the metric reaches ``target``
  (``0.0`` when every ``N > 0`` already does, ``inf`` when it is never reached);
- ``asymptote(params)`` - the metric as ``N -> inf`` (NaN for forms without one).

``params`` is a mapping ``{name: value}`` or an array whose last axis follows
``param_names``; a 2-D array ``(B, P)`` gives ``B`` curves at once (used for bootstrap bands).

Internally the optimizer works on unconstrained *raw* parameters ``theta`` centred on a
reference size ``n_ref`` (the geometric mean of the observed sizes) so that the problem is well
conditioned: positivity is enforced through ``exp``, the M4 asymptote through a logistic
transform, and amplitudes are expressed at ``N = n_ref``. :meth:`LawForm.to_natural` maps raw to
natural parameters; :meth:`LawForm.starts` gives the data-driven grid of starting points.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]

_LN10 = math.log(10.0)
_LN2 = math.log(2.0)


@dataclass(frozen=True)
class FitSpace:
    """The data-dependent frame of the raw parameterization.

    ``n_ref``: reference size (geometric mean of the distinct sizes); ``n_min``/``n_max``: the
    observed size range; ``bounded``: metric in [0, 1] (asymptotes are parameterized as
    ``1 - exp(t)``); ``y_ref``/``y_scale``: centre and spread of the metric (used for unbounded
    metrics, whose asymptote is ``y_ref + y_scale * t``).
    """

    n_ref: float
    n_min: float
    n_max: float
    bounded: bool = True
    y_ref: float = 0.0
    y_scale: float = 1.0


@dataclass(frozen=True)
class StartData:
    """What the starting-point grids look at: the distinct sizes and the per-size mean metric."""

    sizes: FloatArray
    means: FloatArray
    space: FitSpace


def _as_2d(x: FloatArray) -> FloatArray:
    return x[None, :] if x.ndim == 1 else x


class LawForm(ABC):
    """One scaling-law form (see the module docstring for the conventions)."""

    name: ClassVar[str]
    param_names: ClassVar[tuple[str, ...]]
    has_asymptote: ClassVar[bool]
    bounded_only: ClassVar[bool] = False

    # ------------------------------------------------------------------ public, natural params
    @property
    def n_params(self) -> int:
        return len(self.param_names)

    @property
    def fixed(self) -> dict[str, float]:
        """Constants of the form that are not fitted (reported alongside the parameters)."""
        return {}

    @property
    def min_sizes(self) -> int:
        """Distinct data sizes needed to fit the form: ``max(3, number of parameters)``."""
        return max(3, self.n_params)

    def param_array(self, params: Mapping[str, float] | ArrayLike) -> FloatArray:
        """Parameters as a float array (last axis in ``param_names`` order)."""
        if isinstance(params, Mapping):
            missing = [p for p in self.param_names if p not in params]
            if missing:
                raise KeyError(f"{self.name}: missing parameters {missing}")
            return np.array([float(params[p]) for p in self.param_names], dtype=np.float64)
        arr = np.asarray(params, dtype=np.float64)
        if arr.ndim not in (1, 2) or arr.shape[-1] != self.n_params:
            raise ValueError(f"{self.name}: parameters must have last axis {self.n_params}, got {arr.shape}")
        return arr

    def predict(self, params: Mapping[str, float] | ArrayLike, n: ArrayLike) -> FloatArray:
        """Metric at sizes ``n``: shape ``n.shape`` for one parameter set, ``(B, len(n))`` for ``B``."""
        p = self.param_array(params)
        nn = np.atleast_1d(np.asarray(n, dtype=np.float64))
        out = self._predict(_as_2d(p), np.log(nn))
        return out[0].reshape(np.shape(n)) if p.ndim == 1 else out

    def inverse(self, params: Mapping[str, float] | ArrayLike, target: float) -> float | FloatArray:
        """Smallest ``N`` with metric >= ``target``; ``inf`` when unreachable, ``0.0`` when always met."""
        p = self.param_array(params)
        with np.errstate(all="ignore"):
            out = self._inverse(_as_2d(p), float(target))
        return float(out[0]) if p.ndim == 1 else out

    def asymptote(self, params: Mapping[str, float] | ArrayLike) -> float | FloatArray:
        """Metric as ``N -> inf`` (NaN when the form has no asymptote)."""
        p = self.param_array(params)
        out = self._asymptote(_as_2d(p))
        return float(out[0]) if p.ndim == 1 else out

    def increasing(self, params: Mapping[str, float] | ArrayLike) -> bool | NDArray[np.bool_]:
        """Whether the curve increases with ``N`` (always true for the asymptotic forms)."""
        p = self.param_array(params)
        out = self._increasing(_as_2d(p))
        return bool(out[0]) if p.ndim == 1 else out

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v:g}" for k, v in self.fixed.items())
        return f"{type(self).__name__}(name={self.name!r}{extra})"

    # ------------------------------------------------------------------ internals
    @abstractmethod
    def _predict(self, p: FloatArray, log_n: FloatArray) -> FloatArray:
        """``p`` (B, P) natural, ``log_n`` (m,) natural log of N -> metric (B, m)."""

    @abstractmethod
    def _inverse(self, p: FloatArray, target: float) -> FloatArray: ...

    def _asymptote(self, p: FloatArray) -> FloatArray:
        return np.full(p.shape[0], np.nan)

    def _increasing(self, p: FloatArray) -> NDArray[np.bool_]:
        return np.ones(p.shape[0], dtype=bool)

    def raw_jacobian(
        self, theta: FloatArray, space: FitSpace, log_x: FloatArray
    ) -> tuple[FloatArray, FloatArray] | None:
        """Metric (B, m) and its analytic derivatives w.r.t. the raw parameters (B, m, P) at
        ``log_x = ln(N / n_ref)``; ``None`` makes the optimizer use forward differences."""
        return None

    @abstractmethod
    def to_natural(self, theta: FloatArray, space: FitSpace) -> FloatArray:
        """Raw ``theta`` (B, P) -> natural parameters (B, P)."""

    @abstractmethod
    def raw_bounds(self, space: FitSpace) -> tuple[FloatArray, FloatArray]:
        """Box on the raw parameters (keeps ``exp`` finite; the optimizer projects onto it)."""

    @abstractmethod
    def starts(self, data: StartData) -> FloatArray:
        """Grid of raw starting points (S, P) derived from the data."""


# ---------------------------------------------------------------------- helpers shared by forms
def _ols(x: FloatArray, y: FloatArray) -> tuple[float, float]:
    xm, ym = x.mean(), y.mean()
    sxx = float(((x - xm) ** 2).sum())
    b = float(((x - xm) * (y - ym)).sum() / sxx) if sxx > 0 else 0.0
    return float(ym - b * xm), b


def _asym_raw(a_inf: FloatArray | float, space: FitSpace) -> FloatArray:
    """Raw asymptote coordinate from a natural asymptote."""
    a = np.asarray(a_inf, dtype=np.float64)
    if space.bounded:
        return np.log(np.clip(1.0 - a, 1e-8, 1.0))
    return (a - space.y_ref) / space.y_scale


def _asym_nat(t: FloatArray, space: FitSpace) -> FloatArray:
    return 1.0 - np.exp(t) if space.bounded else space.y_ref + space.y_scale * t


def _asym_deriv(t: FloatArray, space: FitSpace) -> FloatArray:
    """d a_inf / d t for :func:`_asym_nat`."""
    return -np.exp(t) if space.bounded else np.full_like(t, space.y_scale)


def _asym_bounds(space: FitSpace) -> tuple[float, float]:
    return (math.log(1e-8), 0.0) if space.bounded else (-50.0, 50.0)


def _gap_amp_bounds(space: FitSpace) -> tuple[float, float]:
    ls = 0.0 if space.bounded else math.log(space.y_scale)
    return ls - 25.0, ls + 8.0


def _asym_candidates(data: StartData, fractions: tuple[float, ...]) -> FloatArray:
    """Asymptote guesses above the best observed mean: for bounded metrics the error floor is a
    fraction of the smallest observed error; otherwise the best mean plus multiples of the range."""
    top = float(data.means.max())
    if data.space.bounded:
        e_min = max(1.0 - top, 1e-4)
        return 1.0 - e_min * np.asarray(fractions)
    rng = max(float(np.ptp(data.means)), data.space.y_scale, 1e-12)
    return top + rng * (1.0 - np.asarray(fractions)) * 2.0 + 1e-3 * rng


def _value_at_ref(data: StartData) -> float:
    lx = np.log(data.sizes / data.space.n_ref)
    return float(np.interp(0.0, lx, data.means))


_LOG_RATE = (math.log(1e-3), math.log(10.0))


# ---------------------------------------------------------------------- linear
class LinearLaw(LawForm):
    """``linear``: ``metric = a + b * N`` - the law of Linsley et al. (Pheno-CA), who fit it by
    ordinary least squares through best-of-zoo points.

    Parameters: ``a`` (intercept, metric at ``N = 0``), ``b`` (gain per unit of ``N``). No
    asymptote: the line grows without bound, so for a bounded metric any target <= 1 is "reached"
    at a finite ``N`` whenever ``b > 0`` - which is exactly why it over-promises. Raw parameters:
    ``(a, b * n_ref)``. ``inverse``: ``(target - a) / b`` for ``b > 0`` (``0`` if ``a >= target``),
    ``inf`` for ``b <= 0``.
    """

    name = "linear"
    param_names = ("a", "b")
    has_asymptote = False

    def _predict(self, p: FloatArray, log_n: FloatArray) -> FloatArray:
        return p[:, :1] + p[:, 1:2] * np.exp(log_n)[None, :]

    def _inverse(self, p: FloatArray, target: float) -> FloatArray:
        a, b = p[:, 0], p[:, 1]
        n = np.where(b > 0, np.maximum((target - a) / np.where(b > 0, b, 1.0), 0.0), np.inf)
        return n.astype(np.float64)

    def _increasing(self, p: FloatArray) -> NDArray[np.bool_]:
        return p[:, 1] > 0

    def raw_jacobian(self, theta: FloatArray, space: FitSpace, log_x: FloatArray) -> tuple[FloatArray, FloatArray]:
        x = np.broadcast_to(np.exp(log_x)[None, :], (theta.shape[0], log_x.size))
        pred = theta[:, :1] + theta[:, 1:2] * x
        return pred, np.stack([np.ones_like(x), x], axis=2)

    def to_natural(self, theta: FloatArray, space: FitSpace) -> FloatArray:
        return np.stack([theta[:, 0], theta[:, 1] / space.n_ref], axis=1)

    def raw_bounds(self, space: FitSpace) -> tuple[FloatArray, FloatArray]:
        return np.full(2, -np.inf), np.full(2, np.inf)

    def starts(self, data: StartData) -> FloatArray:
        a, b = _ols(data.sizes / data.space.n_ref, data.means)
        return np.array([[a, b], [a, 0.5 * b], [a, 2.0 * b]])


# ---------------------------------------------------------------------- log-linear
class LogLinearLaw(LawForm):
    """``log_linear``: ``metric = a + b * log10(N)``.

    Parameters: ``a`` (metric at ``N = 1``), ``b`` (gain per decade of ``N``). No asymptote.
    Raw parameters: ``(metric at n_ref, b)``. ``inverse``: ``10 ** ((target - a) / b)`` for
    ``b > 0``, ``inf`` for ``b <= 0``.
    """

    name = "log_linear"
    param_names = ("a", "b")
    has_asymptote = False

    def _predict(self, p: FloatArray, log_n: FloatArray) -> FloatArray:
        return p[:, :1] + p[:, 1:2] * (log_n / _LN10)[None, :]

    def _inverse(self, p: FloatArray, target: float) -> FloatArray:
        a, b = p[:, 0], p[:, 1]
        expo = (target - a) / np.where(b > 0, b, 1.0) * _LN10
        return np.where(b > 0, np.exp(np.minimum(expo, 800.0)), np.inf).astype(np.float64)

    def _increasing(self, p: FloatArray) -> NDArray[np.bool_]:
        return p[:, 1] > 0

    def raw_jacobian(self, theta: FloatArray, space: FitSpace, log_x: FloatArray) -> tuple[FloatArray, FloatArray]:
        lx = np.broadcast_to((log_x / _LN10)[None, :], (theta.shape[0], log_x.size))
        pred = theta[:, :1] + theta[:, 1:2] * lx
        return pred, np.stack([np.ones_like(lx), lx], axis=2)

    def to_natural(self, theta: FloatArray, space: FitSpace) -> FloatArray:
        b = theta[:, 1]
        return np.stack([theta[:, 0] - b * math.log10(space.n_ref), b], axis=1)

    def raw_bounds(self, space: FitSpace) -> tuple[FloatArray, FloatArray]:
        return np.full(2, -np.inf), np.full(2, np.inf)

    def starts(self, data: StartData) -> FloatArray:
        c, b = _ols(np.log10(data.sizes / data.space.n_ref), data.means)
        return np.array([[c, b], [c, 0.5 * b], [c, 2.0 * b]])


# ---------------------------------------------------------------------- power law with floor
class PowerFloorLaw(LawForm):
    """``power_floor``: ``metric = a_inf - A * N ** (-alpha)``, ``A > 0``, ``alpha > 0``.

    Parameters: ``a_inf`` (the asymptote; for a bounded metric ``1 - a_inf`` is the irreducible
    error, the "M2" form ``e = e_inf + A N^-alpha`` of Alabdulmohsin et al.), ``A`` (amplitude of
    the reducible gap at ``N = 1``), ``alpha`` (decay exponent). Raw parameters:
    ``(t, log A', log alpha)`` with ``a_inf = 1 - exp(t)`` (bounded) or ``y_ref + y_scale * t``
    and ``A' = A * n_ref ** -alpha`` (the gap at ``n_ref``). ``inverse``:
    ``(A / (a_inf - target)) ** (1 / alpha)`` for ``target < a_inf``, else ``inf``.
    """

    name = "power_floor"
    param_names = ("a_inf", "A", "alpha")
    has_asymptote = True

    def _predict(self, p: FloatArray, log_n: FloatArray) -> FloatArray:
        a_inf, ln_a, alpha = p[:, :1], np.log(p[:, 1:2]), p[:, 2:3]
        return a_inf - np.exp(ln_a - alpha * log_n[None, :])

    def _inverse(self, p: FloatArray, target: float) -> FloatArray:
        a_inf, amp, alpha = p[:, 0], p[:, 1], p[:, 2]
        gap = a_inf - target
        ln_n = (np.log(amp) - np.log(np.where(gap > 0, gap, 1.0))) / alpha
        return np.where(gap > 0, np.exp(np.minimum(ln_n, 800.0)), np.inf).astype(np.float64)

    def _asymptote(self, p: FloatArray) -> FloatArray:
        return p[:, 0].copy()

    def raw_jacobian(self, theta: FloatArray, space: FitSpace, log_x: FloatArray) -> tuple[FloatArray, FloatArray]:
        alpha = np.exp(theta[:, 2:3])
        gap = np.exp(theta[:, 1:2] - alpha * log_x[None, :])
        a_inf = _asym_nat(theta[:, 0:1], space)
        da = np.broadcast_to(_asym_deriv(theta[:, 0:1], space), gap.shape)
        return a_inf - gap, np.stack([da, -gap, gap * alpha * log_x[None, :]], axis=2)

    def to_natural(self, theta: FloatArray, space: FitSpace) -> FloatArray:
        alpha = np.exp(theta[:, 2])
        amp = np.exp(theta[:, 1] + alpha * math.log(space.n_ref))
        return np.stack([_asym_nat(theta[:, 0], space), amp, alpha], axis=1)

    def raw_bounds(self, space: FitSpace) -> tuple[FloatArray, FloatArray]:
        (t0, t1), (g0, g1) = _asym_bounds(space), _gap_amp_bounds(space)
        return np.array([t0, g0, _LOG_RATE[0]]), np.array([t1, g1, _LOG_RATE[1]])

    def starts(self, data: StartData) -> FloatArray:
        y_ref = _value_at_ref(data)
        rows = []
        for a_inf in _asym_candidates(data, (1e-3, 0.3, 0.6, 0.9)):
            gap = a_inf - y_ref
            gap = gap if gap > 0 else 0.1 * abs(a_inf - data.means.min()) + 1e-6
            for alpha in (0.1, 0.3, 0.7, 1.5):
                rows.append([float(_asym_raw(a_inf, data.space)), math.log(gap), math.log(alpha)])
        return np.array(rows)


# ---------------------------------------------------------------------- M4 (bounded metrics)
def m4_error(e_inf: FloatArray, e0: float, ln_k: FloatArray, gamma: FloatArray) -> FloatArray:
    """Solve ``(e - e_inf) = k * (e0 - e) ** gamma`` for ``e`` in ``(e_inf, e0)`` (broadcasting).

    With ``D = e0 - e_inf`` and ``e = e_inf + D * sigmoid(u)`` the equation becomes
    ``h(u) = (1 - gamma) ln D - ln k - softplus(-u) + gamma * softplus(u) = 0``: ``h`` increases
    with slope between ``min(1, gamma)`` and ``max(1, gamma)`` and lies within ``[-ln 2, gamma ln 2]``
    of the piecewise-linear ``L(u) = C + gamma max(u, 0) + min(u, 0)``, which brackets the unique
    root. Newton's method from the root of ``L``, safeguarded by bisection on the bracket, reaches
    machine precision in a few steps. ``gamma = 0`` reduces to ``e = e_inf + k`` (capped at ``e0``).
    """
    g, _ = _m4_gap(e_inf, e0, ln_k, gamma)
    return e_inf + g


def _m4_gap(
    e_inf: FloatArray, e0: float, ln_k: FloatArray, gamma: FloatArray, iters: int = 30
) -> tuple[FloatArray, FloatArray]:
    """``(e - e_inf, e0 - e)`` of :func:`m4_error`, each computed without cancellation."""
    d = e0 - e_inf
    c0 = (1.0 - gamma) * np.log(d) - ln_k

    def l_inv(v: FloatArray) -> FloatArray:
        x = v - c0
        return np.where(x >= 0, x / np.maximum(gamma, 1e-300), x)

    with np.errstate(all="ignore"):
        lo = l_inv(-gamma * _LN2) - 1e-12
        up = l_inv(np.full_like(c0, _LN2)) + 1e-12
        u = np.clip(l_inv(np.zeros_like(c0)), lo, up)
        for _ in range(iters):
            sp = np.logaddexp(0.0, u)
            h = c0 - (sp - u) + gamma * sp
            if np.all(np.abs(h) <= 1e-13 * (1.0 + np.abs(u))):
                break
            lo = np.where(h < 0, u, lo)
            up = np.where(h > 0, u, up)
            sig = np.exp(u - sp)
            dh = (1.0 - sig) + gamma * sig
            un = u - h / dh
            ok = (un >= lo) & (un <= up)
            u = np.where(ok, un, 0.5 * (lo + up))
        sp = np.logaddexp(0.0, u)
    return d * np.exp(u - sp), d * np.exp(-sp)


class M4Law(LawForm):
    """``m4``: the bounded-metric form "M4" of Alabdulmohsin, Neyshabur & Zhai (2022,
    "Revisiting neural scaling laws in language and vision"), on the error ``e = 1 - metric``::

        (e - e_inf) / (e0 - e) ** gamma = beta * N ** (-c)

    Parameters: ``e_inf`` (irreducible error, ``0 < e_inf < e0``; asymptote ``1 - e_inf``),
    ``beta > 0``, ``c > 0`` (data exponent), ``gamma > 0`` (the paper's ``alpha``: how sharply
    the curve leaves the initial plateau ``e0``). ``e0`` - the error of an uninformed model - is a
    *fixed constant* of the form (default 1.0, i.e. metric 0; use :func:`m4_form` for e.g.
    ``1 - 1/K`` for a K-way accuracy); the paper also treats it as known. Deliberate difference:
    the paper fits the M4 relation directly; we predict ``e(N)`` by solving it numerically
    (:func:`m4_error`; ``e`` decreases monotonically from ``e0`` at ``N -> 0`` to ``e_inf``) and
    fit the predicted ``log e`` like every other form. ``inverse`` is closed form:
    ``N = (beta (e0 - e_t) ** gamma / (e_t - e_inf)) ** (1 / c)`` with ``e_t = 1 - target``
    (``inf`` when ``e_t <= e_inf``, ``0`` when ``e_t >= e0``). Raw parameters:
    ``(logit(e_inf / e0), log beta', log c, log gamma)`` with ``beta' = beta * n_ref ** -c``.
    """

    name = "m4"
    param_names = ("e_inf", "beta", "c", "gamma")
    has_asymptote = True
    bounded_only = True

    def __init__(self, e0: float = 1.0) -> None:
        if not 0.0 < e0 <= 1.0:
            raise ValueError(f"m4: e0 must be in (0, 1], got {e0}")
        self.e0 = float(e0)

    @property
    def fixed(self) -> dict[str, float]:
        return {"e0": self.e0}

    def _predict(self, p: FloatArray, log_n: FloatArray) -> FloatArray:
        e_inf, ln_beta, c, gamma = p[:, :1], np.log(p[:, 1:2]), p[:, 2:3], p[:, 3:4]
        ln_k = ln_beta - c * log_n[None, :]
        return 1.0 - m4_error(e_inf, self.e0, ln_k, gamma)

    def _inverse(self, p: FloatArray, target: float) -> FloatArray:
        e_inf, beta, c, gamma = p.T
        e_t = 1.0 - target
        inside = (e_t > e_inf) & (e_t < self.e0)
        ln_n = (
            np.log(beta)
            + gamma * np.log(np.where(inside, self.e0 - e_t, 1.0))
            - np.log(np.where(inside, e_t - e_inf, 1.0))
        ) / c
        out = np.where(inside, np.exp(np.minimum(ln_n, 800.0)), np.where(e_t <= e_inf, np.inf, 0.0))
        return out.astype(np.float64)

    def _asymptote(self, p: FloatArray) -> FloatArray:
        return 1.0 - p[:, 0]

    def raw_jacobian(self, theta: FloatArray, space: FitSpace, log_x: FloatArray) -> tuple[FloatArray, FloatArray]:
        # implicit differentiation of F = ln(e - e_inf) - ln k - gamma ln(e0 - e) = 0
        e_inf = self.e0 / (1.0 + np.exp(-theta[:, 0:1]))
        c, gamma = np.exp(theta[:, 2:3]), np.exp(theta[:, 3:4])
        ln_k = theta[:, 1:2] - c * log_x[None, :]
        g, q = _m4_gap(e_inf, self.e0, ln_k, gamma)
        with np.errstate(all="ignore"):
            de_dlnk = g * q / (q + gamma * g)
            de_dinf = q / (q + gamma * g)
            jac = np.stack(
                [
                    -de_dinf * e_inf * (1.0 - e_inf / self.e0),
                    -de_dlnk,
                    de_dlnk * c * log_x[None, :],
                    -de_dlnk * np.log(q) * gamma,
                ],
                axis=2,
            )
        return 1.0 - (e_inf + g), jac

    def to_natural(self, theta: FloatArray, space: FitSpace) -> FloatArray:
        e_inf = self.e0 / (1.0 + np.exp(-theta[:, 0]))
        c = np.exp(theta[:, 2])
        beta = np.exp(theta[:, 1] + c * math.log(space.n_ref))
        return np.stack([e_inf, beta, c, np.exp(theta[:, 3])], axis=1)

    def raw_bounds(self, space: FitSpace) -> tuple[FloatArray, FloatArray]:
        return (
            np.array([-20.0, -25.0, _LOG_RATE[0], math.log(1e-3)]),
            np.array([12.0, 10.0, _LOG_RATE[1], math.log(20.0)]),
        )

    def starts(self, data: StartData) -> FloatArray:
        e_ref = min(1.0 - _value_at_ref(data), 0.999 * self.e0)
        e_min = max(min(1.0 - float(data.means.max()), 0.999 * self.e0), 1e-4)
        rows = []
        for frac in (1e-3, 0.3, 0.7):
            e_inf = frac * e_min
            for gamma in (0.05, 0.5, 1.5):
                beta_ref = max(e_ref - e_inf, 1e-6) / (self.e0 - e_ref) ** gamma
                for c in (0.2, 0.5, 1.0):
                    rows.append([math.log(e_inf / (self.e0 - e_inf)), math.log(beta_ref), math.log(c), math.log(gamma)])
        return np.array(rows)


# ---------------------------------------------------------------------- broken power law
class BrokenPowerLaw(LawForm):
    """``broken_power``: a smoothly broken power law with one break, after Caballero et al.
    (2022, "Broken neural scaling laws")::

        metric = a_inf - A * N ** (-alpha0) * (1 + (N / d1) ** (1 / f1)) ** (-alpha1 * f1)

    Parameters: ``a_inf`` (asymptote), ``A > 0`` (amplitude), ``alpha0 > 0`` (exponent before
    the break), ``alpha1`` (change of exponent at the break, ``alpha0 + alpha1 > 0`` so the curve
    keeps rising; the exponent after the break is ``alpha0 + alpha1``), ``d1 > 0`` (break
    location). ``f1`` (sharpness) is a *fixed constant* (default 1, see
    :func:`broken_power_form`): deliberate difference from BNSL, which fits it - five to eight
    data sizes cannot identify it. BNSL's ``y = a + b x^-c0 prod(...)`` is written here for an
    increasing metric (``a_inf - gap``). Raw parameters: ``(t, log gap(n_ref), log alpha0,
    log(alpha0 + alpha1), log(d1 / n_ref))`` - amplitude at ``n_ref`` with the break factor
    included, so a break far outside the data is a flat direction rather than a valley between
    ``A -> 0`` and ``d1 -> 0``. ``inverse``: the
    log-gap is strictly decreasing in ``log N`` with slope between ``-alpha0`` and
    ``-(alpha0 + alpha1)``, so the root is bracketed and found by bisection; ``inf`` when
    ``target >= a_inf``.
    """

    name = "broken_power"
    param_names = ("a_inf", "A", "alpha0", "alpha1", "d1")
    has_asymptote = True

    def __init__(self, f1: float = 1.0) -> None:
        if not f1 > 0:
            raise ValueError(f"broken_power: f1 must be > 0, got {f1}")
        self.f1 = float(f1)

    @property
    def fixed(self) -> dict[str, float]:
        return {"f1": self.f1}

    def _log_gap(self, p: FloatArray, log_n: FloatArray) -> FloatArray:
        ln_a, a0, a1, ln_d = np.log(p[:, 1:2]), p[:, 2:3], p[:, 3:4], np.log(p[:, 4:5])
        brk = np.logaddexp(0.0, (log_n - ln_d) / self.f1)
        return ln_a - a0 * log_n - a1 * self.f1 * brk

    def _predict(self, p: FloatArray, log_n: FloatArray) -> FloatArray:
        return p[:, :1] - np.exp(self._log_gap(p, log_n[None, :]))

    def _inverse(self, p: FloatArray, target: float) -> FloatArray:
        a_inf = p[:, 0]
        gap = a_inf - target
        reach = gap > 0
        level = np.log(np.where(reach, gap, 1.0))[:, None]
        u0 = np.log(p[:, 4:5])
        lg0 = self._log_gap(p, u0)
        s1 = p[:, 2:3]
        s2 = p[:, 2:3] + p[:, 3:4]
        lo = np.minimum(u0 + (lg0 - level) / s1, u0 + (lg0 - level) / s2) - 1.0
        hi = np.maximum(u0 + (lg0 - level) / s1, u0 + (lg0 - level) / s2) + 1.0
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            above = self._log_gap(p, mid) > level
            lo = np.where(above, mid, lo)
            hi = np.where(above, hi, mid)
        n = np.exp(np.minimum(0.5 * (lo + hi)[:, 0], 800.0))
        return np.where(reach, n, np.inf).astype(np.float64)

    def _asymptote(self, p: FloatArray) -> FloatArray:
        return p[:, 0].copy()

    def raw_jacobian(self, theta: FloatArray, space: FitSpace, log_x: FloatArray) -> tuple[FloatArray, FloatArray]:
        a0, late = np.exp(theta[:, 2:3]), np.exp(theta[:, 3:4])
        a1, f1 = late - a0, self.f1
        lx = log_x[None, :]
        z = (lx - theta[:, 4:5]) / f1
        sp = np.logaddexp(0.0, z)
        sig = np.exp(z - sp)
        z0 = -theta[:, 4:5] / f1
        sp0 = np.logaddexp(0.0, z0)
        sig0 = np.exp(z0 - sp0)
        gap = np.exp(theta[:, 1:2] + a1 * f1 * (sp0 - sp) - a0 * lx)
        da = np.broadcast_to(_asym_deriv(theta[:, 0:1], space), gap.shape)
        jac = np.stack(
            [da, -gap, -gap * a0 * (f1 * (sp - sp0) - lx), -gap * late * f1 * (sp0 - sp), -gap * a1 * (sig - sig0)],
            axis=2,
        )
        return _asym_nat(theta[:, 0:1], space) - gap, jac

    def to_natural(self, theta: FloatArray, space: FitSpace) -> FloatArray:
        a0 = np.exp(theta[:, 2])
        a1 = np.exp(theta[:, 3]) - a0
        # theta[1] is the log gap at n_ref, break factor included
        ln_amp_ref = theta[:, 1] + a1 * self.f1 * np.logaddexp(0.0, -theta[:, 4] / self.f1)
        amp = np.exp(ln_amp_ref + a0 * math.log(space.n_ref))
        d1 = space.n_ref * np.exp(theta[:, 4])
        return np.stack([_asym_nat(theta[:, 0], space), amp, a0, a1, d1], axis=1)

    def raw_bounds(self, space: FitSpace) -> tuple[FloatArray, FloatArray]:
        (t0, t1), (g0, g1) = _asym_bounds(space), _gap_amp_bounds(space)
        d_lo = math.log(space.n_min / space.n_ref) - math.log(100.0)
        d_hi = math.log(space.n_max / space.n_ref) + math.log(100.0)
        return (
            np.array([t0, g0, _LOG_RATE[0], _LOG_RATE[0], d_lo]),
            np.array([t1, g1, _LOG_RATE[1], _LOG_RATE[1], d_hi]),
        )

    def starts(self, data: StartData) -> FloatArray:
        y_ref = _value_at_ref(data)
        lx = np.log(data.sizes / data.space.n_ref)
        rows = []
        for a_inf in _asym_candidates(data, (1e-3, 0.5, 0.85)):
            gap = a_inf - y_ref
            gap = gap if gap > 0 else 0.1 * abs(a_inf - data.means.min()) + 1e-6
            for a0 in (0.05, 0.3, 1.0):
                for late in (0.5 * a0, 2.0 * a0 + 0.2):
                    for q in (0.25, 0.5, 0.75):
                        rows.append(
                            [
                                float(_asym_raw(a_inf, data.space)),
                                math.log(gap),
                                math.log(a0),
                                math.log(late),
                                float(np.quantile(lx, q)),
                            ]
                        )
        return np.array(rows)


# ---------------------------------------------------------------------- registry
def m4_form(e0: float = 1.0) -> M4Law:
    """An ``m4`` form with the uninformed-model error ``e0`` (e.g. ``1 - 1/K`` for K classes)."""
    return M4Law(e0)


def broken_power_form(f1: float = 1.0) -> BrokenPowerLaw:
    """A ``broken_power`` form with fixed break sharpness ``f1``."""
    return BrokenPowerLaw(f1)


FORMS: dict[str, LawForm] = {
    f.name: f for f in (LinearLaw(), LogLinearLaw(), PowerFloorLaw(), M4Law(), BrokenPowerLaw())
}
"""The registry of law forms, keyed by name, in reporting order."""


def get_form(form: str | LawForm) -> LawForm:
    """A form by name (or the form itself)."""
    if isinstance(form, LawForm):
        return form
    try:
        return FORMS[form]
    except KeyError:
        raise KeyError(f"unknown scaling-law form {form!r}; known: {sorted(FORMS)}") from None
