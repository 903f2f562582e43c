"""The on-disk layouts: VinDr-Mammo and OPTIMAM (OMI-DB) here; CBIS-DDSM and RSNA in their own
modules (``layout_cbis``, ``layout_rsna``).

A layout names the files and ids of a patient (``ids``), writes its images and per-patient
files (``write_image``, ``finish_patient``, run in worker processes) and the dataset-wide tables
(``write_tables``, run once at the end, in patient order).
"""
from __future__ import annotations

from pathlib import Path

from . import dicom_writer
from .exam import IMAGE_ORDER, PatientPlan, RenderedImage, rng_for
from .files import atomic_write_json, atomic_write_text, csv_text  # noqa: F401 - re-exported
from .layout_cbis import CbisDdsmLayout
from .layout_rsna import RsnaLayout

VINDR_BREAST_COLUMNS = ["study_id", "series_id", "image_id", "laterality", "view_position", "height",
                        "width", "breast_birads", "breast_density", "split"]
VINDR_FINDING_COLUMNS = VINDR_BREAST_COLUMNS[:-1] + ["finding_categories", "finding_birads", "xmin",
                                                     "ymin", "xmax", "ymax", "split"]
VINDR_METADATA_COLUMNS = ["SOP Instance UID", "Series Instance UID", "Patient's Age", "Manufacturer",
                          "Manufacturer's Model Name", "Rows", "Columns", "Photometric Interpretation",
                          "Bits Stored", "Imager Pixel Spacing", "Window Center", "Window Width",
                          "VOI LUT Function", "Pixel Padding Value"]
VINDR_CATEGORY = {"mass": "Mass", "calcification": "Suspicious Calcification"}
OPTIMAM_SITES = ("adde", "jarv", "stge")


def _image_uids(plan: PatientPlan, study: int, image: int) -> dict:
    """The DICOM identifiers of one image of a patient's study (both layouts write DICOMs)."""
    return {"sop_uid": dicom_writer.make_uid(plan.seed, plan.index, "image", study, image),
            "series_uid": dicom_writer.make_uid(plan.seed, plan.index, "series", study, image),
            "instance_number": 1, "series_number": image + 1}


