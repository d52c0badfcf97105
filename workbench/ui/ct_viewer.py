"""The CT viewer of the case-review notebook: three planes in mm, HU under the cursor, zoom, a caliper, the nodule's
outline and an attribution overlay a reader can see.

Rendering is plain numpy + PIL into an ``ipywidgets.Image`` (PNG bytes), so the picture works in any JupyterLab
without a front-end extension of its own, and a headless test reads the same bytes. Mouse events (cursor read-out,
caliper clicks) come from ``ipyevents`` when it is installed; without it the same actions are methods
(``CTViewer.probe``, ``CTViewer.click``) and the picture still works.

Geometry, the part a radiologist checks first:

- The volume is RAS-ordered (``to_ras``): I towards the patient's right, J anterior, K superior, with its voxel
  spacing and the RAS position of voxel (0, 0, 0) (``ras_frame``). A screen pixel is square and covers the same
  millimetres along both screen axes, so a coronal or sagittal slice of 2.5 mm slices keeps its physical shape
  instead of being squashed into a square (``PlaneGeometry``).
- Radiological convention: axial A up, the patient's right on the screen's left; coronal S up, R left; sagittal
  S up, A left. The edges carry the letters.
- Positions are given in patient millimetres, LPS as DICOM states them (x towards the left, y posterior, z
  superior), so they can be compared with the manifest's nodule centre and with a PACS.
- ``PlaneGeometry.to_voxel`` / ``to_pixel`` are the one mapping between screen pixels and voxels: the renderer samples
  with it, the cursor read-out and the caliper invert it, and the tests check it without a browser.

The attribution map of the nodule patch (isotropic, ``patch_spacing_mm``) is placed into the series' voxel grid at the
nodule centre, resampled to the series' spacing: the patch is cut from the same axis-aligned grid, so no rotation is
needed. Its colour is scaled per displayed slice, so the slice a reader is on shows where the attribution is strong
on it, and "jump to peak" goes to the slice where it is strongest overall.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np

WINDOWS = {"lung": (-600.0, 1500.0), "mediastinum": (40.0, 400.0), "bone": (400.0, 1800.0)}  # (level, width) HU
PLANES = ("axial", "coronal", "sagittal")
SLICE_AXIS = {"axial": 2, "coronal": 1, "sagittal": 0}  # the RAS array axis a plane's slices are taken along
# (horizontal, vertical) array axes on screen; both run backwards on screen: the high index (R, A or S) is at the
# left or top edge, which is the radiological convention for all three planes.
SCREEN_AXES = {"axial": (0, 1), "coronal": (0, 2), "sagittal": (1, 2)}
LABELS = {"axial": ("A", "P", "R", "L"), "coronal": ("S", "I", "R", "L"), "sagittal": ("S", "I", "A", "P")}  # top,
# bottom, left, right edge
LPS_NAMES = ("x", "y", "z")
LPS_SIGN = np.array([-1.0, -1.0, 1.0])  # RAS mm -> LPS mm

MARKER_RGB = (255, 220, 0)
OUTLINE_RGB = (0, 230, 118)
CALIPER_RGB = (0, 200, 255)
LABEL_RGB = (255, 150, 0)


@dataclass(frozen=True)
class ViewerConfig:
    """Display settings that are a matter of taste rather than geometry."""

    size: int = 384  # pixels of the image's longer side at zoom 1
    max_zoom: float = 4.0
    ring_mm: float = 6.0  # the nodule ring shows on slices within this distance of the marked centre
    ring_px: int = 14
    overlay_floor: float = 0.02  # a slice is coloured against max(its own peak, floor x the volume's peak)
    overlay_gamma: float = 0.5  # < 1 widens the visible area around the peak
    opacity: float = 0.6
    font_px: int = 14


@dataclass(frozen=True, eq=False)
class Scene:
    """What a viewer shows: an RAS-ordered (I, J, K) HU volume with its geometry and the layers drawn over it."""

    hu: np.ndarray
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin_ras: tuple[float, float, float] = (0.0, 0.0, 0.0)  # RAS mm of voxel (0, 0, 0)
    overlay: np.ndarray | None = None  # attribution, same shape: > 0 raised the risk
    mask: np.ndarray | None = None  # bool, same shape: the measured nodule
    marker_vox: np.ndarray | None = None  # the marked nodule centre, continuous voxel (I, J, K)

    def voxel_to_lps(self, vox: np.ndarray) -> np.ndarray:
        """Continuous voxel (I, J, K) -> patient position, LPS mm."""
        return (np.asarray(self.origin_ras) + np.asarray(vox, float) * np.asarray(self.spacing_mm)) * LPS_SIGN

    def lps_to_voxel(self, lps: np.ndarray) -> np.ndarray:
        return (np.asarray(lps, float) * LPS_SIGN - np.asarray(self.origin_ras)) / np.asarray(self.spacing_mm)

    @cached_property
    def overlay_peak(self) -> float:
        """The volume's largest |attribution| (once: the renderer needs it on every slice)."""
        return float(np.abs(self.overlay).max()) if self.overlay is not None else 0.0

    def nearest(self, vox: np.ndarray) -> tuple[int, int, int]:
        """The voxel holding a continuous voxel position (clipped to the volume)."""
        i = np.clip(np.floor(np.asarray(vox, float) + 0.5), 0, np.array(self.hu.shape) - 1).astype(int)
        return int(i[0]), int(i[1]), int(i[2])


