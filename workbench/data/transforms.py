"""CT preprocessing as MONAI dictionary transforms: what the CT encoder sees.

The pipeline turns a series folder and a nodule centre into two arrays:
- ``ct_patch``   (1, P, P, P): the nodule-centred patch, isotropic (``patch_spacing_mm``), HU windowed to [0, 1];
- ``ct_context`` (2, C, C, C): the whole chest, coarse: channel 0 the windowed mean HU, channel 1 the share of
  lung voxels below -950 HU (LAA-950, the standard emphysema index), because emphysema lives outside the patch
  and averaging HU alone blurs it away;
- ``ct_position`` (3,): where the nodule sits inside the lungs' bounding box, as fractions along the image's
  R-L, A-P and S-I voxel axes (0.5 = middle). Lobe (upper lobe is a Brock term) is a matter of position
  relative to the lungs, which a 1 cm context grid shows only coarsely.

Isotropic resampling (MONAI ``Spacingd``) runs on a region a little larger than the patch, not on the whole
volume: the result is the same and it is an order of magnitude cheaper.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    ConcatItemsd,
    DeleteItemsd,
    EnsureTyped,
    MapTransform,
    ScaleIntensityRanged,
    Spacingd,
    SpatialCrop,
)
from scipy import ndimage

from workbench.data.dicom_io import load_ct_series
from workbench.errors import CaseError

AIR_HU = -1024.0


@dataclass(frozen=True)
class PreprocessConfig:
    """Sizes and windows of the CT inputs. Every field is part of the cache key."""

    patch_size: int = 32  # voxels per side of the nodule patch
    patch_spacing_mm: float = 1.25  # isotropic spacing of the patch: 32 x 1.25 = 40 mm field
    context_size: int = 32  # voxels per side of the coarse chest view
    hu_min: float = -1000.0  # window mapped to [0, 1]: lung and soft tissue, bone clipped
    hu_max: float = 400.0
    laa_threshold_hu: float = -950.0  # low-attenuation threshold for the emphysema channel
    version: int = 2  # bump when the pipeline's output changes, to invalidate caches

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lps_to_ras(point: tuple[float, float, float]) -> np.ndarray:
    x, y, z = point
    return np.array([-x, -y, z], dtype=np.float64)


def ras_to_voxel(affine: torch.Tensor | np.ndarray, ras: np.ndarray) -> np.ndarray:
    a = np.asarray(affine, dtype=np.float64)
    return (np.linalg.inv(a) @ np.append(ras, 1.0))[:3]


class LoadCTd(MapTransform):
    """Series folder -> MetaTensor (1, I, J, K) in HU with a RAS affine (``load_ct_series``)."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = load_ct_series(d[key])
        return d


class NoduleROId(MapTransform):
    """Crop, in the series' own voxel grid, a box of ``roi_mm`` around the nodule (cheap resampling later).

    Refuses a centre that lies outside the series, naming the case's point and the series extent.
    """

    def __init__(self, keys: str, point_key: str, roi_mm: float, out_key: str) -> None:
        super().__init__(keys)
        self.point_key, self.roi_mm, self.out_key = point_key, roi_mm, out_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            img: MetaTensor = d[key]
            shape = np.array(img.shape[1:])
            vox = ras_to_voxel(img.affine, np.asarray(d[self.point_key]))
            if np.any(vox < -0.5) or np.any(vox > shape - 0.5):
                raise CaseError(
                    f"{img.meta.get('filename_or_obj', 'series')}: nodule centre (RAS {np.round(d[self.point_key], 1).tolist()} mm) "
                    f"lies outside the series (voxel {np.round(vox, 1).tolist()}, shape {shape.tolist()})"
                )
            spacing = np.asarray(img.meta["spacing"], dtype=np.float64)
            half = np.ceil(self.roi_mm / 2.0 / spacing).astype(int) + 2
            centre = np.round(vox).astype(int)
            start = np.clip(centre - half, 0, shape)
            end = np.clip(centre + half + 1, 0, shape)
            d[self.out_key] = SpatialCrop(roi_start=start.tolist(), roi_end=end.tolist())(img)
        return d


class PointCropd(MapTransform):
    """Crop ``size``^3 voxels centred on a RAS point, padding with air where the box leaves the image."""

    def __init__(self, keys: str, point_key: str, size: int, out_key: str, pad_value: float = AIR_HU) -> None:
        super().__init__(keys)
        self.point_key, self.size, self.out_key, self.pad_value = point_key, size, out_key, pad_value

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            arr = img.as_tensor() if isinstance(img, MetaTensor) else torch.as_tensor(img)  # (1, I, J, K)
            vox = ras_to_voxel(img.affine, np.asarray(d[self.point_key]))
            start = np.floor(vox + 0.5).astype(int) - self.size // 2
            out = torch.full((arr.shape[0], self.size, self.size, self.size), self.pad_value, dtype=torch.float32)
            src_lo = np.maximum(start, 0)
            src_hi = np.minimum(start + self.size, np.array(arr.shape[1:]))
            if np.all(src_hi > src_lo):
                dst_lo = src_lo - start
                dst_hi = dst_lo + (src_hi - src_lo)
                out[:, dst_lo[0]:dst_hi[0], dst_lo[1]:dst_hi[1], dst_lo[2]:dst_hi[2]] = arr[
                    :, src_lo[0]:src_hi[0], src_lo[1]:src_hi[1], src_lo[2]:src_hi[2]
                ].float()
            d[self.out_key] = out
        return d


