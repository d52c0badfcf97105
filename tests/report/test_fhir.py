"""The FHIR Bundle: valid R4B, references resolve, values in UCUM, AI-asserted label, no PHI in export."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from PIL import Image

from workbench.report.content import KeyImage, ModelProvenance, Patient, ReportContent, SourceSeries
from workbench.report.fhir import fhir_bundle, write_fhir

UCUM = "http://unitsofmeasure.org"
PHI = ["MRN123", "Doe", "Jane", "19550129", "1955-01-29", "ACC9"]


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (4, 4), 128).save(buf, format="PNG")
    return buf.getvalue()


def sample_content(mode: str) -> ReportContent:
    clinical = mode == "clinical"
    patient = Patient("MRN123", "Doe^Jane", "19550129", "F", "ACC9") if clinical else Patient()
    source = SourceSeries(study_uid="2.25.1234567890123456789", series_uid="2.25.2234567890123456789",
                          frame_of_reference_uid="2.25.3234567890123456789",
                          sop_class_uid="1.2.840.10008.5.1.4.1.1.2",  # CT image storage
                          sop_instance_uids=["2.25.4234567890123456781", "2.25.4234567890123456782"],
                          study_date="20240305" if clinical else "", study_time="101500" if clinical else "",
                          referring_physician="Smith^John" if clinical else "", manufacturer="SIEMENS")
    model = ModelProvenance(name="nodule-workbench fused CT + note model", version="sha256:0f3a9c",
                            training_sites=["hospital_a", "hospital_b"], federated=True,
                            epsilon={"hospital_a": 0.99, "hospital_b": 0.98}, delta=1e-5)
    return ReportContent(
        case_id="hospital_a_0042", mode=mode, created="2024-03-05T10:30:00+00:00", probability=0.37,
        interval=(0.31, 0.42), interval_method="Venn-Abers (inductive, calib split)",
        prediction_set=["benign", "malignant"], coverage_target=0.9, refer=True,
        refer_reasons=["the 90% prediction set holds both classes"], diameter_mm=8.4,
        finding_site="right lung",
        nodule_center_lps_mm=(62.5, -40.0, -120.0), modality_contributions={"ct": 0.55, "notes": 0.45},
        attention_rollout={"ct": 0.6, "notes": 0.4}, top_phrases=[("spiculated", 0.21)],
        key_images=[KeyImage("CT slice with attribution", _png())], model=model, patient=patient,
        source=source)


def _by_type(bundle: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for e in bundle["entry"]:
        out.setdefault(e["resource"]["resourceType"], []).append(e)
    return out


def _aiast(resource: dict[str, Any]) -> bool:
    label = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "AIAST",
             "display": "Artificial Intelligence asserted"}
    return label in resource.get("meta", {}).get("security", [])


@pytest.mark.parametrize("mode", ["export", "clinical"])
def test_bundle_and_every_resource_validate_as_r4b(mode: str) -> None:
    bundle = fhir_bundle(sample_content(mode))
    assert bundle["type"] == "collection"
    assert Bundle.model_validate(bundle).model_dump(mode="json", exclude_none=True) == bundle
    for e in bundle["entry"]:
        assert e["fullUrl"] == f"urn:uuid:{e['resource']['id']}"
        get_fhir_model_class(e["resource"]["resourceType"]).model_validate(e["resource"])
    assert len({e["fullUrl"] for e in bundle["entry"]}) == len(bundle["entry"])
    assert fhir_bundle(sample_content(mode)) == bundle  # deterministic ids


def test_references_resolve_within_the_bundle() -> None:
    bundle = fhir_bundle(sample_content("export"))
    t = _by_type(bundle)
    (report,), (device,), (patient,) = t["DiagnosticReport"], t["Device"], t["Patient"]
    (prov,) = t["Provenance"]
    observations = {e["fullUrl"] for e in t["Observation"]}
    assert len(observations) == 3
    results = {r["reference"] for r in report["resource"]["result"]}
    assert results == observations
    for e in t["Observation"]:
        assert e["resource"]["device"]["reference"] == device["fullUrl"]
        assert e["resource"]["subject"]["reference"] == patient["fullUrl"]
        assert e["resource"]["status"] == "final"
        assert e["resource"]["effectiveDateTime"].startswith("2024-03-05T10:30:00")
    assert report["resource"]["subject"]["reference"] == patient["fullUrl"]
    assert [a["who"]["reference"] for a in prov["resource"]["agent"]] == [device["fullUrl"]]
    assert {r["reference"] for r in prov["resource"]["target"]} == observations | {report["fullUrl"]}
    (study,) = t["ImagingStudy"]
    assert [r["reference"] for r in report["resource"]["imagingStudy"]] == [study["fullUrl"]]
    assert study["resource"]["identifier"][0]["value"] == "urn:oid:2.25.1234567890123456789"


def test_report_is_a_final_ct_chest_report_with_the_disclaimer() -> None:
    content = sample_content("export")
    (report,) = _by_type(fhir_bundle(content))["DiagnosticReport"]
    r = report["resource"]
    assert r["status"] == "final" and r["issued"].startswith("2024-03-05T10:30:00")
    assert {"system": "http://loinc.org", "code": "24627-2", "display": "CT Chest"} in r["code"]["coding"]
    assert content.finding in r["conclusion"] and content.disclaimer in r["conclusion"]


def test_values_are_coded_in_ucum() -> None:
    t = _by_type(fhir_bundle(sample_content("export")))
    obs = {e["resource"]["code"]["coding"][0]["code"]: e["resource"] for e in t["Observation"]}
    prob = obs["malignancy-probability"]
    q = prob["valueQuantity"]
    assert (q["system"], q["code"], q["unit"]) == (UCUM, "%", "%") and q["value"] == pytest.approx(37.0)
    bounds = {c["code"]["coding"][0]["code"]: c["valueQuantity"] for c in prob["component"]}
    assert {k: v["value"] for k, v in bounds.items()} == pytest.approx(
        {"malignancy-probability-lower": 31.0, "malignancy-probability-upper": 42.0})
    assert all((v["system"], v["code"]) == (UCUM, "%") for v in bounds.values())
    assert any("Interval [31.0 %, 42.0 %]" in n["text"] for n in prob["note"])  # the note in the value's unit
    assert any("Venn-Abers" in n["text"] for n in prob["note"])
    d = obs["81827009"]
    assert d["valueQuantity"]["value"] == pytest.approx(8.4)
    assert (d["valueQuantity"]["system"], d["valueQuantity"]["code"]) == (UCUM, "mm")
    assert d["bodySite"]["text"] == "right lung"
    ps = obs["conformal-prediction-set"]
    members = [c["valueCodeableConcept"]["coding"][0]["code"]
               for c in ps["component"] if "valueCodeableConcept" in c]
    assert members == ["benign", "malignant"]
    assert [c["valueBoolean"] for c in ps["component"] if "valueBoolean" in c] == [True]
    assert any("both classes" in n["text"] for n in ps["note"])


def test_ai_asserted_label_on_report_observations_and_bundle() -> None:
    bundle = fhir_bundle(sample_content("export"))
    t = _by_type(bundle)
    assert _aiast(bundle)
    assert all(_aiast(e["resource"]) for e in t["DiagnosticReport"] + t["Observation"])


def test_device_names_the_model_and_its_privacy_budget() -> None:
    (device,) = _by_type(fhir_bundle(sample_content("export")))["Device"]
    d = device["resource"]
    assert d["deviceName"][0]["name"] == "nodule-workbench fused CT + note model"
    assert d["version"][0]["value"] == "sha256:0f3a9c" and d["manufacturer"].startswith("nodule-workbench")
    note = d["note"][0]["text"]
    assert "hospital_a" in note and "hospital_b" in note and "0.99" in note and "0.98" in note
    assert sorted(p["valueQuantity"][0]["value"] for p in d["property"]) == pytest.approx([0.98, 0.99])


def test_export_mode_carries_no_patient_identifiers() -> None:
    bundle = fhir_bundle(sample_content("export"))
    text = json.dumps(bundle)
    assert [s for s in PHI if s in text] == []
    assert "started" not in _by_type(bundle)["ImagingStudy"][0]["resource"]  # no study date either
    (patient,) = _by_type(bundle)["Patient"]
    p = patient["resource"]
    assert not {"name", "birthDate", "gender", "address", "telecom"} & set(p)
    case_id = {"system": "https://nodule-workbench.example/fhir/case-id", "value": "hospital_a_0042"}
    assert p["identifier"] == [case_id]


def test_export_mode_ignores_identifiers_left_in_the_content() -> None:
    content = sample_content("clinical")
    content.mode = "export"  # a mistake upstream must not leak the patient
    text = json.dumps(fhir_bundle(content))
    assert [s for s in PHI if s in text] == []


def test_clinical_mode_keeps_the_patient() -> None:
    bundle = fhir_bundle(sample_content("clinical"))
    text = json.dumps(bundle)
    assert all(s in text for s in ["MRN123", "Doe", "Jane", "1955-01-29", "ACC9"])
    (patient,) = _by_type(bundle)["Patient"]
    p = patient["resource"]
    assert p["name"][0]["family"] == "Doe" and p["name"][0]["given"] == ["Jane"]
    assert p["birthDate"] == "1955-01-29" and p["gender"] == "female"
    assert "MRN123" in [i["value"] for i in p["identifier"]]
    (study,) = _by_type(bundle)["ImagingStudy"]
    assert study["resource"]["started"] == "2024-03-05"
    assert study["resource"]["referrer"]["display"] == "John Smith"


def test_write_fhir_writes_the_bundle_atomically(tmp_path) -> None:  # noqa: ANN001
    content = sample_content("export")
    path = write_fhir(content, tmp_path / "out" / "report.fhir.json")
    assert json.loads(path.read_text(encoding="utf-8")) == fhir_bundle(content)
    assert [p.name for p in path.parent.iterdir()] == ["report.fhir.json"]


def test_an_unknown_mode_is_refused() -> None:
    from workbench.errors import WorkbenchError

    content = sample_content("export")
    content.mode = "public"
    with pytest.raises(WorkbenchError, match="report mode"):
        fhir_bundle(content)


def test_a_seeded_dp_run_is_marked_not_private_in_the_device() -> None:
    import dataclasses

    content = sample_content("export")
    assert "not private" not in json.dumps(fhir_bundle(content))  # secure runs carry no warning
    content.model = dataclasses.replace(content.model, dp_secure=False)
    (device,) = _by_type(fhir_bundle(content))["Device"]
    assert "Not private: seeded randomness" in device["resource"]["note"][0]["text"]
    assert all("not private: seeded randomness" in p["type"]["text"] for p in device["resource"]["property"])


def test_the_measured_nodule_is_coded_with_its_lobe_and_lung_rads() -> None:
    """Long and short axis and volume in SNOMED CT with UCUM units, the measured lobe as the body site (SNOMED CT),
    and the Lung-RADS category, each an Observation the DiagnosticReport lists; the bundle validates as R4B."""
    import dataclasses

    from fhir.resources.R4B.bundle import Bundle

    c = dataclasses.replace(sample_content("export"), long_axis_mm=9.4, short_axis_mm=7.6, mean_diameter_mm=8.5,
                            diameter_mm=8.5, volume_mm3=301.24, nodule_type="solid", lobe="RLL", lung_rads="4A",
                            lung_rads_management="3-month LDCT.")
    b = fhir_bundle(c)
    Bundle.model_validate(b) if hasattr(Bundle, "model_validate") else Bundle.parse_obj(b)
    t = _by_type(b)
    obs = {e["resource"]["code"]["coding"][0]["code"]: e["resource"] for e in t["Observation"]}
    for code, value, unit in (("103339001", 9.4, "mm"), ("103340004", 7.6, "mm"), ("81827009", 8.5, "mm"),
                              ("118565006", 301.2, "mm3")):
        q = obs[code]["valueQuantity"]
        assert (q["value"], q["system"], q["code"]) == (pytest.approx(value), UCUM, unit), code
        assert obs[code]["bodySite"]["coding"][0]["code"] == "266005"  # lower lobe of right lung
    lr = obs["lung-rads-category"]
    assert lr["valueCodeableConcept"]["coding"][0]["display"] == "Lung-RADS 4A"
    assert lr["note"][0]["text"] == "3-month LDCT."
    listed = {r["reference"] for r in t["DiagnosticReport"][0]["resource"]["result"]}
    assert {f"urn:uuid:{o['id']}" for o in obs.values()} <= listed


def test_the_recommendation_is_in_the_conclusion_as_decision_support_with_brock() -> None:
    import dataclasses

    c = dataclasses.replace(sample_content("export"), long_axis_mm=9.4, short_axis_mm=7.6, mean_diameter_mm=8.5,
                            volume_mm3=301.24, nodule_type="solid", lobe="RUL", brock_risk=0.0712,
                            brock_citation="Brock University / PanCan model (McWilliams A et al., NEJM 2013)",
                            brock_inputs={"age": 66, "sources": {"age": "note"}},
                            recommendation="Fleischner 2017: Consider CT at 3 months, PET/CT, or tissue sampling.",
                            uncertain_line="Model uncertain: needs a radiologist's read (its risk lies where this "
                                           "hospital's benign and malignant cases overlap)",
                            model_brock_disagreement="The model's risk 37% is higher than the Brock score 7% by more "
                                                     "than 10% points: read the CT and the note before relying on either.")
    b = fhir_bundle(c)
    conclusion = _by_type(b)["DiagnosticReport"][0]["resource"]["conclusion"]
    assert "Decision support, not a clinical order: Fleischner 2017: Consider CT at 3 months" in conclusion
    assert conclusion.index(c.finding) < conclusion.index("Model uncertain") < conclusion.index("Decision support, not")
    assert "Brock score 7%" in conclusion and c.disclaimer in conclusion
    obs = {e["resource"]["code"]["coding"][0]["code"]: e["resource"] for e in _by_type(b)["Observation"]}
    q = obs["brock-risk"]["valueQuantity"]
    assert (q["value"], q["code"]) == (pytest.approx(7.1), "%")
    assert any("McWilliams" in n["text"] for n in obs["brock-risk"]["note"])
    assert any(n["text"] == "age: 66 (note)" for n in obs["brock-risk"]["note"])