@dataclass
class ViewState:
    plane: str = "axial"
    index: int = 0
    window: str = "lung"
    opacity: float = 0.6
    marker: bool = True
    outline: bool = True
    zoom: float = 1.0
    caliper: tuple[tuple[float, float, float], ...] = ()  # up to two voxel positions (I, J, K)


@dataclass(frozen=True)
class PlaneGeometry:
    """Screen pixels <-> voxels of one rendered plane: square pixels of ``mm_per_px`` whatever the voxel spacing.

    "Display mm" run from the plane's left (top) edge, the patient's R (A or S) side, to the right (bottom)."""

    plane: str
    index: int  # the slice shown
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    width: int
    height: int
    mm_per_px: float
    offset_mm: tuple[float, float]  # display mm at the image's left and top edge (> 0 when zoomed)

    @property
    def axes(self) -> tuple[int, int, int]:
        h, v = SCREEN_AXES[self.plane]
        return h, v, SLICE_AXIS[self.plane]

    def _to_index(self, pixel: np.ndarray, a: int, off: float) -> np.ndarray:
        """Pixel-centre coordinate along one screen axis -> continuous voxel index along array axis ``a``."""
        display_mm = off + (np.asarray(pixel, float) + 0.5) * self.mm_per_px
        return self.shape[a] - 0.5 - display_mm / self.spacing_mm[a]

    def _to_pixel(self, index: float, a: int, off: float) -> float:
        display_mm = (self.shape[a] - 0.5 - index) * self.spacing_mm[a]
        return (display_mm - off) / self.mm_per_px - 0.5

    def to_voxel(self, x: float, y: float) -> np.ndarray:
        """Screen pixel (x right, y down; integers are pixel centres) -> continuous voxel (I, J, K) on this slice."""
        h, v, s = self.axes
        out = np.zeros(3)
        out[h] = self._to_index(np.asarray(x), h, self.offset_mm[0])
        out[v] = self._to_index(np.asarray(y), v, self.offset_mm[1])
        out[s] = self.index
        return out

    def to_pixel(self, vox: np.ndarray) -> tuple[float, float]:
        """Continuous voxel (I, J, K) -> screen pixel of its in-plane position (the slice coordinate is ignored)."""
        h, v, _ = self.axes
        return (self._to_pixel(float(vox[h]), h, self.offset_mm[0]),
                self._to_pixel(float(vox[v]), v, self.offset_mm[1]))

    def sample_indices(self) -> tuple[np.ndarray, np.ndarray]:
        """For each image column and row, the voxel index along the horizontal and vertical array axis."""
        h, v, _ = self.axes
        cols = self._to_index(np.arange(self.width), h, self.offset_mm[0])
        rows = self._to_index(np.arange(self.height), v, self.offset_mm[1])
        return (np.clip(np.floor(cols + 0.5), 0, self.shape[h] - 1).astype(int),
                np.clip(np.floor(rows + 0.5), 0, self.shape[v] - 1).astype(int))


