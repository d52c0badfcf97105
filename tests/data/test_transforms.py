"""The CT pipeline (workbench.data.transforms) on synthetic chests whose every value is known: the HU window,
the patch's isotropic resampling, the emphysema channel, the nodule's position in the lungs, coordinates."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from workbench.data.transforms import (
    AIR_HU,
    NoduleROId,
    PointCropd,
    PreprocessConfig,
    ct_pipeline,
    lps_to_ras,
    ras_to_voxel,
)
from workbench.errors import CaseError

NODULE_MM = np.array([38.4, 25.6, 40.0])  # RAS; inside the right-hand lung box
RADIUS_MM = 5.0
WIN = (-1000.0, 400.0)  # the default window


def windowed(hu: float) -> float:
    return (hu - WIN[0]) / (WIN[1] - WIN[0])


def chest(spacing: tuple[float, float, float], shape: tuple[int, int, int]) -> MetaTensor:
    """A chest defined in millimetres, sampled at voxel centres (i * spacing): air outside a soft-tissue body,
    two lungs (-850 HU), the first lung's outer half emphysematous (-980 HU), a 5 mm soft-tissue nodule."""
    x, y, z = np.meshgrid(*(np.arange(n) * s for n, s in zip(shape, spacing, strict=True)), indexing="ij")
    hu = np.full(shape, -1000.0)
    hu[(x >= 3.2) & (x < 48.0) & (y >= 3.2) & (y < 48.0)] = 40.0
    in_y_z = (y >= 12.8) & (y < 38.4) & (z >= 10.0) & (z < 70.0)
    hu[in_y_z & (x >= 6.4) & (x < 19.2)] = -850.0
    hu[in_y_z & (x >= 32.0) & (x < 44.8)] = -850.0
    hu[in_y_z & (x >= 6.4) & (x < 12.8) & (y < 25.6)] = -980.0
    hu[(x - NODULE_MM[0]) ** 2 + (y - NODULE_MM[1]) ** 2 + (z - NODULE_MM[2]) ** 2 <= RADIUS_MM**2] = 40.0
    affine = np.diag([*spacing, 1.0])
    return MetaTensor(torch.as_tensor(hu[None], dtype=torch.float32), affine=torch.as_tensor(affine),
                      meta={"spacing": np.asarray(spacing)})


CONFIG = PreprocessConfig(patch_size=16, context_size=8)


def run(img: MetaTensor, point: np.ndarray = NODULE_MM) -> dict[str, torch.Tensor]:
    return ct_pipeline(CONFIG, load=False)({"image": img, "nodule_ras": point})


def test_lps_points_reach_the_voxel_an_lps_affine_puts_them_at() -> None:
    affine_lps = np.array([[0.7, 0, 0, -180.0], [0, 0.7, 0, -160.0], [0, 0, 2.5, -300.0], [0, 0, 0, 1]])
    voxel = np.array([30.0, 41.0, 7.0])
    lps = (affine_lps @ np.append(voxel, 1.0))[:3]
    affine_ras = affine_lps.copy()
    affine_ras[:2] *= -1.0  # what load_ct_series does
    assert lps_to_ras(tuple(lps)).tolist() == [-lps[0], -lps[1], lps[2]]
    np.testing.assert_allclose(ras_to_voxel(affine_ras, lps_to_ras(tuple(lps))), voxel, atol=1e-9)


def test_the_patch_is_windowed_hu_and_the_outputs_have_their_sizes() -> None:
    out = run(chest((0.8, 0.8, 2.0), (64, 64, 40)))
    patch = out["ct_patch"]
    assert patch.shape == (1, 16, 16, 16) and out["ct_context"].shape == (2, 8, 8, 8) and out["ct_position"].shape == (3,)
    assert patch[0, 8, 8, 8].item() == pytest.approx(windowed(40.0), abs=1e-5)  # the nodule, HU 40
    # 8.75 mm from the centre along A-P: lung, -850 HU
    assert patch[0, 8, 1, 8].item() == pytest.approx(windowed(-850.0), abs=1e-5)
    assert patch.min() >= 0.0 and patch.max() <= 1.0


def nodule_voxels(patch: torch.Tensor) -> torch.Tensor:
    """The patch's voxels above half-way from lung to soft tissue, inside the lung box (patch voxels 4..12 along
    R-L: either side lies body tissue of the same HU)."""
    above = patch[0] > (windowed(40.0) + windowed(-850.0)) / 2
    above[:4] = False
    above[13:] = False
    return above