class VindrLayout:
    name = "vindr"

    def ids(self, plan: PatientPlan) -> dict:
        rng = rng_for(plan.seed, plan.index, 3)
        out = {"patient_id": rng.bytes(16).hex(), "studies": []}
        for k, _ in enumerate(plan.studies):
            study = {"study_id": rng.bytes(16).hex(),
                     "study_uid": dicom_writer.make_uid(plan.seed, plan.index, "study", k),
                     "images": {}}
            for n, (lat, view) in enumerate(IMAGE_ORDER):
                study["images"][(lat, view)] = {
                    "image_id": rng.bytes(16).hex(), "series_id": rng.bytes(16).hex(),
                    **_image_uids(plan, k, n)}
            out["studies"].append(study)
        return out

    def write_image(self, out: Path, plan: PatientPlan, study: int, img: RenderedImage, ids: dict) -> dict:
        rec = img.record
        st = ids["studies"][study]
        im = st["images"][(rec["laterality"], rec["view"])]
        rel = f"images/{st['study_id']}/{im['image_id']}.dicom"
        dicom_ids = {"patient_id": ids["patient_id"], "study_uid": st["study_uid"],
                     "series_uid": im["series_uid"], "sop_uid": im["sop_uid"],
                     "study_number": str(study + 1), "series_number": im["series_number"],
                     "instance_number": im["instance_number"], "accession": st["study_id"][:16]}
        ds = dicom_writer.header(rec, dicom_ids, plan.device, plan.age, plan.studies[study].date)
        dicom_writer.write_dicom(out / rel, ds, img.pixels)
        base = {"study_id": st["study_id"], "series_id": im["series_id"], "image_id": im["image_id"],
                "laterality": rec["laterality"], "view_position": rec["view"], "height": rec["rows"],
                "width": rec["cols"], "breast_birads": f"BI-RADS {rec['birads']}",
                "breast_density": f"DENSITY {plan.density}", "split": plan.split}
        findings = []
        for les in rec["lesions"]:
            x0, y0, x1, y1 = les["box"]
            findings.append({**base, "finding_categories": str([VINDR_CATEGORY[les["type"]]]),
                             "finding_birads": f"BI-RADS {les['birads']}", "xmin": f"{x0:.2f}",
                             "ymin": f"{y0:.2f}", "xmax": f"{x1:.2f}", "ymax": f"{y1:.2f}"})
        if not findings:
            findings.append({**base, "finding_categories": str(["No Finding"]), "finding_birads": "",
                             "xmin": "", "ymin": "", "xmax": "", "ymax": ""})
        meta = {"SOP Instance UID": im["image_id"], "Series Instance UID": im["series_id"],
                "Patient's Age": f"{plan.age:03d}Y", "Manufacturer": plan.device[0],
                "Manufacturer's Model Name": plan.device[1], "Rows": rec["rows"], "Columns": rec["cols"],
                "Photometric Interpretation": rec["photometric"], "Bits Stored": rec["bits_stored"],
                "Imager Pixel Spacing": f"[{rec['pixel_spacing_mm']:.6g}, {rec['pixel_spacing_mm']:.6g}]",
                "Window Center": f"{rec['window_center']:g}", "Window Width": f"{rec['window_width']:g}",
                "VOI LUT Function": rec["voi_lut_function"], "Pixel Padding Value": rec["padding_value"]}
        return {"path": rel, "patient": ids["patient_id"], "study": st["study_id"],
                "image_id": im["image_id"], "series_id": im["series_id"], "study_uid": st["study_uid"],
                "series_uid": im["series_uid"], "sop_uid": im["sop_uid"],
                "table_rows": {"breast": [base], "finding": findings, "metadata": [meta]}}

    def finish_patient(self, out: Path, plan: PatientPlan, ids: dict, images: list[dict]) -> None:
        return None

    def write_tables(self, out: Path, images: list[dict]) -> None:
        tables = {"breast": [], "finding": [], "metadata": []}
        for im in images:
            for key, rows in im["table_rows"].items():
                tables[key].extend(rows)
        atomic_write_text(out / "breast-level_annotations.csv", csv_text(VINDR_BREAST_COLUMNS, tables["breast"]))
        atomic_write_text(out / "finding_annotations.csv", csv_text(VINDR_FINDING_COLUMNS, tables["finding"]))
        atomic_write_text(out / "metadata.csv", csv_text(VINDR_METADATA_COLUMNS, tables["metadata"]))


MASS_CLASSIFICATION = {"round": "well_defined", "oval": "well_defined", "lobulated": "ill_defined",
                       "spiculated": "spiculated"}
MARK_FLAGS = ("ArchitecturalDistortion", "Dystrophic", "FatNecrosis", "FocalAsymmetry", "Mass",
              "SuspiciousCalcifications", "MilkOfCalcium", "OtherBenignCluster", "PlasmaCellMastitis",
              "Skin", "WithCalcification", "SutureCalcification", "Vascular")