def plane_geometry(shape: tuple[int, ...], spacing_mm: tuple[float, float, float], state: ViewState, size: int = 384,
                   centre_vox: np.ndarray | None = None) -> PlaneGeometry:
    """The image of ``state``'s plane: its longer physical side ``size`` pixels, the other in proportion; zoomed
    ``state.zoom`` times about ``centre_vox`` (in-plane; the plane's centre if None), kept inside the volume."""
    h, v = SCREEN_AXES[state.plane]
    s = SLICE_AXIS[state.plane]
    shp = (int(shape[0]), int(shape[1]), int(shape[2]))
    sp = (float(spacing_mm[0]), float(spacing_mm[1]), float(spacing_mm[2]))
    extent = (shp[h] * sp[h], shp[v] * sp[v])
    base = max(extent) / size
    width, height = max(1, round(extent[0] / base)), max(1, round(extent[1] / base))
    mm_per_px = base / max(1.0, float(state.zoom))
    offset = [0.0, 0.0]
    if state.zoom > 1.0:
        for n, (a, pixels) in enumerate(((h, width), (v, height))):
            centre = (shp[a] / 2.0 if centre_vox is None else shp[a] - 0.5 - float(centre_vox[a])) * sp[a]
            view = pixels * mm_per_px
            offset[n] = max(0.0, min(centre - view / 2.0, extent[n] - view))
    index = int(np.clip(state.index, 0, shp[s] - 1))
    return PlaneGeometry(state.plane, index, shp, sp, width, height, mm_per_px, (offset[0], offset[1]))


def window(hu: np.ndarray, level: float, width: float) -> np.ndarray:
    """HU -> [0, 1] for a display window."""
    return np.clip((hu - (level - width / 2.0)) / width, 0.0, 1.0)


def place_patch(attribution: np.ndarray, shape: tuple[int, int, int], centre_vox: np.ndarray,
                spacing_mm: tuple[float, float, float], patch_spacing_mm: float = 1.25) -> np.ndarray:
    """The patch attribution in the volume's voxel grid (zeros elsewhere), centred on ``centre_vox``."""
    from scipy import ndimage

    zoom = [patch_spacing_mm / s for s in spacing_mm]
    a = ndimage.zoom(attribution, zoom, order=1)
    out = np.zeros(shape, dtype=np.float32)
    start = np.round(np.asarray(centre_vox) - np.array(a.shape) / 2.0).astype(int)
    lo, hi = np.maximum(start, 0), np.minimum(start + np.array(a.shape), shape)
    if np.any(hi <= lo):
        return out
    src = tuple(slice(lo[i] - start[i], hi[i] - start[i]) for i in range(3))
    out[tuple(slice(lo[i], hi[i]) for i in range(3))] = a[src]
    return out


def _flipped_axes(affine: np.ndarray) -> list[int]:
    a = np.asarray(affine, dtype=float)[:3, :3]
    return [i for i in range(3) if a[int(np.abs(a[:, i]).argmax()), i] < 0]  # axis i runs against its RAS direction


def to_ras(arrays: list[np.ndarray], affine: np.ndarray, marker_vox: np.ndarray | None = None
           ) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Flip axis-aligned volumes (and a voxel point) so that each axis increases towards R, A, S."""
    flips = _flipped_axes(affine)
    out = [np.flip(x, axis=tuple(flips)).copy() if flips else x for x in arrays]
    if marker_vox is not None:
        marker_vox = np.array(marker_vox, dtype=float)
        for i in flips:
            marker_vox[i] = arrays[0].shape[i] - 1 - marker_vox[i]
    return out, marker_vox


def ras_frame(affine: np.ndarray, shape: tuple[int, ...]) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Spacing (mm along I, J, K) and RAS position of voxel (0, 0, 0) of the array ``to_ras`` makes of a volume of
    ``shape`` with this RAS ``affine``. The viewer needs I along R-L, J along A-P and K along S-I (an axial series);
    a permuted or oblique series is refused rather than shown with wrong labels."""
    a = np.asarray(affine, dtype=float)
    cols = a[:3, :3]
    norms = np.linalg.norm(cols, axis=0)
    if np.any(norms <= 0) or any(int(np.abs(cols[:, i]).argmax()) != i or abs(cols[i, i]) < 0.99 * norms[i]
                                 for i in range(3)):
        raise ValueError(f"the viewer shows axis-aligned axial series only (direction {cols.round(3).tolist()})")
    corner = np.array([shape[i] - 1 if i in _flipped_axes(a) else 0 for i in range(3)], dtype=float)
    origin = cols @ corner + a[:3, 3]
    return ((float(norms[0]), float(norms[1]), float(norms[2])),
            (float(origin[0]), float(origin[1]), float(origin[2])))


