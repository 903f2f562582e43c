"""Dataset adapters: each turns one dataset layout into the exam table (one row per image).

``load_exams(dataset, root, ...)`` is the entry point; see docs/ingest.md for what each adapter
expects. Adapters never stop on a bad input: they list it in ``ExamTable.skipped`` with a reason.
"""
from __future__ import annotations

from ingest.adapters.table import ExamImage, ExamTable, Roi, Skip, normalise_birads

DATASETS = ("synthetic", "vindr", "optimam", "dicom")

__all__ = ["DATASETS", "ExamImage", "ExamTable", "Roi", "Skip", "load_exams", "normalise_birads"]


def load_exams(dataset: str, root=None, *, manifest=None, cache_dir=None, patients=None,
               seed: int = 0, image_size=None, lesion_fraction=None,
               workers: int = 1) -> ExamTable:
    """The exam table of ``dataset``.

    ``root``: the dataset folder (vindr, optimam, dicom). ``manifest``: CSV for ``dicom``.
    ``cache_dir``, ``patients``, ``seed``, ``image_size``, ``lesion_fraction``, ``workers``: the
    synthetic dataset's cache folder and generation parameters (None = defaults).
    """
    if dataset == "synthetic":
        from ingest.adapters import synthetic

        kwargs = {"seed": seed, "workers": workers}
        if patients:
            kwargs["patients"] = patients
        if image_size:
            kwargs["image_size"] = tuple(image_size)
        if lesion_fraction is not None:
            kwargs["lesion_fraction"] = float(lesion_fraction)
        return synthetic.load(cache_dir, **kwargs)
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    if root is None:
        raise ValueError(f"--dataset {dataset} needs --root (the dataset's folder)")
    if dataset == "vindr":
        from ingest.adapters import vindr

        return vindr.load(root)
    if dataset == "optimam":
        from ingest.adapters import optimam

        return optimam.load(root)
    from ingest.adapters import dicom_folder

    return dicom_folder.load(root, manifest=manifest)
