"""The measurement key image (``workbench.report.key_image``): the slice the nodule was measured on, cropped around
it, with the measured outline drawn where the nodule is and as wide as the measured long axis."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy.spatial.distance import pdist

from workbench.data.case import load_cases
from workbench.data.dicom_io import load_ct_series
from workbench.report.key_image import HALF_WIDTH_MM, measurement_png
from workbench.runtime.measure import axial_view, measure_nodule


def test_the_outline_sits_on_the_nodule_at_its_measured_size(tiny_cohort) -> None:  # noqa: ANN001
    site = next(p for p in sorted(tiny_cohort.iterdir()) if (p / "manifest.csv").exists())
    case = next(c for c in load_cases(site) if c.has_ct and c.nodule_lps_mm is not None)
    image = load_ct_series(case.series_dir)
    hu, affine = image[0].numpy(), np.asarray(image.affine)
    m = measure_nodule(hu, affine, case.nodule_lps_mm, where=case.case_id)

    view = axial_view(hu, affine, m)
    assert view.mask.any() and abs(view.z_mm - m.center_lps[2]) <= 0.5 * 2.5  # the slice through the centre
    rows, cols = np.nonzero(view.mask)  # the mask on the slice is where the fitted centre is (LPS y, x)
    assert abs(view.origin_mm[0] + view.pixel_mm[0] * rows.mean() - m.center_lps[1]) < 1.5
    assert abs(view.origin_mm[1] + view.pixel_mm[1] * cols.mean() - m.center_lps[0]) < 1.5

    png = Image.open(io.BytesIO(measurement_png(hu, affine, m))).convert("RGB")
    a = np.asarray(png).astype(int)
    green = (a[..., 1] > 180) & (a[..., 0] < 80) & (a[..., 2] < 160)
    assert green.sum() > 20
    # the image is drawn at a known scale: find the grey CT area (the crop, 2 x HALF_WIDTH_MM wide) and compare
    grey = (np.abs(a[..., 0] - a[..., 1]) < 6) & (np.abs(a[..., 1] - a[..., 2]) < 6) & (a[..., 0] < 245)
    cols_ct = np.flatnonzero(grey.sum(axis=0) > 20)
    px_per_mm = (cols_ct.max() - cols_ct.min() + 1) / (2 * max(HALF_WIDTH_MM, 0.75 * m.long_axis_mm))
    gy, gx = np.nonzero(green)
    # the outline's longest chord, in any direction: a nodule's long axis need not lie left-right (the tiny cohort's
    # first case merges with a vessel running antero-posteriorly: 24 mm long, 10 mm wide on the image's x axis)
    longest_mm = pdist(np.c_[gy, gx]).max() / px_per_mm
    assert abs(longest_mm - m.long_axis_mm) < max(2.5, 0.35 * m.long_axis_mm), (longest_mm, m.long_axis_mm)
    centre_x = (cols_ct.min() + cols_ct.max()) / 2
    assert abs(gx.mean() - centre_x) / px_per_mm < 4.0  # the crop is centred on the nodule