def slice_position_text(scene: Scene, plane: str, index: int) -> str:
    """Where a slice lies along its axis, patient mm (LPS), e.g. "axial 34/136 · z = -121.3 mm (LPS)"."""
    s = SLICE_AXIS[plane]
    vox = np.zeros(3)
    vox[s] = index
    mm = float(scene.voxel_to_lps(vox)[s])
    return f"{plane} {index + 1}/{scene.hu.shape[s]} · {LPS_NAMES[s]} = {mm:.1f} mm (LPS)"


def overlay_scale(overlay: np.ndarray, axis: int, index: int, floor: float = 0.02, peak: float | None = None) -> float:
    """The attribution that shows at full colour on one slice: its own peak, but at least ``floor`` of the volume's
    (``peak``, computed when not given), so a slice far from the nodule does not paint its noise at full strength."""
    peak = float(np.abs(overlay).max()) if peak is None else peak
    here = float(np.abs(np.take(overlay, index, axis=axis)).max())
    return max(here, floor * peak) or 1.0


def peak_slice(overlay: np.ndarray, plane: str) -> int:
    """The slice of ``plane`` through the voxel of largest |attribution|."""
    return int(np.unravel_index(int(np.abs(overlay).argmax()), overlay.shape)[SLICE_AXIS[plane]])


def caliper_mm(scene: Scene, points: tuple[tuple[float, float, float], ...]) -> float | None:
    """The distance between the caliper's two points, mm (None until both are set)."""
    if len(points) < 2:
        return None
    d = (np.asarray(points[1]) - np.asarray(points[0])) * np.asarray(scene.spacing_mm)
    return float(np.linalg.norm(d))


def _sampled(volume: np.ndarray, geo: PlaneGeometry) -> np.ndarray:
    """The displayed slice of ``volume`` sampled at the image's pixels, (height, width)."""
    cols, rows = geo.sample_indices()
    sl = np.take(volume, geo.index, axis=geo.axes[2])  # (h, v): h < v for every plane
    return sl[np.ix_(cols, rows)].T


def _font(px: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=px)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def _draw_labels(draw: Any, geo: PlaneGeometry, text: str, config: ViewerConfig) -> None:
    """Orientation letters at the four edges and the slice position in the lower left corner."""
    top, bottom, left, right = LABELS[geo.plane]
    font = _font(config.font_px)
    w, h, m = geo.width, geo.height, 3
    for label, (x, y, anchor) in ((top, (w / 2, m, "mt")), (bottom, (w / 2, h - m, "mb")),
                                  (left, (m, h / 2, "lm")), (right, (w - m, h / 2, "rm"))):
        draw.text((x, y), label, fill=LABEL_RGB, font=font, anchor=anchor, stroke_width=1, stroke_fill=(0, 0, 0))
    draw.text((m, h - m), text, fill=LABEL_RGB, font=_font(max(9, config.font_px - 3)), anchor="lb")


def render_rgb(scene: Scene, state: ViewState, config: ViewerConfig = ViewerConfig()) -> np.ndarray:
    """One slice as an (height, width, 3) uint8 image: windowed grey, attribution in red (raised the risk) / blue
    (lowered it), the nodule's outline, the marker ring, the caliper, orientation letters and the slice position."""
    from PIL import Image, ImageDraw
    from scipy import ndimage

    geo = plane_geometry(scene.hu.shape, scene.spacing_mm, state, config.size, scene.marker_vox)
    rgb = np.repeat(window(_sampled(scene.hu, geo), *WINDOWS[state.window])[..., None], 3, axis=2)
    if scene.overlay is not None and state.opacity > 0:
        lim = overlay_scale(scene.overlay, geo.axes[2], geo.index, config.overlay_floor, scene.overlay_peak)
        v = np.clip(_sampled(scene.overlay, geo) / lim, -1.0, 1.0)
        colour = np.stack([v > 0, np.zeros_like(v, dtype=bool), v < 0], axis=-1).astype(float)  # pure red / blue
        alpha = (state.opacity * np.abs(v) ** config.overlay_gamma)[..., None]
        rgb = rgb * (1 - alpha) + colour * alpha
    img = (rgb * 255 + 0.5).astype(np.uint8)
    if scene.mask is not None and state.outline:
        m = _sampled(scene.mask, geo).astype(bool)
        img[ndimage.binary_dilation(m, iterations=2) & ~m] = OUTLINE_RGB
    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    if scene.marker_vox is not None and state.marker:
        s = geo.axes[2]
        if abs(float(scene.marker_vox[s]) - geo.index) * scene.spacing_mm[s] < config.ring_mm:
            x, y = geo.to_pixel(scene.marker_vox)
            r = config.ring_px
            draw.ellipse([x - r, y - r, x + r, y + r], outline=MARKER_RGB, width=2)
    _draw_caliper(draw, geo, scene, state.caliper)
    _draw_labels(draw, geo, slice_position_text(scene, state.plane, geo.index), config)
    return np.asarray(pil)


