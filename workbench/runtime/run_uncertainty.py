"""A RUN's uncertainty, per site: calibration, conformal sets, Venn-Abers intervals, the refer flag and the
similar-case indexes, fitted once (``workbench calibrate RUN TARGET``) and kept in the RUN.

Per site, from that site's own cases only:
- ``calibration``: Platt scaling (temperature and bias) on the site's ``val`` split when it has at least
  ``min_val_own`` cases with ``min_val_own_per_class`` of each class, else the RUN's pooled calibration (a site's
  own fit on a few dozen cases was worse calibrated than the pooled one: ``workbench.bench.calibration_sweep``);
- ``conformal``: Mondrian split-conformal thresholds at 1 - alpha, per class: from the site's ``calib`` split when
  the site has ``min_per_class`` calib cases of that class, else from every site's calib cases of that class
  (pooled: the rarer malignant class usually is, at a hospital's scale);
- ``venn_abers``: the site's calib scores and labels when both classes reach ``min_per_class``, else pooled;
- ``stated``: a smooth stated risk and its interval (``workbench.runtime.stated_risk``): Platt scaling on every
  site's ``train``, ``val`` and ``calib`` cases together, pooled (``stated_fit``, ``stated_min_own``; the training
  cases only where the model's slope on them agrees with the held-out cases': ``fit_stated``), with a bootstrap
  interval of that fit: the risk every report states (``stated_risk = "platt"``, the default; ``"venn_abers"``
  states the Venn-Abers point estimate in its [p0, p1] instead);
- ``ood_threshold``: the ``ood_quantile`` of the site's calib cases' distance to their k-th nearest training
  case of the same site (``similar.SiteIndex.knn_distance``);
- ``similar/<site>/``: the FAISS index of the site's training cases, by the nodule (the CT reader's finding
  vector) and the fused embedding, weighted (``similar.SimilarityConfig``); the OOD distance above is on the
  same vectors.
Calibration is fitted on ``val`` and conformal on ``calib``: the conformal guarantee needs the score fixed before
the calib cases are seen.

In a **DP run** (``UncertaintyConfig.pool = False``, which ``calibrate_run`` sets whenever the RUN's federation
used DP) nothing is pooled: every calibrator of a site is fitted by that site's node from its own records
(``fit_site_uncertainty`` sees no other site's data) and stays there; a site with too few val cases keeps the
public prior correction alone, a class with too few calib cases is in every set, and a warning says so. Each
site's ``sources`` names who fitted what ("site" or "pooled", "prior" where nothing was fitted).

A case is referred to a clinician when its set is not one label (both: the model cannot tell at this level;
none: no label fits) or when it lies out of distribution (farther from its site's training cases than all but
``1 - ood_quantile`` of that site's calib cases).

RUN/
  uncertainty.json    config, pooled and per-site calibrators, OOD thresholds, where each came from
  similar/<site>/     index.faiss + cases.json (ids, labels, de-identified notes, similarity settings): node-local;
                      cards.json: the similar cases' thumbnails and measurements, cached by the review screen
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from workbench.atomic import write_text
from workbench.errors import WorkbenchError
from workbench.runtime.calibration import Calibration, fit_calibration
from workbench.runtime.encode import EncodedCases
from workbench.runtime.similar import SimilarityConfig, SiteIndex
from workbench.runtime.stated_risk import StatedRisk
from workbench.runtime.uncertainty import CLASSES, MondrianConformal, VennAbers

UNCERTAINTY_FILE = "uncertainty.json"
SIMILAR_DIR = "similar"


@dataclass
class UncertaintyConfig:
    alpha: float = 0.1  # 90% prediction sets
    # calib cases of a class a site needs for its own threshold of that class, else the pooled one: with n cases
    # the set over-covers by up to 1/(n + 1), and for n < 1/alpha the threshold is the class's worst calib case
    min_per_class: int = 30
    min_val: int = 30  # val cases a site needs for its own Platt scaling when nothing is pooled (a DP run) ...
    min_val_per_class: int = 8  # ... with at least this many of each class (else the public prior alone)
    # where a pooled calibration exists, a site's own Platt replaces it only from this many val cases (of each
    # class): chosen on val by workbench.bench.calibration_sweep (bench/results/calibration_sweep_val.jsonl: from
    # 30 cases the worst site's error against the true risk was 0.077, from 150 (pooled at the full preset) 0.050)
    min_val_own: int = 150
    min_val_own_per_class: int = 30
    ood_k: int = 10  # the k of the k-th nearest training case
    ood_quantile: float = 0.99  # calib cases farther than this quantile are out of distribution
    pool: bool = True  # pooled fallbacks across sites; False in DP runs: each site's own records only
    # the stated risk: "platt" (a smooth calibration with a bootstrap interval, workbench.runtime.stated_risk) or
    # "venn_abers" (the Venn-Abers point estimate in its [p0, p1], the earlier default); "platt" fits on
    # "train+val+calib", "val+calib" or "val" (stated_fit; training cases only where the model's slope on them
    # agrees with the held-out cases': fit_stated), one pooled fit for every site unless stated_min_own > 0 (then
    # a site's own from that many fit cases, min_val_own_per_class of each class). Chosen on the training cohort's
    # val and calib cases with the FedAvg models of bench explain (workbench.bench.calibration_sweep,
    # bench/results/calibration_sweep_val.jsonl): worst site's error against the true risk 0.040 for the pooled
    # Platt on train+val+calib, 0.042 on val+calib, 0.045 on val alone, 0.052 for Venn-Abers; a site's own fit on
    # train+val+calib (about 390 cases a site) 0.053
    stated_risk: str = "platt"
    stated_fit: str = "train+val+calib"
    stated_min_own: int = 0
    # > 0: a site on the pooled stated fit gets its own intercept shift, shrunk by n / (n + k) (StatedRisk.shifted)
    stated_site_shift_k: float = 0.0


@dataclass
class SiteUncertainty:
    site: str  # "pooled" for the all-site fallback
    calibration: Calibration
    conformal: MondrianConformal
    venn_abers: VennAbers
    ood_threshold: float | None = None  # None: no index (the pooled fallback)
    ood_k: int = 10  # the k used for this site (at most its number of training cases)
    sources: dict[str, str] = field(default_factory=dict)  # calibrator -> "site" or "pooled"
    n: dict[str, int] = field(default_factory=dict)  # cases per split used
    stated: StatedRisk | None = None  # None: a RUN calibrated before the stated risk had its own fit (Venn-Abers)

    def to_dict(self) -> dict[str, Any]:
        return {"site": self.site, "calibration": self.calibration.to_dict(), "conformal": self.conformal.to_dict(),
                "venn_abers": self.venn_abers.to_dict(), "ood_threshold": self.ood_threshold, "ood_k": self.ood_k,
                "sources": self.sources, "n": self.n, "stated": self.stated.to_dict() if self.stated else None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SiteUncertainty:
        return cls(d["site"], Calibration.from_dict(d["calibration"]), MondrianConformal.from_dict(d["conformal"]),
                   VennAbers(scores=list(d["venn_abers"]["scores"]), labels=list(d["venn_abers"]["labels"])),
                   d.get("ood_threshold"), int(d.get("ood_k", 10)), dict(d.get("sources", {})), dict(d.get("n", {})),
                   StatedRisk.from_dict(d["stated"]) if d.get("stated") else None)


@dataclass
class Assessment:
    """What a clinician sees next to the risk: how sure, and whether to refer.

    ``probability`` is the one risk every screen and report states, and it always lies inside ``interval``: the
    site's smooth stated-risk calibration (``workbench.runtime.stated_risk``, ``stated_risk = "platt"``, the
    default) in the 95% bootstrap interval of that calibration ([0, 1] when too few cases to calibrate), or with
    ``stated_risk = "venn_abers"`` (and for a RUN calibrated before the stated risk had its own fit) the
    Venn-Abers point estimate p1 / (1 - p0 + p1) in its [p0, p1].
    Stating one calibration's risk beside another's interval put the risk outside its own interval for most cases
    (issue 16: inside for 21% of the full preset's test cases). ``calibrated_probability`` is the val-fitted
    calibration the conformal set and the refer flag are computed from. Why this choice:
    data_cards/explanations.md."""

    probability: float
    interval: tuple[float, float]  # around ``probability`` (``interval_method`` says how)
    prediction_set: list[str]
    refer: bool
    reasons: list[str]
    ood_distance: float | None
    out_of_distribution: bool | None  # None: not assessable (no index for the site)
    calibrated_by: str  # the site whose calibrators were used, or "pooled"
    interval_method: str = "inductive Venn-Abers on calib"
    coverage_target: float = 0.9
    interval_point: float | None = None  # Venn-Abers' point estimate p1 / (1 - p0 + p1), where Venn-Abers is stated
    interval_calib_cases: int = 0  # how many cases the interval rests on (few: a wide interval)
    calibrated_probability: float | None = None  # the site's Platt/prior-calibrated probability (sets, refer flag)
    risk_method: str = ""  # how ``probability`` was made, in words a report can print
    plain_reasons: list[str] = field(default_factory=list)  # ``reasons`` in words a clinician reads (``uncertain_line``)

    @property
    def uncertain_line(self) -> str | None:
        """The one line a clinician sees when the model is unsure; None when it is not (``refer`` is False)."""
        if not self.refer:
            return None
        why = "; ".join(self.plain_reasons) or "the model cannot place this case"
        return f"Model uncertain: needs a radiologist's read ({why})"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "interval": list(self.interval)}


@dataclass
class RunUncertainty:
    config: UncertaintyConfig
    pooled: SiteUncertainty | None  # None in DP runs: nothing pooled across sites
    sites: dict[str, SiteUncertainty]
    warnings: list[str] = field(default_factory=list)  # what makes these calibrators weaker than they look

    def for_site(self, site: str) -> SiteUncertainty:
        if site in self.sites:
            return self.sites[site]
        if self.pooled is None:
            raise WorkbenchError(f"no calibrators for site {site!r} in this RUN (a DP run pools nothing across "
                                 f"sites; calibrated sites: {', '.join(sorted(self.sites)) or 'none'})")
        return self.pooled

    def assess(self, site: str, logits: np.ndarray, fused: np.ndarray | None = None,
               index: SiteIndex | None = None, nodule: np.ndarray | None = None) -> list[Assessment]:
        """Each case's probability, interval, set and refer flag, with the calibrators of its own site.
        ``fused`` and ``nodule`` (``predict_logits``' keys): what the site's index compares a case by (an index
        that weighs the nodule needs both; the OOD threshold was fitted on the same vectors)."""
        su = self.for_site(site)
        p = su.calibration.apply(np.asarray(logits, dtype=float))
        sets = su.conformal.sets(p)
        stated, band, method, band_method, band_cases, va_point = self._stated(su, np.asarray(logits, dtype=float), p)
        dist = None
        if index is not None and fused is not None and su.ood_threshold is not None:
            if index.site != site:
                raise WorkbenchError(f"similar-case index of {index.site} queried for a case of {site}: "
                                     "indexes never serve another site")
            dist = index.knn_distance(fused, su.ood_k, nodule)
        out = []
        for i in range(len(p)):
            labels = [c for j, c in enumerate(CLASSES) if sets[i, j]]
            reasons, plain = [], []
            if len(labels) == 2:
                reasons.append(f"the {1 - self.config.alpha:.0%} set holds both classes")
                plain.append("its risk lies where this hospital's benign and malignant cases overlap")
            elif not labels:
                reasons.append(f"no class fits at the {1 - self.config.alpha:.0%} level (empty set)")
                plain.append("it resembles neither the benign nor the malignant cases the model was checked on")
            ood = None
            if dist is not None and su.ood_threshold is not None:
                ood = bool(dist[i] > su.ood_threshold)
                if ood:
                    reasons.append(f"out of distribution: distance {dist[i]:.3f} to the {su.ood_k}th nearest "
                                   f"{site} training case exceeds {su.ood_threshold:.3f} "
                                   f"({self.config.ood_quantile:.0%} of {site} calib cases lie closer)")
                    plain.append("it is unlike the cases this hospital trained on")
            elif site not in self.sites:
                reasons.append(f"no calibrators for site {site!r}: pooled ones used, distribution not checked")
                plain.append("this hospital has no calibration cases of its own")
            out.append(Assessment(float(stated[i]), (float(band[i, 0]), float(band[i, 1])), labels,
                                  len(labels) != 1 or bool(ood), reasons, None if dist is None else float(dist[i]),
                                  ood, site if site in self.sites else "pooled", interval_method=band_method,
                                  coverage_target=1 - self.config.alpha,
                                  interval_point=None if va_point is None else float(va_point[i]),
                                  interval_calib_cases=band_cases, calibrated_probability=float(p[i]),
                                  risk_method=method, plain_reasons=plain))
        return out

    def _stated(self, su: SiteUncertainty, z: np.ndarray, p: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, str, str, int, np.ndarray | None]:
        """The stated risks and their intervals for logits ``z`` (``p``: their val-calibrated probabilities), how
        each was made, how many cases the interval rests on, and the Venn-Abers point (only where Venn-Abers is
        stated: its two isotonic fits per case are the costliest step of an assessment)."""
        if su.stated is not None and self.config.stated_risk == "platt":
            risk, band = su.stated.apply(z)
            if not su.stated.boot:
                return (risk, band, "calibrated probability (too few cases to calibrate: no interval)",
                        "no interval: too few cases to calibrate", 0, None)
            n = su.stated.calibration.n
            return (risk, band, f"calibrated risk (Platt scaling on {n} {su.sources.get('stated', 'site')} cases)",
                    f"{su.stated.level:.0%} bootstrap interval of the calibration", n, None)
        intervals = su.venn_abers.interval(p)
        points = VennAbers.point(intervals)
        n_calib = len(su.venn_abers.labels)
        if not n_calib:
            return p, intervals, "calibrated probability (no calib case: no interval)", \
                "inductive Venn-Abers on calib", 0, points
        return points, intervals, "Venn-Abers point estimate", "inductive Venn-Abers on calib", n_calib, points

    def to_dict(self) -> dict[str, Any]:
        return {"config": asdict(self.config), "pooled": self.pooled.to_dict() if self.pooled else None,
                "sites": {s: u.to_dict() for s, u in self.sites.items()}, "warnings": self.warnings}

    def save(self, run: str | Path) -> Path:
        path = Path(run) / UNCERTAINTY_FILE
        write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, run: str | Path) -> RunUncertainty:
        path = Path(run) / UNCERTAINTY_FILE
        if not path.is_file():
            raise WorkbenchError(f"{run}: no {UNCERTAINTY_FILE} (run `workbench calibrate {run} COHORT` first)")
        d = json.loads(path.read_text(encoding="utf-8"))
        return cls(UncertaintyConfig(**d["config"]), SiteUncertainty.from_dict(d["pooled"]) if d.get("pooled") else None,
                   {s: SiteUncertainty.from_dict(u) for s, u in d["sites"].items()}, list(d.get("warnings", [])))


def site_index(run: str | Path, site: str) -> SiteIndex | None:
    """The site's similar-case index in the RUN, or None when it has none."""
    folder = Path(run) / SIMILAR_DIR / site
    return SiteIndex.load(folder) if (folder / "index.faiss").is_file() else None


@dataclass
class SiteData:
    """One site's model outputs on its splits: raw logits, fused embeddings, labels, case ids (train: + notes)."""

    logits: dict[str, np.ndarray]
    fused: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    case_ids: dict[str, list[str]]
    notes: dict[str, str] = field(default_factory=dict)  # train case id -> de-identified note
    # the CT reader's nodule vectors per split (predict_logits' "nodule"); the similar-case index weighs them with
    # the fused embeddings (similar.SimilarityConfig); absent: the fused part alone
    nodule: dict[str, np.ndarray] = field(default_factory=dict)
    similarity: SimilarityConfig | None = None  # None: SimilarityConfig()'s weight


def fit_uncertainty(data: dict[str, SiteData], pooled_calibration: Calibration,
                    config: UncertaintyConfig | None = None) -> tuple[RunUncertainty, dict[str, SiteIndex]]:
    """Fit every site's calibrators from its own cases (pooled fallbacks where a site has too few, unless
    ``config.pool`` is False: then each site's own records alone, ``fit_site_uncertainty`` per site)."""
    config = config or UncertaintyConfig()
    pos_weight = float(np.exp(pooled_calibration.logit_shift))
    if not config.pool:
        own: dict[str, SiteUncertainty] = {}
        own_indexes: dict[str, SiteIndex] = {}
        own_warnings: list[str] = []
        for site, d in data.items():
            su, index, w = fit_site_uncertainty(site, d, pos_weight, config)
            own[site] = su
            own_warnings += w
            if index is not None:
                own_indexes[site] = index
        return RunUncertainty(config, None, own, own_warnings), own_indexes
    cal = {}
    for site, d in data.items():
        yv = d.labels["val"]
        cal[site] = (fit_calibration(d.logits["val"], yv, pos_weight) if _enough_val(yv, config, pooled=True)
                     else pooled_calibration)
    p_calib = {s: cal[s].apply(d.logits["calib"]) for s, d in data.items()}
    all_p = np.concatenate([p_calib[s] for s in data] or [np.zeros(0)])
    all_y = np.concatenate([data[s].labels["calib"] for s in data] or [np.zeros(0)])
    if len(all_y) == 0:
        raise WorkbenchError("no calib case at any site: conformal sets and Venn-Abers intervals need the calib split")
    warnings = [f"no {c} case in any site's calib split: {c} is in every prediction set (nothing sets its "
                f"threshold), so every case whose set also holds the other class is referred"
                for i, c in enumerate(CLASSES) if not (all_y == i).any()]
    pooled_conf = MondrianConformal(config.alpha).fit(all_p, all_y)
    pooled_va = VennAbers().fit(all_p, all_y)
    pooled_stated, stated_note = fit_stated(list(data.values()), pos_weight, config)
    if stated_note:
        warnings.append(f"pooled: {stated_note}")
    pooled = SiteUncertainty("pooled", pooled_calibration, pooled_conf, pooled_va,
                             sources={"calibration": "pooled", "conformal": "pooled", "venn_abers": "pooled",
                                      "stated": "pooled"},
                             n={"calib": len(all_y)}, stated=pooled_stated)
    sites: dict[str, SiteUncertainty] = {}
    indexes: dict[str, SiteIndex] = {}
    for site, d in data.items():
        su, index, site_warnings = fit_site_uncertainty(site, d, pos_weight, config, pooled=pooled)
        warnings += [w for w in site_warnings if TRAIN_LEFT_OUT in w]  # the rest: covered by pooled
        sites[site] = su
        if index is not None:
            indexes[site] = index
    return RunUncertainty(config, pooled, sites, warnings), indexes


STATED_FITS = {"val": ("val",), "val+calib": ("val", "calib"), "train+val+calib": ("train", "val", "calib")}
TRAIN_LEFT_OUT = "training cases left out of the stated risk's fit"  # fit_stated's note; the RUN's warnings keep it


def _stated_cases(d: SiteData, config: UncertaintyConfig, held_out: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The logits and labels a site's stated risk is calibrated on (``config.stated_fit``; ``held_out``: without
    the training cases)."""
    if config.stated_fit not in STATED_FITS:
        raise WorkbenchError(f"unknown stated_fit {config.stated_fit!r} ({', '.join(STATED_FITS)})")
    splits = [s for s in STATED_FITS[config.stated_fit] if not (held_out and s == "train")]
    return (np.concatenate([np.asarray(d.logits.get(s, np.zeros(0)), dtype=float) for s in splits]),
            np.concatenate([np.asarray(d.labels.get(s, np.zeros(0)), dtype=float) for s in splits]))


def fit_stated(parts: list[SiteData], pos_weight: float, config: UncertaintyConfig,
               train: bool = True) -> tuple[StatedRisk, str | None]:
    """The stated risk's Platt fit on ``parts``' cases (``config.stated_fit``), and a note when training cases were
    left out of it.

    Why training cases may enter: the fit's intercept is limited by label noise, and the val and calib splits hold
    a few hundred labels (on the full preset 466, whose malignant share ran 0.016 above their true risk, which the
    fit states to every report). The training split holds 2.4 times as many. The model was fitted to them, so they
    are admitted only when the model's slope on them agrees with the held-out cases': a model that separates its
    own training cases more sharply than new ones (overfitting) has a smaller fitted temperature there, and then the
    training cases are left out and the note says why (the held-out fit's own 95% bootstrap range of temperatures
    is the yardstick). ``train`` False: held-out cases only (a DP run's node, where this was not measured)."""
    held = [_stated_cases(d, config, held_out=True) for d in parts]  # an unknown stated_fit fails here
    z_held, y_held = np.concatenate([z for z, _ in held]), np.concatenate([y for _, y in held])
    held_fit = StatedRisk.fit(z_held, y_held, pos_weight)
    held_fit.calibration.fitted_on = config.stated_fit.replace("train+", "")
    if not train or "train" not in STATED_FITS[config.stated_fit]:
        return held_fit, None
    z_train = np.concatenate([np.asarray(d.logits.get("train", np.zeros(0)), dtype=float) for d in parts])
    y_train = np.concatenate([np.asarray(d.labels.get("train", np.zeros(0)), dtype=float) for d in parts])
    if len(y_train) < 10 or not 0 < y_train.mean() < 1:
        return held_fit, None
    if not held_fit.boot:  # no yardstick: the training cases cannot be checked, so they stay out
        return held_fit, f"{TRAIN_LEFT_OUT}: {len(y_held)} held-out cases are too few to check the model's slope on them"
    t_train = fit_calibration(z_train, y_train, pos_weight).temperature
    lo, hi = np.quantile([t for t, _ in held_fit.boot], [0.025, 0.975])
    if not lo <= t_train <= hi:
        return held_fit, (f"{TRAIN_LEFT_OUT}: their temperature {t_train:.2f} is outside the held-out cases' 95% range "
                          f"[{lo:.2f}, {hi:.2f}]")
    both = StatedRisk.fit(np.concatenate([z_train, z_held]), np.concatenate([y_train, y_held]), pos_weight)
    both.calibration.fitted_on = config.stated_fit
    return both, None


def _enough_stated(y: np.ndarray, config: UncertaintyConfig, pooled: bool) -> bool:
    """Whether a site fits its own stated risk: against the public prior alone (a DP run) as ``_enough_val``
    says; where a pooled fit exists, only from ``stated_min_own`` cases (0: never)."""
    if not pooled:
        return _enough_val(y, config)
    return (config.stated_min_own > 0 and len(y) >= config.stated_min_own
            and min((y == 1).sum(), (y == 0).sum()) >= config.min_val_own_per_class)


def _enough_val(yv: np.ndarray, config: UncertaintyConfig, pooled: bool = False) -> bool:
    """Whether a site's val cases support its own Platt scaling: against the public prior alone (``pooled``
    False, a DP run) a few dozen do; against a pooled fit of every site's val cases it takes more."""
    n, per_class = (config.min_val_own, config.min_val_own_per_class) if pooled else (config.min_val,
                                                                                      config.min_val_per_class)
    return len(yv) >= n and min((yv == 1).sum(), (yv == 0).sum()) >= per_class


def fit_site_uncertainty(site: str, d: SiteData, pos_weight: float, config: UncertaintyConfig,
                         pooled: SiteUncertainty | None = None) -> tuple[SiteUncertainty, SiteIndex | None, list[str]]:
    """One site's calibrators from that site's records (``d``) and, where it has too few, ``pooled``'s; with
    ``pooled`` None (a DP run) from its own records alone: what a node fits at home. ``pos_weight``: the class
    weight the model was trained with (public: the DP prior's under DP). Returns the site's calibrators, its
    similar-case index and warnings."""
    warnings: list[str] = []
    yv = d.labels["val"]
    src: dict[str, str] = {}
    if _enough_val(yv, config, pooled=pooled is not None):
        cal, src["calibration"] = fit_calibration(d.logits["val"], yv, pos_weight), "site"
    elif pooled is not None:
        cal, src["calibration"] = pooled.calibration, "pooled"
    else:
        cal = Calibration(logit_shift=float(np.log(pos_weight)) if pos_weight > 0 else 0.0, fitted_on="prior only",
                          n=0)
        src["calibration"] = "prior"
        warnings.append(f"{site}: {len(yv)} val cases ({int((yv == 1).sum())} malignant), too few for its own "
                        f"calibration (needs {config.min_val} with {config.min_val_per_class} of each class); its "
                        "probabilities carry the public prior correction only (a DP run pools nothing)")
    # a DP run's node fits on its held-out cases: training cases in the fit were measured on pooled runs only
    z_stated, y_stated = _stated_cases(d, config, held_out=pooled is None)
    if _enough_stated(y_stated, config, pooled=pooled is not None):
        stated, note = fit_stated([d], pos_weight, config, train=pooled is not None)
        src["stated"] = "site"
        if note:
            warnings.append(f"{site}: {note}")
    elif pooled is not None and pooled.stated is not None and config.stated_site_shift_k > 0 and len(y_stated):
        stated, src["stated"] = pooled.stated.shifted(z_stated, y_stated, config.stated_site_shift_k), "pooled + site shift"
    elif pooled is not None and pooled.stated is not None:
        stated, src["stated"] = pooled.stated, "pooled"
    else:
        stated, src["stated"] = StatedRisk(cal), "prior"
        warnings.append(f"{site}: {len(y_stated)} cases ({int((y_stated == 1).sum())} malignant) to calibrate its "
                        f"stated risk, too few (needs {config.min_val} with {config.min_val_per_class} of each class): "
                        "its reports state the prior-corrected probability with the interval [0, 1]")
    y = d.labels["calib"]
    p_calib = cal.apply(d.logits["calib"])
    if pooled is not None:
        conf, own = _site_conformal(p_calib, y, pooled.conformal, config)
        va_own = len(own) == len(CLASSES)
        va = VennAbers().fit(p_calib, y) if va_own else pooled.venn_abers
        src.update({f"conformal_{c}": "site" if c in own else "pooled" for c in CLASSES})
        src["venn_abers"] = "site" if va_own else "pooled"
    else:
        conf = MondrianConformal(config.alpha).fit(p_calib, y)
        va = VennAbers().fit(p_calib, y) if len(y) else VennAbers()  # no calib case: the interval is [0, 1]
        src.update({f"conformal_{c}": "site" for c in CLASSES})
        src["venn_abers"] = "site"
        for i, c in enumerate(CLASSES):
            n_c = int((y == i).sum())
            if conf.thresholds[c] >= 1.0:
                warnings.append(f"{site}: {n_c} {c} calib case(s), too few for a {1 - config.alpha:.0%} threshold of "
                                f"its own: {c} is in every prediction set of this site (a DP run pools nothing)")
        if not len(y):
            warnings.append(f"{site}: no calib case: its risk intervals are [0, 1]")
    threshold, k, index = None, min(config.ood_k, len(d.case_ids["train"])), None
    if k > 0:
        ids = d.case_ids["train"]
        index = SiteIndex.build(site, d.fused["train"], ids, d.labels["train"].astype(int).tolist(),
                                [d.notes.get(c, "") for c in ids], d.nodule.get("train"), d.similarity)
        if len(y):  # the calib cases compared by the same vectors as the queries will be
            threshold = float(np.quantile(index.knn_distance(d.fused["calib"], k, d.nodule.get("calib")),
                                          config.ood_quantile))
    su = SiteUncertainty(site, cal, conf, va, threshold, max(k, 1), src, {s: len(v) for s, v in d.labels.items()},
                         stated)
    return su, index, warnings


def _site_conformal(p: np.ndarray, y: np.ndarray, pooled: MondrianConformal,
                    config: UncertaintyConfig) -> tuple[MondrianConformal, list[str]]:
    """Per class: the site's own threshold when the site has ``min_per_class`` calib cases of that class, else
    the pooled one (the taxonomy is class x site where a site can support it, class alone where not)."""
    counts = {c: int((y == i).sum()) for i, c in enumerate(CLASSES)}
    own = [c for c in CLASSES if counts[c] >= config.min_per_class]
    if not own:
        return pooled, []
    site = MondrianConformal(config.alpha).fit(p, y)
    conf = MondrianConformal(config.alpha, thresholds={c: (site if c in own else pooled).thresholds[c] for c in CLASSES},
                             n={c: (site if c in own else pooled).n[c] for c in CLASSES})
    return conf, own


def calibrate_run(run: str | Path, target: str | Path, config: UncertaintyConfig | None = None, *,
                  encoded: dict[str, EncodedCases] | None = None, cache_dir: str | Path | None = None,
                  progress: bool = True) -> dict[str, Any]:
    """Fit the RUN's per-site uncertainty on ``target``'s sites (a cohort or one site folder) and write it into
    the RUN; returns a summary (sources and OOD thresholds per site). ``encoded``: the splits already encoded
    (all sites pooled, as the benchmarks keep them), else they are encoded here. A RUN without a pooled
    calibration (a federation run with ``calibrate=False``) gets one, fitted on the pooled ``val`` split, unless
    the RUN was trained under DP: then nothing is pooled (``config.pool`` is forced off), each site's
    calibrators come from its own records, and the class weight is the public DP prior's."""
    from workbench.data.cache import PreprocessCache, default_cache_dir
    from workbench.data.case import load_cases
    from workbench.jsonout import write_json
    from workbench.runtime.encode import encode_cases, encode_note
    from workbench.runtime.inference import predict_logits
    from workbench.runtime.run import load_run, site_dirs_of

    model, pooled = load_run(run)
    assert model.tokenizer is not None
    dp = dp_run_config(run)
    if dp is not None:
        config = replace(config or UncertaintyConfig(), pool=False)
        prior = float(dp.get("dp-class-prior", 0.25))
        pooled = Calibration(logit_shift=float(np.log((1 - prior) / prior)), fitted_on="prior only (DP run)", n=0)
    cache = PreprocessCache(cache_dir if cache_dir is not None else default_cache_dir())
    data: dict[str, SiteData] = {}
    refused: list[tuple[str, str]] = []
    for site_dir in site_dirs_of(target):
        cases = load_cases(site_dir)
        d = SiteData({}, {}, {}, {})
        for split in ("train", "val", "calib"):
            if encoded is not None and split in encoded:
                pooled_split = encoded[split]
                enc = pooled_split.subset([i for i, s in enumerate(pooled_split.sites) if s == site_dir.name])
            else:
                enc = encode_cases([c for c in cases if c.split == split], model.tokenizer, cache=cache,
                                   modalities=model.modalities, max_length=model.config.text.max_length,
                                   progress=progress, desc=f"{site_dir.name} {split}")
            refused += enc.refused
            out = predict_logits(model, enc)
            d.logits[split], d.fused[split], d.labels[split], d.case_ids[split] = (
                out["logits"], out["fused"], enc.labels, enc.case_ids)
            d.nodule[split] = out["nodule"]
        train_ids = set(d.case_ids["train"])
        d.notes = {c.case_id: encode_note(c.note, model.tokenizer, model.config.text.max_length)[1]
                   for c in cases if c.case_id in train_ids and c.note}
        data[site_dir.name] = d
    if dp is not None and not (Path(run) / "calibration.json").is_file():
        write_json(Path(run) / "calibration.json", pooled.to_dict())
    if not (Path(run) / "calibration.json").is_file():
        pooled = fit_calibration(np.concatenate([d.logits["val"] for d in data.values()]),
                                 np.concatenate([d.labels["val"] for d in data.values()]))
        write_json(Path(run) / "calibration.json", pooled.to_dict())
    unc, indexes = fit_uncertainty(data, pooled, config)
    if unc.pooled is None and (Path(run) / UNCERTAINTY_FILE).is_file():  # a node adds its own site's, keeps others'
        before = RunUncertainty.load(run)
        if before.pooled is None:
            kept = {s: u for s, u in before.sites.items() if s not in unc.sites}
            unc = RunUncertainty(unc.config, None, {**kept, **unc.sites},
                                 [w for w in before.warnings if not any(w.startswith(f"{s}:") for s in unc.sites)]
                                 + unc.warnings)
    for site, index in indexes.items():
        index.save(Path(run) / SIMILAR_DIR / site)
    unc.save(run)
    return {"uncertainty": str(Path(run) / UNCERTAINTY_FILE),
            "sites": {s: {"sources": u.sources, "n": u.n, "ood_threshold": u.ood_threshold,
                          "conformal_thresholds": u.conformal.thresholds} for s, u in unc.sites.items()},
            "warnings": unc.warnings, "pooled": unc.pooled is not None,
            "refused": [list(r) for r in dict.fromkeys(refused)]}


def dp_run_config(run: str | Path) -> dict[str, Any] | None:
    """The federated config of a RUN trained under DP (from its rounds.json), else None."""
    path = Path(run) / "rounds.json"
    if not path.is_file():
        return None
    cfg = json.loads(path.read_text(encoding="utf-8")).get("config", {})
    return cfg if cfg.get("dp") else None


__all__ = ["Assessment", "RunUncertainty", "SiteUncertainty", "UncertaintyConfig", "calibrate_run",
           "dp_run_config", "fit_site_uncertainty", "fit_uncertainty", "site_index"]
