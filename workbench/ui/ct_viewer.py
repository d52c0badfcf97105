"""The CT viewer of the case-review notebook: slices, three planes, window presets, attribution overlay, marker.

Rendering is plain numpy + PIL into an ``ipywidgets.Image`` (PNG bytes), so the widget works in any
JupyterLab without a front-end extension, and a headless test can read the same bytes. The attribution map of
the nodule patch (isotropic, ``patch_spacing_mm``) is placed into the series' voxel grid at the nodule centre,
resampled to the series' spacing: the patch is cut from the same axis-aligned grid, so no rotation is needed.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

WINDOWS = {"lung": (-600.0, 1500.0), "mediastinum": (40.0, 400.0), "bone": (400.0, 1800.0)}  # (level, width) HU
PLANES = ("axial", "coronal", "sagittal")


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


def to_ras(arrays: list[np.ndarray], affine: np.ndarray, marker_vox: np.ndarray | None = None
           ) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Flip axis-aligned volumes (and a voxel point) so that each axis increases towards R, A, S."""
    a = np.asarray(affine, dtype=float)[:3, :3]
    flips = [i for i in range(3) if a[int(np.abs(a[:, i]).argmax()), i] < 0]  # axis i runs against its RAS direction
    out = [np.flip(x, axis=flips).copy() if flips else x for x in arrays]
    if marker_vox is not None:
        marker_vox = np.array(marker_vox, dtype=float)
        for i in flips:
            marker_vox[i] = arrays[0].shape[i] - 1 - marker_vox[i]
    return out, marker_vox


@dataclass
class ViewState:
    plane: str = "axial"
    index: int = 0
    window: str = "lung"
    opacity: float = 0.5
    marker: bool = True


def render(volume_hu: np.ndarray, state: ViewState, overlay: np.ndarray | None = None,
           marker_vox: np.ndarray | None = None, size: int = 384) -> bytes:
    """One slice as PNG bytes: windowed grey, attribution in red (raises risk) / blue (lowers), nodule ring.

    ``volume_hu`` is (I, J, K) with I towards the patient's right, J anterior, K superior (``to_ras``): axial
    slices are along K, coronal along J, sagittal along I."""
    from PIL import Image, ImageDraw

    axis = PLANES.index(state.plane)
    axis = {0: 2, 1: 1, 2: 0}[axis]
    idx = int(np.clip(state.index, 0, volume_hu.shape[axis] - 1))
    sl = np.take(volume_hu, idx, axis=axis)
    grey = window(sl, *WINDOWS[state.window])
    rgb = np.repeat(grey[..., None], 3, axis=2)
    if overlay is not None and state.opacity > 0:
        o = np.take(overlay, idx, axis=axis)
        lim = float(np.abs(overlay).max()) or 1.0
        v = np.clip(o / lim, -1, 1)
        colour = np.stack([np.clip(v, 0, 1), np.zeros_like(v), np.clip(-v, 0, 1)], axis=-1)
        alpha = state.opacity * np.abs(v)[..., None]
        rgb = rgb * (1 - alpha) + colour * alpha
    # rows: anterior (axial) or superior (coronal, sagittal) up; columns: radiological, the patient's right (or
    # front, sagittal) on the left of the screen. ``volume_hu`` must be RAS-ordered (``to_ras``).
    img = np.fliplr(np.flipud(np.transpose(rgb, (1, 0, 2))))
    pil = Image.fromarray((img * 255).astype(np.uint8)).resize((size, size), Image.NEAREST)
    if marker_vox is not None and state.marker:
        keep = [i for i in range(3) if i != axis]
        if abs(marker_vox[axis] - idx) < 6:
            x = (1 - marker_vox[keep[0]] / sl.shape[0]) * size
            y = (1 - marker_vox[keep[1]] / sl.shape[1]) * size
            ImageDraw.Draw(pil).ellipse([x - 14, y - 14, x + 14, y + 14], outline=(255, 220, 0), width=2)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()


class CTViewer:
    """``CTViewer(volume_hu, attribution=..., marker_vox=...).widget``: slider, plane, window, opacity, marker."""

    def __init__(self, volume_hu: np.ndarray, overlay: np.ndarray | None = None,
                 marker_vox: np.ndarray | None = None) -> None:
        import ipywidgets as w

        self.volume, self.overlay, self.marker = volume_hu, overlay, marker_vox
        start = int(marker_vox[2]) if marker_vox is not None else volume_hu.shape[2] // 2
        self.state = ViewState(index=start)
        self.image = w.Image(format="png", width=384, height=384, layout=w.Layout(border="1px solid #444"))
        self.image.add_class("ct-image")
        self.slider = w.IntSlider(value=start, min=0, max=volume_hu.shape[2] - 1, description="slice",
                                  continuous_update=True)
        self.slider.add_class("ct-slice-slider")
        self.plane = w.ToggleButtons(options=list(PLANES), value="axial", description="plane")
        self.window = w.Dropdown(options=list(WINDOWS), value="lung", description="window")
        self.opacity = w.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="overlay")
        self.marker_box = w.Checkbox(value=True, description="nodule marker")
        for ctrl in (self.slider, self.plane, self.window, self.opacity, self.marker_box):
            ctrl.observe(self._changed, names="value")
        self.widget = w.VBox([self.image, self.slider, self.plane, w.HBox([self.window, self.opacity]), self.marker_box])
        self._changed()

    def _changed(self, *_: object) -> None:
        axis = {"axial": 2, "coronal": 1, "sagittal": 0}[self.plane.value]
        if self.state.plane != self.plane.value:  # a new plane: slider range and centre on the nodule
            self.state.plane = self.plane.value
            self.slider.max = self.volume.shape[axis] - 1
            self.slider.value = int(self.marker[axis]) if self.marker is not None else self.volume.shape[axis] // 2
        self.state.index, self.state.window = self.slider.value, self.window.value
        self.state.opacity, self.state.marker = self.opacity.value, self.marker_box.value
        self.image.value = render(self.volume, self.state, self.overlay, self.marker)


__all__ = ["CTViewer", "PLANES", "WINDOWS", "ViewState", "place_patch", "render", "to_ras", "window"]