def _draw_caliper(draw: Any, geo: PlaneGeometry, scene: Scene, points: tuple[tuple[float, float, float], ...]) -> None:
    pts = [geo.to_pixel(np.asarray(p)) for p in points]
    for x, y in pts:
        draw.line([x - 5, y, x + 5, y], fill=CALIPER_RGB, width=1)
        draw.line([x, y - 5, x, y + 5], fill=CALIPER_RGB, width=1)
    if len(pts) == 2:
        draw.line([pts[0], pts[1]], fill=CALIPER_RGB, width=1)
        mm = caliper_mm(scene, points)
        draw.text((pts[1][0] + 6, pts[1][1] + 6), f"{mm:.1f} mm", fill=CALIPER_RGB, font=_font(12))


def render(scene: Scene, state: ViewState, config: ViewerConfig = ViewerConfig()) -> bytes:
    """``render_rgb`` as PNG bytes, the ``ipywidgets.Image`` value: its pixel size is the displayed size."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(render_rgb(scene, state, config)).save(buf, format="PNG")
    return buf.getvalue()


@dataclass(frozen=True)
class Probe:
    """What is under the cursor: the voxel (RAS-ordered array index), its patient position and its value."""

    voxel: tuple[int, int, int]
    lps_mm: tuple[float, float, float]
    hu: float

    def text(self) -> str:
        x, y, z = self.lps_mm
        return f"x {x:.1f}, y {y:.1f}, z {z:.1f} mm (LPS) · {self.hu:.0f} HU"


def probe(scene: Scene, geo: PlaneGeometry, x: float, y: float) -> Probe:
    """The voxel at screen pixel (x, y) of a rendered plane, its LPS position (the voxel centre) and HU."""
    vox = scene.nearest(geo.to_voxel(x, y))
    lps = scene.voxel_to_lps(np.asarray(vox, float))
    return Probe(vox, (float(lps[0]), float(lps[1]), float(lps[2])), float(scene.hu[vox]))


@dataclass
class _Controls:
    """The viewer's ipywidgets, so ``CTViewer`` keeps to behaviour."""

    image: Any
    slider: Any
    plane: Any
    window: Any
    opacity: Any
    zoom: Any
    marker_box: Any
    outline_box: Any
    caliper: Any
    peak: Any
    position: Any
    readout: Any
    caliper_text: Any
    extra: list[Any] = field(default_factory=list)
    mark: Any = None  # "mark nodule": a click sets the nodule's centre (``CTViewer.on_mark``)


