"""The CT viewer's logic without a browser: the display window, the attribution placed in the series grid, the
flip to RAS, and what a rendered slice shows (orientation, overlay colours, the nodule ring), read from the PNG."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from workbench.ui.ct_viewer import WINDOWS, CTViewer, ViewState, place_patch, render, to_ras, window

YELLOW = (255, 220, 0)


def png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


def test_window_maps_level_to_half_grey_and_clips_outside_the_width() -> None:
    level, width = WINDOWS["lung"]
    hu = np.array([level - width, level - width / 2, level - width / 4, level, level + width / 2, 3000.0])
    np.testing.assert_allclose(window(hu, level, width), [0.0, 0.0, 0.25, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(window(np.array([40.0, 240.0]), *WINDOWS["mediastinum"]), [0.5, 1.0])


def test_the_patch_attribution_lands_at_the_nodule_resampled_to_the_series_spacing() -> None:
    attribution = np.ones((8, 8, 8), dtype=np.float32)  # 8 voxels of 1.25 mm: 10 mm a side
    out = place_patch(attribution, (40, 40, 20), np.array([20.0, 10.0, 8.0]), (2.5, 1.25, 5.0))
    assert out.shape == (40, 40, 20)
    box = np.argwhere(out > 0)
    # 10 mm = 4, 8 and 2 voxels of 2.5, 1.25 and 5 mm, centred on the nodule voxel
    assert (box.min(0).tolist(), box.max(0).tolist()) == ([18, 6, 7], [21, 13, 8])
    assert out.sum() == pytest.approx(4 * 8 * 2)
    # at the edge of the volume the patch is cut, far outside it vanishes
    edge = place_patch(attribution, (40, 40, 20), np.array([0.0, 10.0, 8.0]), (2.5, 1.25, 5.0))
    assert np.argwhere(edge > 0).min(0)[0] == 0 and edge.sum() == pytest.approx(2 * 8 * 2)
    assert not place_patch(attribution, (40, 40, 20), np.array([100.0, 10.0, 8.0]), (2.5, 1.25, 5.0)).any()


def test_to_ras_flips_the_axes_that_run_against_ras_and_the_marker_with_them() -> None:
    vol = np.zeros((5, 6, 7))
    vol[1, 2, 3] = 1.0
    affine = np.diag([-0.7, -0.7, 2.5, 1.0])  # an LPS-ordered DICOM series seen in RAS: i runs left, j posterior
    (out,), marker = to_ras([vol], affine, np.array([1.0, 2.0, 3.0]))
    assert np.argwhere(out == 1.0).tolist() == [[3, 3, 3]] and marker.tolist() == [3.0, 3.0, 3.0]
    (same,), m = to_ras([vol], np.diag([0.7, 0.7, 2.5, 1.0]), np.array([1.0, 2.0, 3.0]))
    assert same is vol and m.tolist() == [1.0, 2.0, 3.0]


def test_an_axial_slice_is_radiological_anterior_up_and_windowed() -> None:
    vol = np.full((32, 32, 4), -600.0)  # lung level: mid grey
    vol[24:, 24:, 1] = 1000.0  # bright: the patient's right (high i) and anterior (high j), slice 1 only
    img = png(render(vol, ViewState(plane="axial", index=1, window="lung"), size=64))
    assert img.shape == (64, 64, 3)
    assert (img[:16, :16] == 255).all()  # top left of the screen: anterior, the patient's right
    assert (np.abs(img[40:, 40:] - 127) <= 1).all()
    other = png(render(vol, ViewState(plane="axial", index=2, window="lung"), size=64))
    assert (np.abs(other - 127) <= 1).all()
    # an index past the end shows the last slice rather than failing
    assert (png(render(vol, ViewState(index=99), size=64)) == png(render(vol, ViewState(index=3), size=64))).all()


def test_the_overlay_is_red_where_risk_rises_and_blue_where_it_falls() -> None:
    vol = np.full((16, 16, 3), -600.0)
    overlay = np.zeros_like(vol)
    overlay[:8, :, 1] = 2.0  # the patient's left half (screen right) raised the risk
    overlay[8:, :, 1] = -1.0  # the right half, half as strongly, lowered it
    img = png(render(vol, ViewState(index=1, opacity=1.0), overlay, size=32))
    assert tuple(img[16, 28]) == (255, 0, 0)  # the strongest attribution, full opacity: pure red
    # half strength: colour (0, 0, 0.5) at opacity 0.5 over grey 0.5
    assert np.abs(img[16, 4] - [63, 63, 127]).max() <= 1
    plain = png(render(vol, ViewState(index=1, opacity=0.0), overlay, size=32))
    assert (np.abs(plain - 127) <= 1).all()


def test_the_nodule_ring_shows_on_slices_near_the_marker_only() -> None:
    vol = np.full((32, 32, 20), -600.0)
    marker = np.array([16.0, 16.0, 10.0])

    def yellow(state: ViewState) -> int:
        return int((png(render(vol, state, None, marker, size=128)) == YELLOW).all(-1).sum())

    assert yellow(ViewState(index=10)) > 50 and yellow(ViewState(index=14)) > 50
    assert yellow(ViewState(index=16)) == 0  # six slices away
    assert yellow(ViewState(index=10, marker=False)) == 0
    assert yellow(ViewState(plane="coronal", index=16)) > 50


def test_the_viewer_starts_at_the_nodule_and_recentres_on_a_new_plane() -> None:
    vol = np.zeros((30, 40, 20))
    viewer = CTViewer(vol, None, np.array([5.0, 25.0, 12.0]))
    assert viewer.slider.value == 12 and viewer.slider.max == 19
    assert bytes(viewer.image.value).startswith(b"\x89PNG")
    viewer.plane.value = "coronal"
    assert (viewer.slider.max, viewer.slider.value, viewer.state.index) == (39, 25, 25)
    viewer.plane.value = "sagittal"
    assert (viewer.slider.max, viewer.slider.value) == (29, 5)
    viewer.slider.value = 7
    assert viewer.state.index == 7
    before = bytes(viewer.image.value)
    viewer.window.value = "bone"
    assert viewer.state.window == "bone" and bytes(viewer.image.value) != before
    centred = CTViewer(vol)  # no marker: the middle slice
    assert centred.slider.value == 10
