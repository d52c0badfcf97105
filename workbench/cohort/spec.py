"""Typed records the cohort generator passes between its parts.

The generator works in three steps per case: sample the patient's true variables (``sample.py``), render them
into a CT series (``phantom.py`` + ``dicom_writer.py``) and a note (``notes.py``), then write the file
contract (``generate.py``). These dataclasses are the only currency between those steps.

Coordinates are DICOM patient coordinates (LPS, millimetres): +x towards the patient's left, +y posterior,
+z superior; this is what ImagePositionPatient uses and what a click in a DICOM viewer gives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

NODULE_TYPES = ("solid", "part_solid", "non_solid")
LOBES = ("RUL", "RML", "RLL", "LUL", "LLL")
UPPER_LOBES = ("RUL", "LUL")
SMOKING = ("never", "former", "current")
PRIOR_CT = ("none", "stable_2y", "stable_short", "growing")
TRUTHS = ("brock", "shifted")  # the risk functions a cohort can follow (risk.py, risk_shifted.py)
TRANSFER_SYNTAXES = ("jpegls", "rle", "explicit")


@dataclass(frozen=True)
class ScannerProfile:
    """How one site's scanner renders a chest: geometry, noise, sharpness, calibration."""

    manufacturer: str  # written to (0008,0070)
    model: str  # written to (0008,1090)
    pixel_spacing_mm: float  # in-plane, 1.2-1.4 mm over 256 pixels: a full chest width
    slice_spacing_mm: float  # 1.25-2.5 mm; slice thickness equals spacing (contiguous slices)
    noise_hu: float  # standard deviation of quantum noise after the kernel, in HU
    kernel_sigma_mm: float  # Gaussian blur of the reconstruction kernel (sharp ~0.5, soft ~1.0)
    hu_offset: float  # calibration offset added to every tissue (water reads hu_offset, not 0)
    kvp: float = 120.0
    rows: int = 256
    columns: int = 256
    transfer_syntax: str = "jpegls"  # one of TRANSFER_SYNTAXES


@dataclass(frozen=True)
class NoduleSpec:
    """One nodule to render. The index nodule (``is_index``) is the one the risk and manifest refer to."""

    diameter_mm: float
    nodule_type: str  # one of NODULE_TYPES
    spiculated: bool
    lobe: str  # one of LOBES
    is_index: bool = False
    bubbly_lucency: bool = False  # internal air pockets (pseudocavitation); only shifted cohorts have them


@dataclass(frozen=True)
class SiteProfile:
    """Who a hospital sees and how it scans: the distributions shift per site, the brock risk function never does
    (the shifted truth scales two of its terms per site: ``risk_shifted.SITE_MULTIPLIERS``)."""

    name: str
    age_mean: float = 63.0
    female_p: float = 0.45
    family_history_p: float = 0.20
    ever_smoker_p: float = 0.65
    current_smoker_share: float = 0.45  # share of ever smokers still smoking
    prior_cancer_p: float = 0.12
    prior_ct_p: float = 0.34  # share of notes that mention a prior CT
    emphysema_p: float = 0.30
    emphysema_in_note_p: float = 0.5  # given emphysema, chance the note says "COPD"/"emphysema"
    diameter_log_mean: float = 1.95  # log(mm); exp(1.95) ~ 7 mm
    diameter_log_sd: float = 0.60
    note_styles: tuple[str, ...] = ("structured", "narrative")
    missing_note_p: float = 0.07
    missing_ct_p: float = 0.05
    scanner: ScannerProfile = field(
        default_factory=lambda: ScannerProfile("SynthMed", "Phantom CT 64", 1.3, 2.0, 15.0, 0.7, 0.0)
    )


@dataclass(frozen=True)
class PatientIdentity:
    """The PHI a hospital holds about one patient. It goes into the note and the DICOM headers, and every
    string of it into ``truth.jsonl`` under ``phi`` so de-identification can be scored."""

    first_name: str
    last_name: str
    sex: str  # "F" or "M"
    birth_date: date
    visit_date: date  # study date and note date
    mrn: str
    accession: str
    phone: str
    email: str
    street: str
    city: str
    zip_code: str
    ssn: str
    physician: str  # "First Last" of the referring physician
    institution: str  # hospital name (a geographic PHI element when it names a place)

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"


@dataclass
class PatientTruth:
    """Every true variable of one case. Only ``cohort/`` and the benchmarks read this (via truth.jsonl)."""

    case_id: str
    site: str
    split: str  # train / val / calib / test
    # note-only variables
    age: int
    female: bool
    family_history: bool
    smoking: str  # one of SMOKING
    pack_years: int
    prior_cancer: bool
    prior_cancer_site: str | None  # e.g. "breast"; None when prior_cancer is False
    prior_ct: str  # one of PRIOR_CT
    prior_ct_years: float | None  # years since the prior CT when one is mentioned
    # CT-only variables (emphysema sometimes also in the note)
    diameter_mm: float
    nodule_type: str
    spiculated: bool
    lobe: str
    nodule_count: int
    emphysema: bool
    emphysema_in_note: bool
    # availability and outcome
    has_ct: bool
    has_note: bool
    logit: float  # true log-odds under ``truth`` (brock: Brock + Mayo history + prior-CT terms + enrichment shift)
    risk: float  # true probability of malignancy
    label: int  # Bernoulli(risk)
    # Which risk function made logit, risk and label (one of TRUTHS), and the variables only the shifted truth
    # has (risk_shifted.py). They default to a brock case's values, so truth files written before they existed
    # still load; a brock cohort never draws them.
    truth: str = "brock"
    bubbly_lucency: bool = False  # CT only: air pockets inside the index nodule, rendered by phantom.py
    asbestos_job: str | None = None  # notes only: the job that exposed the patient to asbestos (None: no exposure)

    @property
    def upper_lobe(self) -> bool:
        return self.lobe in UPPER_LOBES

    @property
    def ever_smoker(self) -> bool:
        return self.smoking != "never"

    @property
    def asbestos_exposure(self) -> bool:
        return self.asbestos_job is not None