class CTViewer:
    """``CTViewer(volume_hu, overlay, marker_vox, spacing_mm=..., origin_ras=..., mask=...).widget``.

    ``volume_hu``, ``overlay`` and ``mask`` are RAS-ordered (``to_ras``), ``spacing_mm`` and ``origin_ras`` describe
    that array (``ras_frame``). Opens on the marked nodule's axial slice. Mouse: the read-out follows the cursor;
    with "caliper" on, two clicks measure a distance in mm (a third starts again); with "mark nodule" on, a click
    moves the nodule marker there and hands its patient position (LPS mm) to the ``on_mark`` callbacks."""

    def __init__(self, volume_hu: np.ndarray, overlay: np.ndarray | None = None,
                 marker_vox: np.ndarray | None = None, *, spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0),
                 origin_ras: tuple[float, float, float] = (0.0, 0.0, 0.0), mask: np.ndarray | None = None,
                 config: ViewerConfig = ViewerConfig()) -> None:
        self.volume, self.overlay, self.marker, self.mask = volume_hu, overlay, marker_vox, mask
        self.scene = Scene(volume_hu, tuple(float(s) for s in spacing_mm), tuple(float(o) for o in origin_ras),  # type: ignore[arg-type]
                           overlay, mask, marker_vox)
        self.config = config
        self._syncing = False
        self._mark_callbacks: list[Any] = []
        self.marked_lps: tuple[float, float, float] | None = None  # the last point marked by a click
        self.state = ViewState(index=self._centre("axial"), opacity=config.opacity)
        self.c = self._build()
        self.image, self.slider, self.plane, self.window = self.c.image, self.c.slider, self.c.plane, self.c.window
        self.opacity, self.marker_box, self.zoom = self.c.opacity, self.c.marker_box, self.c.zoom
        self.readout, self.caliper_text, self.position = self.c.readout, self.c.caliper_text, self.c.position
        self.events = self._mouse()
        self.widget = self._layout()
        self._changed()

    # --- construction -------------------------------------------------------------------------------------------
    def _centre(self, plane: str) -> int:
        """The slice a plane opens on: through the marked nodule, else the middle."""
        s = SLICE_AXIS[plane]
        if self.marker is not None:
            return int(np.clip(np.floor(float(self.marker[s]) + 0.5), 0, self.volume.shape[s] - 1))
        return self.volume.shape[s] // 2

    def _build(self) -> _Controls:
        import ipywidgets as w

        image = w.Image(format="png", layout=w.Layout(border="1px solid #444"))
        image.add_class("ct-image")
        slider = w.IntSlider(value=self.state.index, min=0, max=self.volume.shape[2] - 1, description="slice",
                             continuous_update=True, readout=False)
        slider.add_class("ct-slice-slider")
        c = _Controls(
            image=image, slider=slider,
            plane=w.ToggleButtons(options=list(PLANES), value="axial", description="plane"),
            window=w.Dropdown(options=list(WINDOWS), value="lung", description="window", layout=w.Layout(width="200px")),
            opacity=w.FloatSlider(value=self.config.opacity, min=0.0, max=1.0, step=0.05, description="overlay"),
            zoom=w.FloatSlider(value=1.0, min=1.0, max=self.config.max_zoom, step=0.5, description="zoom",
                               readout_format=".1f"),
            marker_box=w.Checkbox(value=True, description="nodule marker", indent=False),
            outline_box=w.Checkbox(value=True, description="outline", indent=False,
                                   disabled=self.mask is None),
            caliper=w.ToggleButton(value=False, description="caliper", icon="arrows-h",
                                   tooltip="click two points on the image to measure in mm"),
            peak=w.Button(description="jump to peak", disabled=self.overlay is None or not np.any(self.overlay),
                          tooltip="the slice where |attribution| is largest"),
            position=w.HTML(), readout=w.HTML(), caliper_text=w.HTML())
        c.position.add_class("ct-position")
        c.readout.add_class("ct-readout")
        c.caliper_text.add_class("ct-caliper")
        c.caliper.add_class("ct-caliper-button")
        c.peak.add_class("ct-peak-button")
        c.plane.add_class("ct-plane")
        c.zoom.add_class("ct-zoom")
        for ctrl in (c.slider, c.plane, c.window, c.opacity, c.zoom, c.marker_box, c.outline_box):
            ctrl.observe(self._changed, names="value")
        c.mark = w.ToggleButton(value=False, description="mark nodule", icon="crosshairs",
                                tooltip="click the nodule's centre on the image")
        c.mark.add_class("ct-mark-button")
        c.caliper.observe(self._caliper_toggled, names="value")
        c.mark.observe(self._mark_toggled, names="value")
        c.peak.on_click(lambda _: self.jump_to_peak())
        return c

    def _mouse(self) -> list[Any]:
        """Cursor and click events from ``ipyevents`` (none, and a note, when it is not installed). Two sources:
        the cursor's is throttled, the clicks' is not, so a click right after a move is never dropped."""
        try:
            from ipyevents import Event
        except ImportError:
            self.c.extra.append(_note("cursor read-out and click caliper need the ipyevents package"))
            return []
        moves = Event(source=self.image, watched_events=["mousemove", "mouseleave"], wait=40,
                      throttle_or_debounce="throttle")
        clicks = Event(source=self.image, watched_events=["click"], prevent_default_action=True)
        for ev in (moves, clicks):
            ev.on_dom_event(self.handle_mouse)
        return [moves, clicks]

    def _layout(self) -> Any:
        import ipywidgets as w

        c = self.c
        return w.VBox([c.position, c.image, c.readout, c.slider, c.plane,
                       w.HBox([c.window, c.zoom]), w.HBox([c.opacity, c.peak]),
                       w.HBox([c.marker_box, c.outline_box, c.caliper, c.caliper_text]),
                       w.HBox([c.mark]), *c.extra])

    # --- behaviour ----------------------------------------------------------------------------------------------
    def geometry(self) -> PlaneGeometry:
        """The current image's pixel <-> voxel mapping."""
        return plane_geometry(self.volume.shape, self.scene.spacing_mm, self.state, self.config.size, self.marker)

    def probe(self, x: float, y: float) -> Probe:
        """HU and LPS position at image pixel (x, y), also shown in the read-out line."""
        p = probe(self.scene, self.geometry(), x, y)
        self.readout.value = f"<span style='font-family:monospace'>{p.text()}</span>"
        return p

    def click(self, x: float, y: float) -> float | None:
        """A click at image pixel (x, y): with the caliper on, sets its next point; returns the distance (mm) once
        two points are set. With "mark nodule" on, marks the nodule there (``mark_at``)."""
        if self.c.mark.value:
            self.mark_at(x, y)
            return None
        if not self.c.caliper.value:
            self.probe(x, y)
            return None
        i, j, k = (float(v) for v in self.geometry().to_voxel(x, y))
        points = self.state.caliper if len(self.state.caliper) < 2 else ()
        self.state.caliper = (*points, (i, j, k))
        self._redraw()
        return caliper_mm(self.scene, self.state.caliper)

    def measure(self, a: tuple[float, float], b: tuple[float, float]) -> float:
        """Caliper from image pixel ``a`` to ``b`` on the current slice, mm (what two clicks do)."""
        self.c.caliper.value = True
        self.clear_caliper()
        self.click(*a)
        mm = self.click(*b)
        assert mm is not None
        return mm

    def on_mark(self, callback: Any) -> None:
        """``callback(lps_mm)`` after each click in "mark nodule" mode."""
        self._mark_callbacks.append(callback)

    def mark_at(self, x: float, y: float) -> tuple[float, float, float]:
        """Mark the nodule at image pixel (x, y) of the current slice: the marker moves there (the continuous
        position under the pixel's centre, on the slice's centre) and its patient position, LPS mm, is returned
        and handed to the ``on_mark`` callbacks."""
        vox = self.geometry().to_voxel(x, y)
        lps = self.scene.voxel_to_lps(vox)
        self.marked_lps = (float(lps[0]), float(lps[1]), float(lps[2]))
        self.set_marker(vox, move=False)
        for callback in self._mark_callbacks:
            callback(self.marked_lps)
        return self.marked_lps

    def set_marker(self, vox: np.ndarray | None, move: bool = True) -> None:
        """Put the nodule marker at a continuous voxel (I, J, K) of the RAS array (None: no marker); ``move``: go to
        its slice."""
        self.marker = None if vox is None else np.asarray(vox, dtype=float)
        self.scene = replace(self.scene, marker_vox=self.marker)
        if move and self.marker is not None:
            self.slider.value = self._centre(self.plane.value)
        self._redraw()

    def set_layers(self, overlay: np.ndarray | None = None, mask: np.ndarray | None = None) -> None:
        """Replace the attribution overlay and the nodule mask (RAS-ordered, the volume's shape)."""
        self.overlay, self.mask = overlay, mask
        self.scene = replace(self.scene, overlay=overlay, mask=mask)
        self.c.peak.disabled = overlay is None or not np.any(overlay)
        self.c.outline_box.disabled = mask is None
        self._redraw()

    def _caliper_toggled(self, change: dict[str, Any]) -> None:
        if change.get("new") and self.c.mark.value:  # one click mode at a time
            self.c.mark.value = False
        self.clear_caliper()

    def _mark_toggled(self, change: dict[str, Any]) -> None:
        if change.get("new") and self.c.caliper.value:
            self.c.caliper.value = False

    def clear_caliper(self) -> None:
        self.state.caliper = ()
        self._redraw()

    def jump_to_peak(self) -> int:
        """Move to the slice of the current plane where |attribution| is largest; returns it."""
        if self.overlay is None:
            return self.slider.value
        self.slider.value = peak_slice(self.overlay, self.plane.value)
        if self.opacity.value == 0:
            self.opacity.value = self.config.opacity
        return int(self.slider.value)

    def handle_mouse(self, event: dict[str, Any]) -> None:
        """An ipyevents message: ``dataX``, ``dataY`` are pixels of the image (its PNG), whatever its CSS size."""
        if "dataX" not in event:
            if event.get("type") == "mouseleave":
                self.readout.value = ""
            return
        x, y = float(event["dataX"]), float(event["dataY"])
        geo = self.geometry()
        if not (0 <= x < geo.width and 0 <= y < geo.height):
            return
        if event.get("type") == "click":
            self.click(x, y)
        else:
            self.probe(x, y)

    def _changed(self, *_: object) -> None:
        if self._syncing:  # the slider being set for a new plane: one redraw at the end, not three
            return
        plane = self.plane.value
        if self.state.plane != plane:  # a new plane: slider range, centred on the nodule, caliper cleared
            self.state = replace(self.state, plane=plane, caliper=(), index=self._centre(plane))
            self._syncing = True
            try:
                self.slider.max = self.volume.shape[SLICE_AXIS[plane]] - 1
                self.slider.value = self.state.index
            finally:
                self._syncing = False
        self.state = replace(self.state, index=self.slider.value, window=self.window.value,
                             opacity=self.opacity.value, marker=self.marker_box.value,
                             outline=self.c.outline_box.value, zoom=self.zoom.value)
        self._redraw()

    def _redraw(self) -> None:
        geo = self.geometry()
        self.image.value = render(self.scene, self.state, self.config)
        self.image.width, self.image.height = str(geo.width), str(geo.height)
        self.position.value = f"<b>{slice_position_text(self.scene, self.state.plane, geo.index)}</b>"
        mm = caliper_mm(self.scene, self.state.caliper)
        self.caliper_text.value = ("" if not self.state.caliper else
                                   "caliper: click the second point" if mm is None else f"caliper: {mm:.1f} mm")