@pytest.mark.parametrize("spacing, shape", [((0.8, 0.8, 2.0), (64, 64, 40)), ((1.0, 1.0, 1.0), (52, 52, 80))])
def test_at_any_spacing_the_nodule_has_its_volume_and_sits_within_half_a_voxel_of_the_centre(
        spacing: tuple[float, float, float], shape: tuple[int, int, int]) -> None:
    patch = run(chest(spacing, shape))["ct_patch"]
    nodule = nodule_voxels(patch)
    expected = 4 / 3 * np.pi * RADIUS_MM**3 / 1.25**3  # 524 mm^3 in 1.25 mm voxels: 268
    assert abs(int(nodule.sum()) - expected) < 0.1 * expected, int(nodule.sum())
    # the crop starts at the voxel nearest the centre: the sphere's centre lies within half a patch voxel of index 8
    centre = torch.nonzero(nodule).float().mean(0)
    assert (centre - 8.0).abs().max() <= 0.5 + 0.15, centre  # half a voxel, and a little for partial volumes


def test_the_context_channels_are_mean_hu_and_the_emphysema_share_of_lung() -> None:
    img = chest((0.8, 0.8, 2.0), (64, 64, 40))
    ctx = run(img)["ct_context"]
    # 8 x 8 x 5 voxel blocks: block (1, 2, 2) is all emphysema, (2, 2, 2) all normal lung, (0, 0, 0) air
    laa = ctx[1]
    assert laa[1, 2, 2].item() == pytest.approx(1.0) and laa[1, 3, 5].item() == pytest.approx(1.0)
    assert laa[2, 2, 2].item() == 0.0 and laa[0, 0, 0].item() == 0.0  # healthy lung; air outside the body is no lung
    assert int((laa > 0.5).sum()) == 2 * 6  # 1 x 2 x 6 blocks of emphysema
    hu = img.as_tensor()[0].numpy()
    expected = (hu[8:16, 16:24, 10:15].mean() - WIN[0]) / (WIN[1] - WIN[0])
    assert ctx[0, 1, 2, 2].item() == pytest.approx(expected, abs=1e-5)
    corner = (hu[:8, :8, :5].mean() - WIN[0]) / (WIN[1] - WIN[0])  # air, and the body wall from voxel 4 on
    assert ctx[0, 0, 0, 0].item() == pytest.approx(corner, abs=1e-6) and corner == pytest.approx(windowed(-740.0))


def test_the_position_is_the_nodules_fraction_of_the_lungs_bounding_box() -> None:
    pos = run(chest((0.8, 0.8, 2.0), (64, 64, 40)))["ct_position"]
    # lungs: voxels i 8..55, j 16..47, k 5..34; the nodule at voxel (48, 32, 20)
    np.testing.assert_allclose(pos.numpy(), [(48 - 8) / 47, (32 - 16) / 31, (20 - 5) / 29], atol=1e-6)


def test_a_centre_outside_the_series_is_refused_with_where_it_is() -> None:
    img = chest((0.8, 0.8, 2.0), (64, 64, 40))
    with pytest.raises(CaseError, match="lies outside the series"):
        NoduleROId(keys="image", point_key="p", roi_mm=25.0, out_key="roi")({"image": img, "p": np.array([0, 0, 200.0])})
    with pytest.raises(RuntimeError) as wrapped:  # MONAI's Compose wraps it; workbench.data.preprocess unwraps
        run(img, np.array([-10.0, 20.0, 40.0]))
    assert isinstance(wrapped.value.__cause__, CaseError) and "voxel [-12.5, 25.0, 20.0]" in str(wrapped.value.__cause__)


def test_a_crop_leaving_the_image_is_padded_with_air() -> None:
    vol = torch.arange(6**3, dtype=torch.float32).reshape(1, 6, 6, 6)
    img = MetaTensor(vol, affine=torch.eye(4, dtype=torch.float64))
    out = PointCropd(keys="image", point_key="p", size=4, out_key="crop")({"image": img, "p": np.array([1.0, 3.0, 3.0])})
    crop = out["crop"]
    assert crop.shape == (1, 4, 4, 4)
    assert (crop[0, 0] == AIR_HU).all()  # voxel i = -1 lies outside
    assert torch.equal(crop[0, 1:], vol[0, 0:3, 1:5, 1:5])
