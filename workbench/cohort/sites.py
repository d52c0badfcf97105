"""Default hospital sites: who each one sees and how it scans.

Four archetypes (an academic referral centre, a community hospital, a screening programme, an oncology
centre). Asking for more sites cycles through them with a shifted scanner and age mix, so every site stays
plausible. The risk function is not here on purpose: it is the same everywhere (``risk.py``).
"""

from __future__ import annotations

from dataclasses import replace

from workbench.cohort.spec import ScannerProfile, SiteProfile

_BASE_SITES: tuple[SiteProfile, ...] = (
    SiteProfile(
        name="hospital_a",
        age_mean=65.0,
        ever_smoker_p=0.70,
        prior_ct_p=0.38,
        diameter_log_mean=2.05,  # referral centre: somewhat larger nodules
        note_styles=("structured", "narrative"),
        scanner=ScannerProfile(
            manufacturer="Halcyon Imaging",
            model="HX-128",
            pixel_spacing_mm=1.25,
            slice_spacing_mm=2.0,
            noise_hu=18.0,
            kernel_sigma_mm=0.55,
            hu_offset=4.0,
            transfer_syntax="jpegls",
        ),
    ),
    SiteProfile(
        name="hospital_b",
        age_mean=60.0,
        female_p=0.50,
        ever_smoker_p=0.55,
        family_history_p=0.18,
        prior_ct_p=0.26,
        emphysema_p=0.22,
        diameter_log_mean=1.85,  # community: many small incidental nodules
        note_styles=("terse", "dictated"),
        missing_note_p=0.10,
        scanner=ScannerProfile(
            manufacturer="Meridian Medical Systems",
            model="Aurora 64",
            pixel_spacing_mm=1.35,
            slice_spacing_mm=2.5,
            noise_hu=14.0,
            kernel_sigma_mm=0.9,
            hu_offset=-6.0,
            transfer_syntax="rle",
        ),
    ),
    SiteProfile(
        name="hospital_c",
        age_mean=66.0,
        female_p=0.42,
        ever_smoker_p=0.92,  # screening programme: heavy smokers
        current_smoker_share=0.55,
        family_history_p=0.22,
        prior_cancer_p=0.08,
        prior_ct_p=0.47,
        emphysema_p=0.42,
        diameter_log_mean=1.90,
        note_styles=("structured", "terse"),
        missing_ct_p=0.03,
        scanner=ScannerProfile(
            manufacturer="Halcyon Imaging",
            model="HX-64 LowDose",
            pixel_spacing_mm=1.3,
            slice_spacing_mm=2.5,
            noise_hu=24.0,  # low-dose protocol
            kernel_sigma_mm=0.7,
            hu_offset=0.0,
            transfer_syntax="jpegls",
        ),
    ),
    SiteProfile(
        name="hospital_d",
        age_mean=62.0,
        female_p=0.52,
        ever_smoker_p=0.60,
        prior_cancer_p=0.22,  # oncology centre: many prior cancers
        prior_ct_p=0.34,
        emphysema_p=0.26,
        diameter_log_mean=1.98,
        note_styles=("narrative", "dictated"),
        scanner=ScannerProfile(
            manufacturer="Kestrel Diagnostics",
            model="Vantage CT",
            pixel_spacing_mm=1.4,
            slice_spacing_mm=1.25,
            noise_hu=12.0,
            kernel_sigma_mm=0.8,
            hu_offset=8.0,
            transfer_syntax="jpegls",
        ),
    ),
)


def default_sites(n: int) -> list[SiteProfile]:
    """The first ``n`` sites; beyond four, archetypes repeat with a shifted age mix and scanner."""
    if n < 1:
        raise ValueError(f"need at least one site, got {n}")
    sites: list[SiteProfile] = []
    for i in range(n):
        base = _BASE_SITES[i % len(_BASE_SITES)]
        cycle = i // len(_BASE_SITES)
        if cycle == 0:
            sites.append(base)
            continue
        scanner = replace(
            base.scanner,
            noise_hu=base.scanner.noise_hu + 2.0 * cycle,
            hu_offset=base.scanner.hu_offset - 3.0 * cycle,
            slice_spacing_mm=min(2.5, base.scanner.slice_spacing_mm + 0.25 * cycle),
        )
        sites.append(replace(base, name=f"hospital_{chr(ord('a') + i)}" if i < 26 else f"hospital_{i:03d}",
                             age_mean=base.age_mean + (cycle % 3 - 1) * 2.0, scanner=scanner))
    return sites
