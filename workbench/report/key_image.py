"""The measurement key image: the axial slice the nodule was measured on, with the measured outline, a 10 mm scale
bar and the orientation, so a reader can check the size on the report itself.

Radiological convention (the viewer's): anterior up, the patient's right on the left of the image. The outline is
the measured nodule's mask (``workbench.runtime.measure``) on that slice, drawn as its 50% contour.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from workbench.runtime.measure import NoduleMeasurement, axial_view

HALF_WIDTH_MM = 30.0  # the crop: 60 mm around the nodule, wider for a nodule larger than 40 mm
LUNG_WINDOW = (-600.0, 1500.0)  # level, width (HU)


def measurement_png(hu: np.ndarray, affine_ras: np.ndarray, m: NoduleMeasurement) -> bytes:
    """PNG bytes of the measured slice around the nodule (module docstring)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    v = axial_view(hu, affine_ras, m)
    half = max(HALF_WIDTH_MM, 0.75 * m.long_axis_mm)
    (py, px), (oy, ox), (cy, cx) = v.pixel_mm, v.origin_mm, v.center_mm
    rows = slice(max(0, int((cy - half - oy) / py)), min(v.hu.shape[0], int((cy + half - oy) / py) + 1))
    cols = slice(max(0, int((cx - half - ox) / px)), min(v.hu.shape[1], int((cx + half - ox) / px) + 1))
    img, mask = v.hu[rows, cols], v.mask[rows, cols]
    extent = (ox + px * (cols.start - 0.5), ox + px * (cols.stop - 0.5), oy + py * (rows.stop - 0.5),
              oy + py * (rows.start - 0.5))  # LPS mm: x to the patient's left, y to the back (drawn downwards)
    level, width = LUNG_WINDOW
    fig, ax = plt.subplots(figsize=(3.6, 3.8))
    ax.imshow(img, cmap="gray", vmin=level - width / 2, vmax=level + width / 2, extent=extent,
              interpolation="nearest")
    if mask.any():
        ys = oy + py * np.arange(rows.start, rows.stop)
        xs = ox + px * np.arange(cols.start, cols.stop)
        ax.contour(xs, ys, mask.astype(float), levels=[0.5], colors=["#00e060"], linewidths=1.2)
    x0, y0 = extent[0] + 3, extent[2] - 4  # scale bar, bottom left
    ax.plot([x0, x0 + 10], [y0, y0], color="white", lw=2)
    ax.text(x0 + 5, y0 - 1.5, "10 mm", color="white", ha="center", va="bottom", fontsize=7)
    _letters(ax, extent)
    ax.set_axis_off()
    ax.set_title(f"axial z = {v.z_mm:.1f} mm: {m.long_axis_mm:.1f} x {m.short_axis_mm:.1f} mm "
                 f"(mean {m.mean_diameter_mm:.1f})", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _letters(ax: Any, extent: tuple[float, float, float, float]) -> None:
    left, right, bottom, top = extent
    mid_x, mid_y = (left + right) / 2, (top + bottom) / 2
    style = {"color": "#ffd400", "fontsize": 8, "fontweight": "bold", "ha": "center", "va": "center"}
    ax.text(mid_x, top + 2.5, "A", **style)
    ax.text(mid_x, bottom - 2.5, "P", **style)
    ax.text(left + 2.5, mid_y, "R", **style)
    ax.text(right - 2.5, mid_y, "L", **style)


__all__ = ["measurement_png"]
