"""The case-review screen of ``notebooks/03_case_review.ipynb``: browser, CT viewer, note, risk, similar, what-if.

``CaseReview(run, cohort).widget`` lists a split's cases (site, label, refer flag, search), and for the chosen
case shows the nodule card (size, type, lobe, Lung-RADS, measured from the CT), the CT with the attribution overlay and the nodule marker, the de-identified note with highlighted
words, the gate bar, the risk with its interval, set and refer badge, the same site's most similar training
cases, and a what-if editor that re-scores an edited note. Nothing identifying is displayed: the note is the
de-identified text, the CT is pixels, the case is named by its id.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np


class CaseReview:
    def __init__(self, run: str | Path, cohort: str | Path, *, split: str = "test", steps: int = 32) -> None:
        import ipywidgets as w

        from workbench.data.case import load_cases
        from workbench.explain.case import case_uncertainty
        from workbench.runtime.predict import predict
        from workbench.runtime.run import load_run, site_dirs_of
        from workbench.runtime.run_uncertainty import UNCERTAINTY_FILE, RunUncertainty
        from workbench.ui.panels import case_browser

        self.run, self.steps = Path(run), steps
        self.model, self.calibration = load_run(run)
        self.uncertainty = RunUncertainty.load(run) if (self.run / UNCERTAINTY_FILE).is_file() else None
        # the calibrators and similar-case indexes, read once for the list, the panels and every what-if
        self.loaded: dict[str, Any] = {"uncertainty": self.uncertainty}
        self.cases: dict[str, tuple[Any, Path]] = {}
        rows = []
        for site in site_dirs_of(cohort):
            for c in load_cases(site):
                if c.split != split:
                    continue
                self.cases[c.case_id] = (c, site)
                refer, risk = None, None
                try:
                    pred = predict(self.model, c, calibration=self.calibration)
                    # the same assessment the case's own panel shows (similar-case index included), so the
                    # uncertain-only filter and the panel never disagree
                    a, _ = case_uncertainty(self.run, site.name, c.case_id, self.model, pred, [], loaded=self.loaded)
                    risk, refer = (a.probability, a.refer) if a is not None else (pred.probability, None)
                except Exception:  # noqa: BLE001 - a refused case is listed without risk or flag
                    pass
                rows.append({"case_id": c.case_id, "site": site.name, "label": c.label, "refer": refer,
                             "risk": risk, "lung_rads": None})
        # the viewer keeps its size (a squeezed image would put clicks and the caliper off its pixels); the panels
        # beside it take the rest of the width and scroll if they must
        self.viewer_box = w.VBox(layout=w.Layout(flex="0 0 auto", max_width="600px"))
        self.risk, self.gate, self.similar, self.note = w.HTML(), w.HTML(), w.HTML(), w.HTML()
        self.card = w.HTML()
        self.what_if_box = w.VBox()
        self.title = w.HTML()
        self.rows = {r["case_id"]: r for r in rows}  # Lung-RADS is filled in as each case is measured (show)
        self.browser = case_browser(rows, self.show)
        panels = w.VBox([self.card, self.risk, self.gate, self.similar],
                        layout=w.Layout(flex="1 1 auto", min_width="380px", overflow="auto"))
        self.measure_button = w.Button(description="measure all (Lung-RADS column)", layout=w.Layout(width="260px"))
        self.measure_progress = w.IntProgress(value=0, min=0, max=max(len(rows), 1), description="measured")
        self.measure_button.on_click(lambda _: self.measure_all())
        self.widget = w.VBox([self.browser, w.HBox([self.measure_button, self.measure_progress]), self.title,
                              w.HBox([self.viewer_box, panels]), self.note, self.what_if_box])
        self.viewer: Any = None
        if rows:
            self.browser.choose(rows[0]["case_id"])  # the open case is highlighted in the list
            self.show(rows[0]["case_id"])

    def measure_all(self, limit: int | None = None) -> int:
        """Measure every listed case not yet measured (a few seconds each) and fill the list's Lung-RADS column;
        a case that cannot be measured keeps "-". Returns how many were measured."""
        from workbench.runtime.nodule_card import nodule_card

        todo = [i for i, r in self.rows.items() if r.get("lung_rads") is None][:limit]
        self.measure_progress.max = max(len(todo), 1)
        self.measure_progress.value = 0
        done = 0
        for case_id in todo:
            card = nodule_card(self.cases[case_id][0], [])
            if card.get("lung_rads"):
                self.rows[case_id]["lung_rads"] = card["lung_rads"]
                done += 1
            self.measure_progress.value += 1
        self.browser.refresh()
        return done

    def show(self, case_id: str) -> None:
        import ipywidgets as w

        from workbench.data.deid import deidentify
        from workbench.data.dicom_io import load_ct_series
        from workbench.explain.attributions import explain
        from workbench.explain.case import case_uncertainty
        from workbench.explain.counterfactual import direction_flag
        from workbench.runtime.encode import encode_note
        from workbench.runtime.nodule_card import nodule_card
        from workbench.runtime.predict import predict
        from workbench.ui.panels import (
            gate_html,
            nodule_card_html,
            note_html,
            risk_html,
            similar_html,
            what_if,
        )

        case, site = self.cases[case_id]
        pred = predict(self.model, case, calibration=self.calibration)
        exp = explain(self.model, pred.inputs, case_id, steps=self.steps)
        notes: list[str] = []
        assessment, similar = case_uncertainty(self.run, site.name, case_id, self.model, pred, notes, loaded=self.loaded)
        self.title.value = f"<h3>{case_id} ({site.name})</h3>" + "".join(f"<div><i>{n}</i></div>" for n in [*pred.notes, *exp.notes])
        vol = (load_ct_series(case.series_dir)  # decoded once: the viewer and the nodule card read it
               if case.series_dir is not None and case.nodule_lps_mm is not None else None)
        measurement = self._measure(vol, case.nodule_lps_mm, case_id) if vol is not None else None
        if vol is not None:
            assert case.nodule_lps_mm is not None
            try:
                self.viewer = self._viewer(vol, case.nodule_lps_mm, exp.ct_attribution, case_id, measurement)
                self.viewer_box.children = [self.viewer.widget]
            except ValueError as exc:  # an oblique or permuted series: not shown with wrong labels
                self.viewer = None
                self.viewer_box.children = [w.HTML(f"<i>CT not shown: {exc}</i>")]
        else:
            self.viewer = None
            self.viewer_box.children = [w.HTML("<i>no CT for this case</i>")]
        card_notes: list[str] = []
        card = nodule_card(case, card_notes, vol, measurement=measurement,
                           probability=assessment.probability if assessment is not None else pred.probability,
                           interval=assessment.interval if assessment is not None else None)
        self.card.value = nodule_card_html(card, card_notes)
        if card.get("lung_rads"):
            self.rows[case_id]["lung_rads"] = card["lung_rads"]
        self.risk.value = risk_html(assessment.probability if assessment is not None else pred.probability, assessment)
        self.gate.value = gate_html(exp.gate, exp.present)
        from workbench.runtime.run_uncertainty import SIMILAR_DIR
        from workbench.ui.similar_cards import similar_cards

        # thumbnail, measured nodule and outcome of each similar case, cached in the RUN's per-site similar folder
        self.similar.value = similar_html(similar_cards(similar, site, self.run / SIMILAR_DIR / site.name))
        self.note.value = (note_html(exp.words, exp.word_attribution, text=deidentify(case.note) if case.note else None)
                           if exp.word_attribution is not None else "<i>no note</i>")
        if case.note:
            clean = encode_note(case.note, self.model.tokenizer, self.model.config.text.max_length)[1]

            def rescore(text: str) -> float:
                """The same risk as shown above (inside its interval), for the edited note."""
                edited = predict(self.model, dataclasses.replace(case, note=text), calibration=self.calibration)
                a, _ = case_uncertainty(self.run, site.name, case_id, self.model, edited, [], loaded=self.loaded)
                return a.probability if a is not None else edited.probability

            self.what_if_box.children = [w.HTML("<b>what if: edit the de-identified note and re-score</b>"),
                                         what_if(clean, rescore, flag=direction_flag)]
        else:
            self.what_if_box.children = []

    @staticmethod
    def _measure(vol: Any, nodule_lps: tuple[float, float, float] | None, case_id: str) -> Any:
        """The nodule measured once on the loaded series, for both the card and the viewer's outline (None: it
        cannot be measured; the card then says why)."""
        from workbench.errors import WorkbenchError
        from workbench.runtime.measure import measure_image

        if nodule_lps is None:
            return None
        try:
            return measure_image(vol, nodule_lps, where=case_id)
        except WorkbenchError:
            return None

    @staticmethod
    def _viewer(vol: Any, nodule_lps: tuple[float, float, float], attribution: np.ndarray | None, case_id: str,
                measurement: Any = None) -> Any:
        """The CT viewer of a loaded series: RAS-ordered, with its spacing and origin (positions in mm, aspect from
        the voxel size), the attribution placed at the nodule, and the outline of the nodule as measured (the same
        ``measure_nodule`` fit as the card; no outline when it cannot be measured)."""
        from workbench.ui.ct_viewer import CTViewer, series_layers

        ras = series_layers(vol, nodule_lps, attribution, measurement)
        # the marker snapped to the voxel that holds it: the viewer opens on that slice
        return CTViewer(ras["hu"], ras.get("overlay"), np.round(ras["marker"]), spacing_mm=ras["spacing_mm"],
                        origin_ras=ras["origin_ras"], mask=ras.get("mask"))

__all__ = ["CaseReview"]
