"""The nodule's diameter from the patch the model read: a transparent measurement next to the learned risk.

The fused model gives a risk, not a size. A report's TID 1500 measurement group wants the diameter in mm, and
a radiologist checks it first, so the workbench measures it the plain way: voxels of the isotropic nodule
patch above ``threshold_hu`` (-650 HU by default: solid and most ground-glass nodule tissue, above aerated
lung near -850), the connected component at (or nearest) the patch centre, and the diameter of the sphere of
the same volume. Vessels touching the nodule can inflate it; a nodule larger than the patch is capped by it.
"""

from __future__ import annotations

import numpy as np


def volume_equivalent_diameter(patch01: np.ndarray, spacing_mm: float = 1.25, threshold_hu: float = -650.0,
                               hu_min: float = -1000.0, hu_max: float = 400.0) -> float | None:
    """Diameter (mm) of the sphere with the volume of the central component above ``threshold_hu``; None when
    nothing at the centre is that dense. ``patch01``: the windowed patch (0 = ``hu_min``, 1 = ``hu_max``)."""
    from scipy import ndimage

    level = (threshold_hu - hu_min) / (hu_max - hu_min)
    solid = np.asarray(patch01) > level
    labels, n = ndimage.label(solid)
    if n == 0:
        return None
    c = np.array(solid.shape) // 2
    near = labels[max(c[0] - 2, 0):c[0] + 3, max(c[1] - 2, 0):c[1] + 3, max(c[2] - 2, 0):c[2] + 3]
    ids = near[near > 0]
    if ids.size == 0:
        return None
    component = labels == np.bincount(ids).argmax()
    volume = float(component.sum()) * spacing_mm**3
    return float((6.0 * volume / np.pi) ** (1.0 / 3.0))


__all__ = ["volume_equivalent_diameter"]
