"""The CT viewer's logic without a browser: the display window, the attribution placed in the series grid, the
flip to RAS and the frame in mm, and what a rendered slice shows (physical aspect, orientation and its letters,
pixel <-> voxel <-> mm mapping, HU read-out, caliper, zoom, outline, overlay strength, jump to the peak)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from workbench.data.transforms import lps_to_ras, ras_to_voxel
from workbench.ui.ct_viewer import (
    CALIPER_RGB,
    LABEL_RGB,
    LABELS,
    MARKER_RGB,
    OUTLINE_RGB,
    PLANES,
    SLICE_AXIS,
    WINDOWS,
    CTViewer,
    Scene,
    ViewerConfig,
    ViewState,
    place_patch,
    plane_geometry,
    probe,
    ras_frame,
    render,
    render_rgb,
    to_ras,
    window,
)

ANISO = (0.7, 0.7, 2.5)  # mm: thin in-plane pixels, thick slices


def png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


def count(img: np.ndarray, rgb: tuple[int, int, int], tol: int = 0) -> int:
    """Pixels of colour ``rgb`` (within ``tol`` per channel: text is anti-aliased)."""
    return int((np.abs(img.astype(int) - rgb) <= tol).all(-1).sum())


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


def test_the_ras_frame_puts_the_marker_and_a_mask_at_their_patient_position() -> None:
    """The loader's series (LPS-ordered, RAS affine) -> the viewer's RAS array: same LPS mm for every voxel."""
    shape = (40, 30, 20)
    affine = np.array([[-0.7, 0, 0, 14.0], [0, -0.7, 0, 10.0], [0, 0, 2.5, -300.0], [0, 0, 0, 1.0]])
    lps = (-3.5, -2.1, -270.0)
    marker = ras_to_voxel(affine, lps_to_ras(lps))
    mask = np.zeros(shape, bool)
    mask[tuple(np.round(marker).astype(int))] = True  # as measure_nodule's full_mask: the loader's (I, J, K) order
    (vol, m), marker_ras = to_ras([np.zeros(shape), mask], affine, marker)
    spacing, origin = ras_frame(affine, shape)
    assert spacing == pytest.approx((0.7, 0.7, 2.5))
    scene = Scene(vol, spacing, origin, mask=m, marker_vox=marker_ras)
    np.testing.assert_allclose(scene.voxel_to_lps(marker_ras), lps, atol=1e-9)
    np.testing.assert_allclose(scene.voxel_to_lps(np.argwhere(m)[0]), lps, atol=0.36)  # its voxel centre
    np.testing.assert_allclose(scene.lps_to_voxel(lps), marker_ras, atol=1e-9)
    with pytest.raises(ValueError, match="axis-aligned"):
        ras_frame(np.array([[0, 0.7, 0, 0], [0.7, 0, 0, 0], [0, 0, 2.5, 0], [0, 0, 0, 1.0]]), shape)


@pytest.mark.parametrize("plane", PLANES)
def test_every_plane_keeps_its_physical_aspect_ratio(plane: str) -> None:
    vol = np.zeros((40, 50, 30))
    geo = plane_geometry(vol.shape, ANISO, ViewState(plane=plane), 384)
    img = render_rgb(Scene(vol, ANISO), ViewState(plane=plane))
    h_axis, v_axis = {"axial": (0, 1), "coronal": (0, 2), "sagittal": (1, 2)}[plane]
    physical = vol.shape[v_axis] * ANISO[v_axis] / (vol.shape[h_axis] * ANISO[h_axis])
    assert img.shape[:2] == (geo.height, geo.width) and max(img.shape[:2]) == 384
    assert abs(img.shape[0] / img.shape[1] / physical - 1) < 0.05
    if plane == "coronal":  # 75 mm of slices over 28 mm of width: a tall image, not a square
        assert img.shape[0] / img.shape[1] == pytest.approx(75 / 28, rel=0.05)
    viewer = CTViewer(vol, spacing_mm=ANISO)
    viewer.plane.value = plane
    shown = png(bytes(viewer.image.value))
    assert (int(viewer.image.height), int(viewer.image.width)) == shown.shape[:2] == img.shape[:2]


def test_an_axial_slice_is_radiological_anterior_up_and_windowed() -> None:
    vol = np.full((32, 32, 4), -600.0)  # lung level: mid grey
    vol[16:, 16:, 1] = 1000.0  # bright: the patient's right (high i) and anterior (high j), slice 1 only
    img = render_rgb(Scene(vol), ViewState(plane="axial", index=1, window="lung"), ViewerConfig(size=128))
    assert img.shape == (128, 128, 3)
    assert (img[20:50, 20:50] == 255).all()  # top left of the screen: anterior, the patient's right
    assert (np.abs(img[75:110, 75:110].astype(int) - 128) <= 1).all()
    other = render_rgb(Scene(vol), ViewState(plane="axial", index=2), ViewerConfig(size=128))
    assert (np.abs(other[20:50, 20:50].astype(int) - 128) <= 1).all()
    # an index past the end shows the last slice rather than failing
    assert (render_rgb(Scene(vol), ViewState(index=99)) == render_rgb(Scene(vol), ViewState(index=3))).all()


def test_coronal_and_sagittal_put_superior_up_and_right_or_anterior_left() -> None:
    vol = np.full((32, 32, 32), -600.0)
    vol[20:, 20:, 20:] = 1000.0  # right, anterior, superior corner
    cor = render_rgb(Scene(vol), ViewState(plane="coronal", index=25), ViewerConfig(size=128))
    sag = render_rgb(Scene(vol), ViewState(plane="sagittal", index=25), ViewerConfig(size=128))
    for img in (cor, sag):
        assert (img[20:40, 20:40] == 255).all() and (np.abs(img[80:110, 80:110].astype(int) - 128) <= 1).all()


@pytest.mark.parametrize("plane", PLANES)
def test_orientation_letters_sit_on_the_four_edges(plane: str) -> None:
    assert LABELS == {"axial": ("A", "P", "R", "L"), "coronal": ("S", "I", "R", "L"), "sagittal": ("S", "I", "A", "P")}
    img = render_rgb(Scene(np.full((40, 40, 40), -1000.0)), ViewState(plane=plane))
    h, w = img.shape[:2]
    edges = {"top": img[:24, w // 2 - 12:w // 2 + 12], "bottom": img[h - 24:, w // 2 - 12:w // 2 + 12],
             "left": img[h // 2 - 12:h // 2 + 12, :24], "right": img[h // 2 - 12:h // 2 + 12, w - 24:]}
    for name, part in edges.items():
        assert count(part, LABEL_RGB, tol=60) >= 5, name
    assert count(img[h // 4:3 * h // 4, w // 4:3 * w // 4], LABEL_RGB, tol=60) == 0  # nothing over the middle


@pytest.mark.parametrize("plane", PLANES)
@pytest.mark.parametrize("zoom", [1.0, 2.5])
def test_pixel_to_mm_to_pixel_round_trips(plane: str, zoom: float) -> None:
    scene = Scene(np.zeros((60, 50, 40)), ANISO, (-20.0, 15.0, -300.0), marker_vox=np.array([40.0, 10.0, 30.0]))
    state = ViewState(plane=plane, index=17, zoom=zoom)
    geo = plane_geometry(scene.hu.shape, scene.spacing_mm, state, 384, scene.marker_vox)
    rng = np.random.default_rng(0)
    for x, y in rng.uniform(0, [geo.width - 1, geo.height - 1], size=(50, 2)):
        vox = geo.to_voxel(x, y)
        assert vox[SLICE_AXIS[plane]] == 17
        mm = scene.voxel_to_lps(vox)
        assert geo.to_pixel(scene.lps_to_voxel(mm)) == pytest.approx((x, y), abs=1e-9)
    # a pixel step is mm_per_px of patient space along both screen axes (square pixels)
    a, b, c = (scene.voxel_to_lps(geo.to_voxel(*p)) for p in ((10, 10), (11, 10), (10, 11)))
    assert np.linalg.norm(b - a) == pytest.approx(geo.mm_per_px) and np.linalg.norm(c - a) == pytest.approx(geo.mm_per_px)


def test_the_hu_read_out_is_the_voxel_under_the_pixel_shown() -> None:
    rng = np.random.default_rng(1)
    vol = rng.integers(-150, 230, size=(30, 40, 12)).astype(float)  # inside the mediastinal window: every HU shows
    scene = Scene(vol, ANISO, (5.0, -7.0, 100.0))
    for plane in PLANES:
        state = ViewState(plane=plane, index=5, window="mediastinum", zoom=2.0)
        img = render_rgb(scene, state)
        geo = plane_geometry(vol.shape, ANISO, state)
        for x, y in rng.integers(30, [geo.width - 30, geo.height - 30], size=(40, 2)):
            p = probe(scene, geo, x, y)
            assert p.hu == vol[p.voxel]
            assert img[y, x, 0] == int(window(np.array(p.hu), *WINDOWS["mediastinum"]) * 255 + 0.5)
            np.testing.assert_allclose(p.lps_mm, scene.voxel_to_lps(np.array(p.voxel)))
            assert f"{p.hu:.0f} HU" in p.text()
    viewer = CTViewer(vol, spacing_mm=ANISO, origin_ras=(5.0, -7.0, 100.0))
    p = viewer.probe(100, 200)
    assert p.hu == vol[p.voxel] and f"{p.hu:.0f} HU" in viewer.readout.value and "(LPS)" in viewer.readout.value


def test_the_slice_position_is_in_patient_mm() -> None:
    viewer = CTViewer(np.zeros((20, 30, 40)), spacing_mm=ANISO, origin_ras=(10.0, 20.0, -300.0))
    viewer.slider.value = 4
    assert "z = -290.0 mm (LPS)" in viewer.position.value  # -300 + 4 x 2.5
    viewer.plane.value = "coronal"
    viewer.slider.value = 10
    assert "y = -27.0 mm (LPS)" in viewer.position.value  # LPS y = -(20 + 10 x 0.7)
    viewer.plane.value = "sagittal"
    viewer.slider.value = 0
    assert "x = -10.0 mm (LPS)" in viewer.position.value


@pytest.mark.parametrize("zoom", [1.0, 3.0])
def test_the_caliper_measures_a_known_distance_within_one_pixel(zoom: float) -> None:
    """Two bright voxels 8 x 0.7 mm apart left-right and 6 x 2.5 mm apart up-down on a coronal slice: clicked where
    they show on the screen (whole pixels, as a mouse gives), the caliper reads their distance."""
    vol = np.full((40, 30, 30), -1000.0)
    a, b = np.array([16, 12, 11]), np.array([24, 12, 17])
    vol[tuple(a)] = vol[tuple(b)] = 1000.0
    truth = float(np.linalg.norm((b - a) * np.array(ANISO)))  # 16.0 mm
    viewer = CTViewer(vol, None, np.array([20.0, 12.0, 14.0]), spacing_mm=ANISO)
    viewer.plane.value = "coronal"
    viewer.zoom.value = zoom
    img = png(bytes(viewer.image.value))
    geo = viewer.geometry()
    bright = (img == 255).all(-1)
    from scipy import ndimage

    labels, n = ndimage.label(bright)
    assert n == 2
    dots = sorted((round(x), round(y)) for y, x in ndimage.center_of_mass(bright, labels, [1, 2]))
    mm = viewer.measure(dots[0], dots[1])
    assert abs(mm - truth) <= geo.mm_per_px  # within one screen pixel (0.2 mm at zoom 1)
    assert f"caliper: {mm:.1f} mm" in viewer.caliper_text.value
    assert count(png(bytes(viewer.image.value)), CALIPER_RGB) > 20  # the line is drawn
    assert viewer.click(5, 5) is None and len(viewer.state.caliper) == 1  # a third click starts again
    viewer.plane.value = "axial"
    assert viewer.state.caliper == () and viewer.caliper_text.value == ""


def test_zoom_magnifies_about_the_nodule() -> None:
    vol = np.zeros((60, 60, 10))
    viewer = CTViewer(vol, None, np.array([20.0, 40.0, 5.0]), spacing_mm=(1.0, 1.0, 3.0))
    before = viewer.geometry()
    viewer.zoom.value = 2.0
    after = viewer.geometry()
    assert after.mm_per_px == pytest.approx(before.mm_per_px / 2) and (after.width, after.height) == (384, 384)
    x, y = after.to_pixel(viewer.marker)
    assert abs(x - 192) < 2 and abs(y - 192) < 2  # the nodule in the middle of the zoomed view
    viewer.zoom.value = 4.0  # near the edge: the view stays inside the volume
    geo = viewer.geometry()
    assert geo.to_voxel(0, 0)[0] <= 59.5 and geo.to_voxel(geo.width - 1, 0)[0] >= -0.5


def test_the_overlay_is_red_where_risk_rises_blue_where_it_falls_and_scaled_per_slice() -> None:
    vol = np.full((16, 16, 3), -600.0)
    overlay = np.zeros_like(vol)
    overlay[:8, :, 1] = 2.0  # the patient's left half (screen right) raised the risk
    overlay[8:, :, 1] = -1.0  # the right half, half as strongly, lowered it
    img = render_rgb(Scene(vol, overlay=overlay), ViewState(index=1, opacity=1.0), ViewerConfig(size=128))
    assert tuple(img[64, 100]) == (255, 0, 0)  # the strongest attribution, full opacity: pure red
    # half strength: alpha 0.5 ** gamma 0.5 = 0.71 of blue over grey 0.5
    assert np.abs(img[64, 30].astype(int) - [37, 37, 218]).max() <= 1
    plain = render_rgb(Scene(vol, overlay=overlay), ViewState(index=1, opacity=0.0), ViewerConfig(size=128))
    assert (np.abs(plain[30:100, 30:100].astype(int) - 128) <= 1).all()


def test_a_faint_attribution_is_clearly_visible_on_the_nodule_slice() -> None:
    """The issue's complaint: 64 pixels changed by at most 21/765 on the nodule's slice, its peak 5 slices away.
    Scaled per slice, the slice through the nodule shows its own attribution strongly."""
    vol = np.full((64, 64, 40), -800.0)
    i, j, k = np.meshgrid(np.arange(64), np.arange(64), np.arange(40), indexing="ij")
    overlay = 1e-4 * np.exp(-((i - 32) ** 2 + (j - 32) ** 2) / 20.0 - (k - 25) ** 2 / 8.0)  # peak at k = 25
    scene = Scene(vol, (0.7, 0.7, 2.5), overlay=overlay)
    state = ViewState(index=20)  # 5 slices from the peak: 4 % of the peak's strength
    on, off = render_rgb(scene, state).astype(int), render_rgb(scene, ViewState(index=20, opacity=0.0)).astype(int)
    change = np.abs(on - off).sum(-1)
    assert change.max() >= 200  # of 765
    assert (change > 60).sum() >= 400  # a visible blob, not a few pixels
    far = render_rgb(scene, ViewState(index=2)).astype(int)  # no attribution to speak of: stays grey
    assert np.abs(far - render_rgb(scene, ViewState(index=2, opacity=0.0)).astype(int)).sum(-1).max() <= 3


def test_jump_to_peak_goes_to_the_slice_of_largest_attribution() -> None:
    vol = np.zeros((30, 40, 20))
    overlay = np.zeros_like(vol)
    overlay[12, 30, 7] = -5.0  # the largest |attribution|, lowering the risk
    overlay[5, 25, 12] = 3.0
    viewer = CTViewer(vol, overlay, np.array([5.0, 25.0, 12.0]))
    assert viewer.slider.value == 12
    assert viewer.jump_to_peak() == 7 and viewer.state.index == 7
    viewer.plane.value = "coronal"
    assert viewer.jump_to_peak() == 30 and viewer.state.index == 30
    viewer.plane.value = "sagittal"
    viewer.opacity.value = 0.0
    assert viewer.jump_to_peak() == 12 and viewer.opacity.value > 0  # the overlay is switched back on
    assert CTViewer(vol).c.peak.disabled


def test_the_nodule_ring_shows_on_slices_near_the_marker_only() -> None:
    scene = Scene(np.full((32, 32, 20), -600.0), (1.0, 1.0, 2.0), marker_vox=np.array([16.0, 16.0, 10.0]))

    def yellow(state: ViewState) -> int:
        return count(render_rgb(scene, state), MARKER_RGB)

    assert yellow(ViewState(index=10)) > 50 and yellow(ViewState(index=12)) > 50  # 4 mm away
    assert yellow(ViewState(index=13)) == 0  # 6 mm away
    assert yellow(ViewState(index=10, marker=False)) == 0
    assert yellow(ViewState(plane="coronal", index=16)) > 50


def test_the_segmentation_outline_surrounds_the_mask_on_its_slices() -> None:
    vol = np.full((50, 50, 20), -800.0)
    i, j, k = np.meshgrid(np.arange(50), np.arange(50), np.arange(20), indexing="ij")
    mask = ((i - 30) ** 2 + (j - 20) ** 2 <= 16) & (np.abs(k - 8) <= 1)
    scene = Scene(vol, ANISO, mask=mask)
    img = render_rgb(scene, ViewState(index=8))
    geo = plane_geometry(vol.shape, ANISO, ViewState(index=8))
    ring = np.argwhere((img == OUTLINE_RGB).all(-1))
    assert len(ring) > 50
    np.testing.assert_allclose(ring.mean(0)[::-1], geo.to_pixel(np.array([30.0, 20.0, 8.0])), atol=1.5)
    assert count(render_rgb(scene, ViewState(index=12)), OUTLINE_RGB) == 0
    assert count(render_rgb(scene, ViewState(index=8, outline=False)), OUTLINE_RGB) == 0
    viewer = CTViewer(vol, None, np.array([30.0, 20.0, 8.0]), spacing_mm=ANISO, mask=mask)
    assert count(png(bytes(viewer.image.value)), OUTLINE_RGB) == len(ring)


def test_the_viewer_starts_at_the_nodule_and_recentres_on_a_new_plane() -> None:
    vol = np.zeros((30, 40, 20))
    viewer = CTViewer(vol, None, np.array([5.0, 25.0, 11.6]))
    assert viewer.slider.value == 12 and viewer.slider.max == 19  # the slice that holds the marked centre
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
    assert render(Scene(vol), ViewState(index=10)) == bytes(centred.image.value)  # the same picture as render()


def test_mouse_events_read_out_the_cursor_and_drive_the_caliper() -> None:
    """What ipyevents sends (image pixels in ``dataX``/``dataY``) reaches the read-out and the caliper."""
    vol = np.arange(20 * 30 * 10, dtype=float).reshape(20, 30, 10)
    viewer = CTViewer(vol, spacing_mm=ANISO)
    assert len(viewer.events) == 2  # cursor (throttled) and clicks (never dropped)
    viewer.handle_mouse({"type": "mousemove", "dataX": 50, "dataY": 60})
    p = probe(viewer.scene, viewer.geometry(), 50, 60)
    assert f"{p.hu:.0f} HU" in viewer.readout.value
    viewer.handle_mouse({"type": "mouseleave"})
    assert viewer.readout.value == ""
    viewer.c.caliper.value = True
    viewer.handle_mouse({"type": "click", "dataX": 10, "dataY": 100})
    viewer.handle_mouse({"type": "click", "dataX": 10 + 100, "dataY": 100})
    assert viewer.caliper_text.value == f"caliper: {100 * viewer.geometry().mm_per_px:.1f} mm"
    viewer.handle_mouse({"type": "click", "dataX": 9999, "dataY": 100})  # outside the image: ignored
    assert len(viewer.state.caliper) == 2


def test_the_measured_nodules_mask_lands_on_the_nodule_in_the_viewer() -> None:
    """End to end with a phantom chest: ``measure_nodule``'s mask (the loader's I, J, K order) flipped with the
    volume by ``to_ras`` sits on the nodule in patient mm, and its outline is drawn around the marked centre."""
    from workbench.cohort.phantom import render_chest
    from workbench.cohort.spec import NoduleSpec, ScannerProfile
    from workbench.runtime.measure import measure_nodule

    ct = render_chest([NoduleSpec(9.0, "solid", False, "RUL", is_index=True)], False,
                      ScannerProfile("X", "Y", 1.3, 2.0, 15.0, 0.7, 0.0), np.random.default_rng(3))
    hu = np.transpose(ct.hu, (2, 1, 0)).astype(np.float32)  # as load_ct_series gives it: (I, J, K), RAS affine
    affine = np.diag([-ct.pixel_spacing_mm, -ct.pixel_spacing_mm, ct.slice_spacing_mm, 1.0])
    affine[:3, 3] = [-ct.origin_lps[0], -ct.origin_lps[1], ct.origin_lps[2]]
    centre = ct.nodule_centers_lps[0]
    m = measure_nodule(hu, affine, centre, where="phantom")
    marker = ras_to_voxel(affine, lps_to_ras(centre))
    (vol, mask), marker = to_ras([hu, m.full_mask(hu.shape)], affine, marker)
    spacing, origin = ras_frame(affine, hu.shape)
    viewer = CTViewer(vol, None, np.round(marker), spacing_mm=spacing, origin_ras=origin, mask=mask)
    scene = viewer.scene
    np.testing.assert_allclose(scene.voxel_to_lps(np.argwhere(mask).mean(0)), centre, atol=max(spacing))
    assert vol[mask].mean() > -200 and vol[mask].mean() > np.median(vol[~mask]) + 300  # nodule, not lung
    img = png(bytes(viewer.image.value))
    ring = np.argwhere((img == OUTLINE_RGB).all(-1))
    assert len(ring) > 20
    np.testing.assert_allclose(ring.mean(0)[::-1], viewer.geometry().to_pixel(marker), atol=3)


def test_a_click_in_mark_mode_marks_the_nodule_at_the_pixels_patient_position() -> None:
    """"mark nodule": a click moves the marker to the pixel's voxel on the slice shown and hands its LPS position to
    the callbacks; the caliper and the mark mode exclude each other; outside the image nothing is marked."""
    vol = np.zeros((20, 30, 10))
    viewer = CTViewer(vol, spacing_mm=ANISO, origin_ras=(10.0, -20.0, 30.0))
    got: list[tuple[float, float, float]] = []
    viewer.on_mark(got.append)
    viewer.c.caliper.value = True
    viewer.c.mark.value = True
    assert not viewer.c.caliper.value
    viewer.handle_mouse({"type": "click", "dataX": 40, "dataY": 70})
    vox = viewer.geometry().to_voxel(40, 70)
    assert len(got) == 1 and got[0] == viewer.marked_lps
    np.testing.assert_allclose(got[0], viewer.scene.voxel_to_lps(vox))
    np.testing.assert_allclose(viewer.scene.marker_vox, vox)
    x, y = viewer.geometry().to_pixel(viewer.scene.marker_vox)
    assert (round(x), round(y)) == (40, 70)  # the ring is drawn where the click was
    viewer.handle_mouse({"type": "click", "dataX": 9999, "dataY": 10})
    assert len(got) == 1
    viewer.c.caliper.value = True
    assert not viewer.c.mark.value
    viewer.handle_mouse({"type": "click", "dataX": 10, "dataY": 10})
    assert len(got) == 1 and len(viewer.state.caliper) == 1
