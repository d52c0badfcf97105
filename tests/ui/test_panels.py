"""The review panels as the HTML and widget state they produce: escaping, numbers shown, browser filters, what-if."""

from __future__ import annotations

import html
import re
from dataclasses import replace

import numpy as np

from workbench.runtime.run_uncertainty import Assessment
from workbench.ui.panels import case_browser, case_row, gate_html, note_html, risk_html, similar_html, what_if


def test_the_gate_bar_is_proportional_and_says_which_modality_was_absent() -> None:
    out = gate_html({"ct": 0.75, "notes": 0.25})
    assert re.findall(r"width:(\d+)px", out) == ["150", "50"] and "75%" in out and "25%" in out
    assert "(absent)" not in out
    absent = gate_html({"ct": 1.0, "notes": 0.0}, {"ct": True, "notes": False})
    assert absent.count("(absent)") == 1 and re.search(r"notes .*0% \(absent\)", absent)


def test_the_risk_badge_shows_interval_set_and_refer_reasons_escaped() -> None:
    unc = Assessment(probability=0.2049, interval=(0.12, 0.345), prediction_set=["benign", "malignant"], refer=True,
                     reasons=["both classes in the set", "<script>x</script>"], ood_distance=None,
                     out_of_distribution=None, calibrated_by="site_a", interval_method="venn-abers",
                     coverage_target=0.9, interval_calib_cases=40,
                     plain_reasons=["its risk lies where this hospital's benign and malignant cases overlap"])
    out = risk_html(0.2049, unc)
    assert "risk 20%" in out and "interval [12%, 34%] (venn-abers, 40 cases)" in out
    assert "90% set: {benign, malignant}" in out
    # one plain line for the clinician; the calibration jargon only behind "technical reasons"
    assert ("Model uncertain: needs a radiologist&#x27;s read (its risk lies where this hospital&#x27;s benign and "
            "malignant cases overlap)") in out
    assert out.index("Model uncertain") < out.index("technical reasons") < out.index("both classes in the set")
    assert "<script>" not in out and "&lt;script&gt;" in out
    calm = risk_html(0.05, replace(unc, refer=False, prediction_set=["benign"], coverage_target=0.8))
    assert "not flagged as uncertain" in calm and "Model uncertain" not in calm and "80% set: {benign}" in calm
    bare = risk_html(0.5, None)
    assert "not calibrated" in bare and "workbench calibrate" in bare and "interval [" not in bare


def test_similar_cases_show_thumbnail_size_type_lobe_outcome_and_similarity_escaped() -> None:
    assert "no similar-case index" in similar_html([])
    png = "iVBORw0KGgo="  # (the base64 of a PNG: embedded as it is)
    rows = [{"case_id": "site_a_001", "label": 1, "similarity": 0.9876, "note": "hospital header " * 20,
             "nodule_weight": 0.7, "nodule_cosine": 0.95, "fused_cosine": 0.9, "thumbnail_png": png,
             "thumbnail_mm": 40.0, "mean_diameter_mm": 21.04, "long_axis_mm": 23.0, "short_axis_mm": 19.1,
             "nodule_type": "part_solid", "solid_component_mm": 6.0, "lobe": "RUL", "snippet": "x" * 200},
            {"case_id": "site_a_<2>", "label": 0, "similarity": 0.5, "note": "", "nodule_weight": 0.7,
             "nodule_cosine": None, "fused_cosine": 0.71, "no_thumbnail": "no CT <series>",
             "unmeasured": "no nodule found at <mark>", "snippet": "short & sweet"}]
    out = similar_html(rows, max_note=140)
    assert out.count("<tr>") == 3 and "0.99" in out and "0.50" in out
    assert "malignant" in out and "benign" in out
    assert f"src='data:image/png;base64,{png}'" in out and out.count("<img") == 1
    assert "21.0 mm (23.0 x 19.1)" in out and "part-solid, solid component 6.0 mm" in out and "right upper lobe" in out
    assert "nodule 0.95, patient 0.90" in out and "patient 0.71" in out and "0.7 x nodule" in out
    assert "x" * 140 + "..." in out and "x" * 141 not in out and "hospital header" not in out  # never the header
    assert "site_a_&lt;2&gt;" in out and "short &amp; sweet" in out
    assert "not measured: no nodule found at &lt;mark&gt;" in out and "no CT &lt;series&gt;" in out
    legacy = similar_html([{"case_id": "a", "label": 0, "similarity": 0.8, "note": "n", "nodule_weight": 0.0}])
    assert "cosine of the fused embedding" in legacy