def series_layers(vol: Any, nodule_lps: tuple[float, float, float] | None = None,
                  attribution: np.ndarray | None = None, measurement: Any = None) -> dict[str, Any]:
    """A loaded series (``load_ct_series``'s MetaTensor, RAS affine) as the viewer's RAS-ordered layers: ``hu``,
    ``overlay`` (the nodule patch's attribution placed at the nodule), ``mask`` (a ``NoduleMeasurement``'s, in the
    loader's order), ``marker`` (the nodule's continuous voxel) and ``spacing_mm``/``origin_ras`` (``ras_frame``)."""
    from workbench.data.transforms import lps_to_ras, ras_to_voxel

    affine = np.asarray(vol.affine)
    arr = vol[0].numpy()
    spacing, origin = ras_frame(affine, arr.shape)
    marker = ras_to_voxel(affine, lps_to_ras(nodule_lps)) if nodule_lps is not None else None
    layers = {"hu": arr}
    if attribution is not None and marker is not None:
        layers["overlay"] = place_patch(attribution, arr.shape, marker, spacing)
    if measurement is not None:
        layers["mask"] = measurement.full_mask(arr.shape)
    flipped, marker_ras = to_ras(list(layers.values()), affine, marker)  # every layer flipped alike
    return {**dict(zip(layers, flipped, strict=True)), "marker": marker_ras, "spacing_mm": spacing,
            "origin_ras": origin}


def _note(text: str) -> Any:
    import ipywidgets as w

    return w.HTML(f"<i>{text}</i>")


__all__ = ["CTViewer", "LABELS", "PLANES", "PlaneGeometry", "Probe", "Scene", "ViewState", "ViewerConfig", "WINDOWS",
           "caliper_mm", "overlay_scale", "peak_slice", "place_patch", "plane_geometry", "probe", "ras_frame",
           "render", "render_rgb", "series_layers", "slice_position_text", "to_ras", "window"]
