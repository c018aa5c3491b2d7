"""A batched robust Levenberg-Marquardt solver for many small least-squares problems at once.

Minimizes, independently for every row ``b`` of ``theta`` (B, P)::

    cost_b = 0.5 * sum_i w_bi * f**2 * rho((r_bi / f) ** 2),   rho(z) = 2 * (sqrt(1 + z) - 1)

- the ``soft_l1`` loss of :func:`scipy.optimize.least_squares` with ``f_scale = f`` and integer
  (bootstrap) weights ``w`` (``w = 1`` gives exactly scipy's cost). All ``B`` problems share the
  observations; only their parameters and weights differ, so residuals and forward-difference
  Jacobians are computed for the whole batch with a handful of array operations.

Each iteration is a Gauss-Newton step on the iteratively reweighted problem (weights
``w * rho'(z) = w / sqrt(1 + z)``), damped Marquardt-style (``H + lambda * diag(H)``), with
geodesic acceleration, projected onto a box (coordinates on a bound whose descent points outward
are frozen), and accepted only if the true robust cost decreases. Its fixed points are those of
scipy's soft-L1 trust-region solver (zero gradient of the same cost).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
Residuals = Callable[[FloatArray], FloatArray]


@dataclass(frozen=True)
class LMResult:
    """Solutions (B, P), their robust costs (B,), iterations used and a per-row converged flag."""

    theta: FloatArray
    cost: FloatArray
    n_iter: int
    converged: NDArray[np.bool_]


_GEO_H = 0.1
_GEO_ALPHA = 0.75


def _solve(a: FloatArray, rhs: FloatArray) -> FloatArray:
    b = np.nan_to_num(rhs)[:, :, None]
    try:
        return np.linalg.solve(a, b)[:, :, 0]
    except np.linalg.LinAlgError:
        return (np.linalg.pinv(a) @ b)[:, :, 0]


def robust_cost(r: FloatArray, weights: FloatArray | None, f_scale: float) -> FloatArray:
    """Soft-L1 cost per row of residuals ``r`` (B, m)."""
    z = (r / f_scale) ** 2
    rho = 2.0 * (np.sqrt(1.0 + z) - 1.0)
    if weights is not None:
        rho = rho * weights
    out = 0.5 * f_scale**2 * rho.sum(axis=1)
    return np.where(np.isfinite(out), out, np.inf)


def robust_lm(
    residuals: Residuals,
    theta0: FloatArray,
    *,
    weights: FloatArray | None = None,
    jacobian: Callable[[FloatArray], FloatArray] | None = None,
    f_scale: float = 0.05,
    lower: FloatArray | None = None,
    upper: FloatArray | None = None,
    max_iter: int = 100,
    ftol: float = 1e-10,
    xtol: float = 1e-10,
    geodesic: bool = True,
    offsets: FloatArray | None = None,
) -> LMResult:
    """Solve ``B`` robust least-squares problems from starts ``theta0`` (B, P).

    ``residuals(theta)`` maps (b, P) -> (b, m) for any subset of rows; ``jacobian(theta)``, if
    given, maps (b, P) -> (b, m, P) (else forward differences); ``weights`` is (B, m) or None.
    ``offsets`` (B, m) or None shifts each row's observations: row ``b`` minimizes the cost of
    ``residuals(theta_b) - offsets[b]`` (a parametric bootstrap's resampled observations, all
    solved in one batch; the Jacobian is unchanged).
    Rows stop when an accepted step lowers the cost by less than ``ftol`` (relative), the step is
    below ``xtol`` (relative), or the damping exceeds 1e10 (no descent left).
    ``geodesic`` adds Transtrum & Sethna's geodesic acceleration (one extra residual evaluation
    per iteration; steps whose acceleration exceeds 0.75 of the velocity are rejected), which
    speeds up the walk along the long curved valleys of sloppy forms (m4, broken_power).
    """
    theta = np.array(theta0, dtype=np.float64, copy=True)
    b_all, p = theta.shape
    lo = np.full(p, -np.inf) if lower is None else np.asarray(lower, dtype=np.float64)
    hi = np.full(p, np.inf) if upper is None else np.asarray(upper, dtype=np.float64)
    theta = np.clip(theta, lo, hi)
    w_all = None if weights is None else np.asarray(weights, dtype=np.float64)
    off = None if offsets is None else np.asarray(offsets, dtype=np.float64)
    if off is not None and off.shape[0] != b_all:
        raise ValueError(f"offsets has {off.shape[0]} rows for {b_all} starts")

    def resid(th: FloatArray, rows: NDArray[np.int64] | None = None) -> FloatArray:
        r0 = residuals(th)
        if off is None:
            return r0
        return r0 - (off if rows is None else off[rows])

    with np.errstate(all="ignore"):
        r = resid(theta)
        cost = robust_cost(r, w_all, f_scale)
        m = r.shape[1]
        jac = np.zeros((b_all, m, p))
        need_jac = np.ones(b_all, dtype=bool)
        lam = np.full(b_all, 1e-3)
        active = np.isfinite(cost)
        converged = np.zeros(b_all, dtype=bool)
        it = 0
        eye = np.eye(p)
        while it < max_iter and active.any():
            it += 1
            idx = np.flatnonzero(active)
            # forward-difference Jacobians for the rows whose theta moved
            jdx = idx[need_jac[idx]]
            if jdx.size and jacobian is not None:
                jac[jdx] = jacobian(theta[jdx])
                need_jac[jdx] = False
            elif jdx.size:
                th = theta[jdx]
                step = 1e-6 * np.maximum(1.0, np.abs(th))
                pert = np.repeat(th[:, None, :], p, axis=1) + step[:, :, None] * eye[None, :, :]
                rp = resid(pert.reshape(-1, p), np.repeat(jdx, p)).reshape(jdx.size, p, m)
                jac[jdx] = np.transpose((rp - r[jdx][:, None, :]) / step[:, :, None], (0, 2, 1))
                need_jac[jdx] = False
            rr, jj = r[idx], jac[idx]
            z = (rr / f_scale) ** 2
            om = 1.0 / np.sqrt(1.0 + z)
            if w_all is not None:
                om = om * w_all[idx]
            g = np.einsum("bn,bnp,bn->bp", om, jj, rr)
            h = np.einsum("bn,bnp,bnq->bpq", om, jj, jj)
            # active set: freeze coordinates sitting on a bound whose descent direction points outward
            th_i = theta[idx]
            frozen = ((th_i <= lo) & (g > 0)) | ((th_i >= hi) & (g < 0))
            if frozen.any():
                keep = ~frozen
                h = h * keep[:, :, None] * keep[:, None, :] + frozen[:, :, None] * eye[None, :, :]
                g = np.where(frozen, 0.0, g)
            dg = np.diagonal(h, axis1=1, axis2=2)
            floor = 1e-12 * np.maximum(dg.max(axis=1, keepdims=True), 1e-300)
            damp = np.maximum(dg, floor) * lam[idx, None]
            a = h + damp[:, :, None] * eye[None, :, :]
            a[~np.isfinite(a)] = 0.0
            delta = -_solve(a, g)
            if geodesic:
                # second directional derivative of the residuals along delta (finite difference)
                r_h = resid(th_i + _GEO_H * delta, idx)
                rvv = (2.0 / _GEO_H) * ((r_h - rr) / _GEO_H - np.einsum("bnp,bp->bn", jj, delta))
                g2 = np.einsum("bn,bnp,bn->bp", om, jj, np.nan_to_num(rvv, posinf=0.0, neginf=0.0))
                if frozen.any():
                    g2 = np.where(frozen, 0.0, g2)
                accel = -_solve(a, g2)
                scale_d = np.maximum(dg, floor)
                vel_norm = np.sqrt((scale_d * delta**2).sum(axis=1))
                acc_norm = np.sqrt((scale_d * accel**2).sum(axis=1))
                geo_ok = 2.0 * acc_norm <= _GEO_ALPHA * vel_norm
                step_vec = delta + 0.5 * np.where(geo_ok[:, None], accel, 0.0)
            else:
                geo_ok = np.ones(idx.size, dtype=bool)
                step_vec = delta
            th_new = np.clip(th_i + step_vec, lo, hi)
            r_new = resid(th_new, idx)
            c_new = robust_cost(r_new, None if w_all is None else w_all[idx], f_scale)
            c_new = np.where(geo_ok, c_new, np.inf)
            c_old = cost[idx]
            better = c_new < c_old
            acc = idx[better]
            moved = np.abs(th_new[better] - theta[acc]).max(axis=1)
            scale = 1.0 + np.abs(theta[acc]).max(axis=1)
            theta[acc] = th_new[better]
            r[acc] = r_new[better]
            gain = c_old[better] - c_new[better]
            cost[acc] = c_new[better]
            need_jac[acc] = True
            lam[acc] = np.maximum(lam[acc] / 3.0, 1e-9)
            rej = idx[~better]
            lam[rej] *= 5.0
            done_acc = (gain <= ftol * np.maximum(c_new[better], 1e-300)) | (moved <= xtol * scale)
            converged[acc[done_acc]] = True
            active[acc[done_acc]] = False
            stuck = rej[lam[rej] > 1e10]
            converged[stuck] = True  # no descent direction left: a (numerical) stationary point
            active[stuck] = False
    return LMResult(theta=theta, cost=cost, n_iter=it, converged=converged)