def test_note_words_are_escaped_and_shaded_by_their_attribution() -> None:
    out = note_html(["nodule", "<b>", "benign"], np.array([0.8, 0.0, -0.4]))
    assert "&lt;b&gt;" in out and "<b>" not in out
    assert "rgb(255,0,0)" in out  # the strongest word, raising the risk: full red
    assert "rgb(127,127,255)" in out  # half as strong, lowering it: half blue
    assert 'title="+0.800"' in out and 'title="-0.400"' in out


def test_the_case_browser_filters_by_site_label_search_and_refer_and_selects() -> None:
    cases = [{"case_id": "a_001", "site": "a", "label": 1, "refer": True, "risk": 0.374, "lung_rads": "4A"},
             {"case_id": "a_002", "site": "a", "label": 0, "refer": False},
             {"case_id": "b_001", "site": "b", "label": 1, "refer": None},
             {"case_id": "b_002", "site": "b", "label": 0, "refer": True}]
    chosen: list[str] = []
    box = case_browser(cases, chosen.append)
    sites, labels = box.children[0].children
    search, refer = box.children[1].children
    assert [v for _, v in box.select.options] == ["a_001", "a_002", "b_001", "b_002"]
    first = box.select.options[0][0]
    assert first == case_row(cases[0]) and "risk  37%" in first and "Lung-RADS 4A" in first and "uncertain" in first
    assert box.select.options[2][0].endswith("not assessed")  # no flag computed: said, not left blank
    labels.value = "malignant"
    assert [v for _, v in box.select.options] == ["a_001", "b_001"]
    sites.value = "b"
    assert box.matching() == ["b_001"]
    labels.value, sites.value = "all", "all"
    refer.value = True
    assert [v for _, v in box.select.options] == ["a_001", "b_002"]
    search.value = "B_0"
    assert [v for _, v in box.select.options] == ["b_002"]
    box.select.value = "b_002"
    assert chosen == ["b_002"]


def test_what_if_rescores_the_edited_note() -> None:
    seen: list[str] = []

    def rescore(text: str) -> float:
        seen.append(text)
        return 0.9 if "spiculated" in text else 0.1

    box = what_if("smooth nodule", rescore)
    assert box.result.value == "risk with the original note: 10%" and seen == ["smooth nodule"]
    box.text.value = "spiculated nodule"
    box.rescore(None)
    assert box.result.value == "risk with this note: 90% (original 10%, +80 points)" and seen[-1] == "spiculated nodule"


def test_what_if_flags_a_change_against_the_published_direction() -> None:
    from workbench.explain.counterfactual import direction_flag

    box = what_if("She has never smoked.", lambda t: 0.13 if "never" in t else 0.11, flag=direction_flag)
    box.text.value = "She is a current smoker with a 40 pack-year history."
    box.rescore(None)
    assert "(original 13%, -2 points)" in box.result.value and "what-if-flag" in box.result.value
    box.text.value = "She has never smoked. No family history of lung cancer."
    box.rescore(None)
    assert "what-if-flag" not in box.result.value  # nothing published changed


def test_the_nodule_card_shows_the_measurement_or_says_why_there_is_none() -> None:
    from workbench.ui.panels import nodule_card_html

    card = {"long_axis_mm": 11.24, "short_axis_mm": 9.0, "mean_diameter_mm": 10.1, "volume_mm3": 612.0,
            "solid_component_mm": 3.0, "nodule_type": "part_solid", "lobe": "LLL", "lung_rads": "3",
            "lung_rads_management": "6-month LDCT.", "measurement_caveats": ["touches a vessel <of its width>"]}
    out = nodule_card_html(card)
    assert "11.2 x 9.0 mm (mean 10.1 mm)" in out and "part-solid, solid component 3.0 mm" in out
    assert "left lower lobe" in out and "Lung-RADS v2022</td><td>3: 6-month LDCT." in out
    assert "check by eye: touches a vessel &lt;of its width&gt;" in out
    none = nodule_card_html({}, ["size: not measured (hospital_a_0001: nothing at the mark)", "other"])
    assert "nothing at the mark" in none and "other" not in none


def test_the_note_is_shown_as_written_with_the_models_words_shaded() -> None:
    text = "HPI: 66 yo F, Temperature 97.8 F.\nFH: <mother> w/ lung ca"
    words = ["hpi", ":", "66", "yo", "f", ",", "temperature", "97", ".", "8", "f", ".", "fh", ":", "<", "mother", ">",
             "w", "/", "lung", "ca"]
    scores = np.linspace(-1, 1, len(words))
    out = note_html(words, scores, text=text)
    plain = re.sub(r"<[^>]+>", "", out)
    assert html.unescape(plain) == text  # every character of the note, in order, nothing added
    assert "white-space:pre-wrap" in out and "&lt;mother&gt;" not in out  # escaped piece by piece
    assert '>Temperature</span>' in out and '>97</span><span' in out  # original case and spacing
    assert out.count("<span") == len(words)