class ChestContextd(MapTransform):
    """Whole-chest view at ``size``^3: mean HU (``hu_key``) and LAA share of lung voxels (``laa_key``); with
    ``point_key``, also the nodule's position as fractions of the lung bounding box (``position_key``, (3,)).

    The lung is air inside the body: voxels below -400 HU not connected to the image border (found on a 4x
    in-plane reduced grid; exact lung borders do not matter at 1 cm context voxels).
    """

    def __init__(self, keys: str, size: int, laa_threshold_hu: float, hu_key: str, laa_key: str,
                 point_key: str | None = None, position_key: str = "ct_position") -> None:
        super().__init__(keys)
        self.size, self.laa_threshold_hu, self.hu_key, self.laa_key = size, laa_threshold_hu, hu_key, laa_key
        self.point_key, self.position_key = point_key, position_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            hu = d[key].as_tensor().float()  # (1, I, J, K)
            out_size = (self.size,) * 3
            d[self.hu_key] = F.adaptive_avg_pool3d(hu[None], out_size)[0]  # (1, C, C, C)
            lung = self._lung_mask(hu[0])  # (I, J, K) bool
            laa = (hu[0] < self.laa_threshold_hu) & lung
            lung_share = F.adaptive_avg_pool3d(lung[None, None].float(), out_size)[0]
            laa_share = F.adaptive_avg_pool3d(laa[None, None].float(), out_size)[0]
            d[self.laa_key] = torch.where(lung_share > 0, laa_share / lung_share.clamp_min(1e-6), 0.0)
            if self.point_key is not None:
                d[self.position_key] = self._position(lung, ras_to_voxel(d[key].affine, np.asarray(d[self.point_key])))
        return d

    @staticmethod
    def _position(lung: torch.Tensor, vox: np.ndarray) -> torch.Tensor:
        idx = torch.nonzero(lung)  # (n, 3)
        if idx.numel() == 0:  # no lung found (not a chest CT?): say "middle" rather than fail
            return torch.full((3,), 0.5)
        lo, hi = idx.min(0).values.numpy(), idx.max(0).values.numpy()
        frac = (vox - lo) / np.maximum(hi - lo, 1)
        return torch.as_tensor(np.clip(frac, -0.5, 1.5), dtype=torch.float32)  # (3,)

    @staticmethod
    def _lung_mask(hu: torch.Tensor) -> torch.Tensor:
        i, j, k = hu.shape
        f = 4
        ri, rj = i // f, j // f
        low = F.avg_pool3d(hu[None, None, : ri * f, : rj * f, :], (f, f, 1))[0, 0].numpy()  # (ri, rj, K)
        air = low < -400.0
        labels, _ = ndimage.label(air)
        border = np.unique(np.concatenate([labels[0].ravel(), labels[-1].ravel(), labels[:, 0].ravel(), labels[:, -1].ravel()]))
        inside = air & ~np.isin(labels, border[border > 0])
        full = np.zeros((i, j, k), dtype=bool)
        full[: ri * f, : rj * f, :] = np.repeat(np.repeat(inside, f, axis=0), f, axis=1)
        return torch.from_numpy(full)


def ct_pipeline(config: PreprocessConfig, *, load: bool = True) -> Compose:
    """MONAI Compose: {"image": series folder, "nodule_ras": (3,) mm} -> {"ct_patch", "ct_context", "ct_position"}.

    ``load=False``: "image" is already the HU ``MetaTensor`` (a phantom rendered in memory, say)."""
    roi_mm = config.patch_size * config.patch_spacing_mm * 1.25
    return Compose(
        [
            *([LoadCTd(keys="image")] if load else []),
            NoduleROId(keys="image", point_key="nodule_ras", roi_mm=roi_mm, out_key="ct_roi"),
            Spacingd(keys="ct_roi", pixdim=(config.patch_spacing_mm,) * 3, mode="bilinear", padding_mode="border"),
            PointCropd(keys="ct_roi", point_key="nodule_ras", size=config.patch_size, out_key="ct_patch"),
            ChestContextd(keys="image", size=config.context_size, laa_threshold_hu=config.laa_threshold_hu,
                          hu_key="ct_context_hu", laa_key="ct_laa", point_key="nodule_ras"),
            ScaleIntensityRanged(keys=["ct_patch", "ct_context_hu"], a_min=config.hu_min, a_max=config.hu_max,
                                 b_min=0.0, b_max=1.0, clip=True),
            EnsureTyped(keys=["ct_patch", "ct_context_hu", "ct_laa", "ct_position"], data_type="tensor", track_meta=False),
            ConcatItemsd(keys=["ct_context_hu", "ct_laa"], name="ct_context", dim=0),
            DeleteItemsd(keys=["ct_roi", "ct_context_hu", "ct_laa"]),
        ]
    )
