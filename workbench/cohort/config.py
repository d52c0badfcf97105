"""What cohort to make: preset, sizes, seed, workers, and which true risk function labels it."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.cohort.spec import TRUTHS
from workbench.errors import CohortError

# preset -> (sites, patients per site)
# The evaluation cohorts' seed (docs/architecture.md §9): benchmarks and the demo score cohorts drawn with it, a
# seed no training cohort (small seeds), corpus (77 077, 90 210, ...) or sweep uses.
EVAL_SEED = 1_000_003

PRESETS: dict[str, tuple[int, int]] = {"tiny": (3, 8), "small": (4, 40), "full": (4, 500)}


@dataclass(frozen=True)
class CohortConfig:
    """A cohort request. ``sites`` / ``patients`` override the preset's sizes when given."""

    preset: str = "small"  # tiny | small | full
    sites: int | None = None  # number of hospitals
    patients: int | None = None  # patients per hospital
    seed: int = 0  # everything (truth, notes, images, splits) follows from it
    workers: int = 2  # processes rendering in parallel
    transfer_syntax: str | None = None  # force one syntax for every site (jpegls | rle | explicit)
    truth: str = "brock"  # brock (risk.py) | shifted (risk_shifted.py): the risk function that draws the labels

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise CohortError(f"unknown preset {self.preset!r}: choose one of {', '.join(PRESETS)}")
        if self.sites is not None and not 1 <= self.sites <= 64:
            raise CohortError(f"--sites {self.sites}: need 1 to 64 sites")
        if self.patients is not None and not 1 <= self.patients <= 100_000:
            raise CohortError(f"--patients {self.patients}: need 1 to 100000 patients per site")
        if self.transfer_syntax not in (None, "jpegls", "rle", "explicit"):
            raise CohortError(f"unknown transfer syntax {self.transfer_syntax!r}: jpegls, rle or explicit")
        if self.truth not in TRUTHS:
            raise CohortError(f"unknown truth {self.truth!r}: choose one of {', '.join(TRUTHS)}")

    @property
    def n_sites(self) -> int:
        return self.sites if self.sites is not None else PRESETS[self.preset][0]

    @property
    def n_patients(self) -> int:
        return self.patients if self.patients is not None else PRESETS[self.preset][1]