class OptimamLayout:
    name = "optimam"

    def ids(self, plan: PatientPlan) -> dict:
        rng = rng_for(plan.seed, plan.index, 3)
        client = f"demd{100000 + plan.index}"
        out = {"patient_id": client, "client": client, "site": str(rng.choice(OPTIMAM_SITES)), "studies": []}
        for k, _ in enumerate(plan.studies):
            study = {"study_uid": dicom_writer.make_uid(plan.seed, plan.index, "study", k),
                     "episode": str(k + 1), "images": {}}
            for n, (lat, view) in enumerate(IMAGE_ORDER):
                study["images"][(lat, view)] = _image_uids(plan, k, n)
            out["studies"].append(study)
        return out

    def write_image(self, out: Path, plan: PatientPlan, study: int, img: RenderedImage, ids: dict) -> dict:
        rec = img.record
        client = ids["client"]
        st = ids["studies"][study]
        im = st["images"][(rec["laterality"], rec["view"])]
        rel = f"images/{client}/{st['study_uid']}/{im['sop_uid']}.dcm"
        dicom_ids = {"patient_id": client, "study_uid": st["study_uid"], "series_uid": im["series_uid"],
                     "sop_uid": im["sop_uid"], "study_number": str(study + 1),
                     "series_number": im["series_number"], "instance_number": im["instance_number"],
                     "accession": f"{client}{study + 1:02d}"}
        ds = dicom_writer.header(rec, dicom_ids, plan.device, plan.age, plan.studies[study].date)
        atomic_write_json(out / f"data/{client}/{st['study_uid']}/{im['sop_uid']}.json", ds.to_json_dict())
        dicom_writer.write_dicom(out / rel, ds, img.pixels)
        return {"path": rel, "patient": client, "client": client, "study": st["study_uid"],
                "image_id": im["sop_uid"], "study_uid": st["study_uid"], "series_uid": im["series_uid"],
                "sop_uid": im["sop_uid"]}

    def _mark(self, n: int, les: dict) -> dict:
        x0, y0, x1, y1 = les["box"]
        mark = {flag: None for flag in MARK_FLAGS}
        mark.update({"MarkID": n, "LesionID": "1", "LinkedNBSSLesionNumber": 1,
                     "X1": x0, "Y1": y0, "X2": x1 - 1, "Y2": y1 - 1,
                     "Width": x1 - x0, "Height": y1 - y0, "Conspicuity": les["conspicuity"],
                     "MassClassification": MASS_CLASSIFICATION.get(les["shape"]),
                     "BenignClassification": None if les["outcome"] == "malignant" else "benign"})
        if les["type"] == "mass":
            mark["Mass"] = 1
        else:
            mark["SuspiciousCalcifications"] = 1
        return mark

    def finish_patient(self, out: Path, plan: PatientPlan, ids: dict, images: list[dict]) -> None:
        client = ids["client"]
        studies = {}
        nbss = {"ClientID": client, "Status": plan.outcome.capitalize()}
        mark_id = 0
        for k, st in enumerate(ids["studies"]):
            sp = plan.studies[k]
            entry = {"StudyDate": sp.date, "EpisodeID": st["episode"]}
            for gt in images:
                if gt["study_number"] != k:
                    continue
                marks = {}
                for les in gt["lesions"]:
                    mark_id += 1
                    marks[str(mark_id)] = self._mark(mark_id, les)
                entry.setdefault(gt["series_uid"], {})[gt["sop_uid"]] = marks
            studies[st["study_uid"]] = entry
            date = f"{sp.date[:4]}-{sp.date[4:6]}-{sp.date[6:]}"
            side_opinion = {s: ("N" if sp.birads[s] <= 2 else "R") for s in ("L", "R")}
            episode = {"EpisodeID": st["episode"], "EpisodeType": "F" if k == 0 else "R",
                       "EpisodeAction": "FA" if sp.has_lesion else "RR", "EpisodeIsClosed": "Y",
                       "EpisodeOpenedDate": date, "EpisodeClosedDate": date,
                       "SCREENING": {s: {"DateTaken": date, "EquipmentMakeModel": " ".join(plan.device[:2]),
                                         "Opinion": side_opinion[s]} for s in ("L", "R")}}
            if sp.has_lesion:
                side = plan.lesion_side
                les = plan.lesion
                episode["SCREENING"]["left_opinion" if side == "L" else "right_opinion"] = "R"
                episode["ASSESSMENT"] = {side: {"1": {"DatePerformed": date, "Conspicuity": les.conspicuity_label}},
                                         "left_opinion" if side == "L" else "right_opinion": "M" if les.outcome == "malignant" else "B"}
                episode["BIOPSYWIDE"] = {side: {"1": {"DatePerformed": date,
                                                      "HistologyResult": "B5b" if les.outcome == "malignant" else "B2"}}}
                if les.outcome == "malignant":
                    episode["SURGERY"] = {side: {"1": {"DatePerformed": date, "InvasiveStatus": "Invasive"}}}
            nbss[st["episode"]] = episode
        atomic_write_json(out / f"data/{client}/imagedb_{client}.json",
                          {"ClientID": client, "Site": ids["site"], "STUDIES": studies})
        atomic_write_json(out / f"data/{client}/nbss_{client}.json", nbss)

    def write_tables(self, out: Path, images: list[dict]) -> None:
        return None


LAYOUTS = {"vindr": VindrLayout(), "optimam": OptimamLayout(), "cbis-ddsm": CbisDdsmLayout(),
           "rsna": RsnaLayout()}
