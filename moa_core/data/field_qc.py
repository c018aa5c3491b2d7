"""Per-channel quality control of Cell Painting fields: blank, saturated and out-of-focus channels.

A field whose Mito channel was never acquired (camera background only), whose RNA channel is clipped
at the detector's top value, or whose ER channel is blurred still segments and measures; its profile is
then wrong for reasons that have nothing to do with the compound. This module measures each channel
of each field (:func:`channel_metrics`, in the worker that reads the field anyway) and flags fields by
plate (:func:`flag_fields`), naming the channel and the reason.

Definitions (per field f, channel c, raw 16-bit counts x):

- ``contrast = p99.9(x) / max(p50(x), 1)``; ``range = p99.9(x) - p0.1(x)``;
- ``saturated = mean(x >= saturation_value)`` (CellProfiler MeasureImageQuality's PercentMaximal, as a
  fraction);
- ``focus = log(var(LoG_1(x)) / var(LoG_4(x)))``, LoG_s the Laplacian of Gaussian at scale s px: the
  fine-scale energy relative to the coarse-scale one, a two-point slope of the spectrum as CellProfiler's
  PowerLogLogSlope is a fitted one. Defocus removes fine detail first, so the score falls (on the real
  CPJUMP1 fields: 2.5 to 4.5 in focus, 1.5 to 1.9 after a Gaussian blur of 2 px, about 0.8 after 4 px),
  while the amount of stain and the cell density, which scale both energies, largely cancel.

Thresholds are a :class:`~moa_core.data.config.FieldQCConfig`. Blank uses an absolute contrast floor and a
range relative to the plate; focus is only relative to the plate (a focus score's scale depends on the
stain and the cells, not on a universal constant), so it needs a plate of a few fields. Where CellProfiler's
MeasureImageQuality + FlagImage pipeline takes thresholds per experiment by hand, these are robust
(median/MAD) per plate and channel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from moa_core.data.config import FieldQCConfig

KEYS = ["Metadata_Plate", "Metadata_Well", "Metadata_Site"]
#: Columns of the ``field_qc`` table (without ``dataset``): one row per flagged (field, channel, reason);
#: ``channel`` and ``skipped`` come last, as a table written before them gets them appended.
QC_COLUMNS = [*KEYS, "reason", "channel", "skipped"]
METRICS = ["contrast", "range", "saturated", "focus"]
#: Scales (px) of the focus score's fine and coarse Laplacian-of-Gaussian energies.
FOCUS_SIGMAS = (1.0, 4.0)


def channel_metrics(
    field: np.ndarray, channels: Sequence[str], saturation_value: int = 65535
) -> dict[str, dict[str, float]]:
    """``{channel: {contrast, range, saturated, focus}}`` of one ``(C, H, W)`` raw field (see the module)."""
    from scipy import ndimage

    out = {}
    for c, img in zip(channels, field):
        x = np.asarray(img, dtype=np.float32)
        lo, med, hi = np.percentile(x, [0.1, 50.0, 99.9])
        fine = float(ndimage.gaussian_laplace(x, FOCUS_SIGMAS[0]).var())
        coarse = float(ndimage.gaussian_laplace(x, FOCUS_SIGMAS[1]).var())
        out[c] = {
            "contrast": float(hi / max(med, 1.0)),
            "range": float(hi - lo),
            "saturated": float(np.mean(x >= saturation_value)),
            "focus": float(np.log(max(fine, 1e-12) / max(coarse, 1e-12))),
        }
    return out


def metrics_frame(rows: list[tuple[dict, dict[str, dict[str, float]]]]) -> pd.DataFrame:
    """Long table (KEYS, channel, METRICS) from ``[(field keys, channel_metrics(...)), ...]``."""
    recs = [{**{k: keys[k] for k in KEYS}, "channel": c, **m} for keys, per in rows for c, m in per.items()]
    return pd.DataFrame(recs, columns=[*KEYS, "channel", *METRICS])


def _robust_z(v: pd.Series, min_sd: float) -> pd.Series:
    med = v.median()
    sd = 1.4826 * (v - med).abs().median()
    return (v - med) / max(sd, min_sd, 1e-6)


def flag_fields(metrics: pd.DataFrame, config: FieldQCConfig = FieldQCConfig()) -> pd.DataFrame:
    """Flagged (field, channel) pairs of ``metrics`` (:func:`metrics_frame`), as rows of :data:`QC_COLUMNS`.

    Plate statistics are taken per (plate, channel); ``skipped`` is ``config.skip``.
    """
    flags = []
    for (_plate, _channel), g in metrics.groupby(["Metadata_Plate", "channel"], sort=True):
        plate_stats = len(g) >= config.min_fields_for_plate_stats
        med_range = float(g["range"].median())
        z_focus = _robust_z(g["focus"], config.focus_min_sd) if plate_stats else None
        for i, r in g.iterrows():
            if r["contrast"] < config.min_contrast:
                flags.append((r, f"blank: contrast {r['contrast']:.2f} < {config.min_contrast:g} (p99.9 / median)"))
            elif plate_stats and r["range"] < config.min_range_ratio * med_range:
                flags.append(
                    (
                        r,
                        f"blank: range {r['range']:.0f} counts < {config.min_range_ratio:g} x plate median "
                        f"{med_range:.0f}",
                    )
                )
            if r["saturated"] > config.max_saturated:
                flags.append(
                    (
                        r,
                        f"saturated: {100 * r['saturated']:.1f} % of pixels at {config.saturation_value} "
                        f"> {100 * config.max_saturated:g} %",
                    )
                )
            if z_focus is not None and z_focus[i] < -config.focus_mad and r["contrast"] >= config.min_contrast:
                flags.append(
                    (
                        r,
                        f"out of focus: focus score {r['focus']:.2f} is {-z_focus[i]:.1f} robust SDs below the plate "
                        f"median {g['focus'].median():.2f}",
                    )
                )
    out = pd.DataFrame(
        [
            {**{k: r[k] for k in KEYS}, "channel": r["channel"], "reason": why, "skipped": config.skip}
            for r, why in flags
        ],
        columns=QC_COLUMNS,
    )
    return out.astype({"Metadata_Plate": str, "Metadata_Well": str, "Metadata_Site": "int64", "skipped": bool})
