"""Shared file helpers: provenance of any output, stage outputs opened with clear errors, JSON/CSV/text
tables, training histories and figures, all written atomically."""

from __future__ import annotations

import contextlib
import csv
import json
from pathlib import Path

from .. import provenance
from ..errors import ModelError


@contextlib.contextmanager
def open_stage_output(path: str | Path, what: str, stage: str, error: type[Exception]):
    """Open a stage's HDF5 output for reading; a missing, unreadable or incomplete file raises
    ``error`` naming the file and the stage to (re)run."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise error(f"{what} '{path}' does not exist; run the {stage} stage first.")
    try:
        with h5py.File(path, "r") as f:
            yield f
    except (OSError, KeyError) as exc:
        raise error(f"{what} '{path}' is unreadable or incomplete ({exc}); delete it and rerun the {stage} stage.") from exc


def read_provenance(path: str | Path) -> dict | None:
    """Read the provenance of a gwnpe output (HDF5, text, model/checkpoint, bilby Result); None if it has none."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"'{path}' does not exist")
    if path.suffix in (".h5", ".hdf5", ".hdf"):
        import h5py

        with h5py.File(path, "r") as f:
            raw = f.attrs.get(provenance.PROVENANCE_ATTR)
            if raw is None:  # a bilby Result written by gwnpe: provenance in its meta data, as JSON
                for key in ("meta_data/gwnpe/provenance", "meta_data/gwnpe/model_provenance"):
                    if key in f and isinstance(f[key], h5py.Dataset):
                        raw = f[key][()]
                        raw = raw.decode() if isinstance(raw, bytes) else raw
                        break
        return json.loads(raw) if raw is not None else None
    if path.suffix in (".txt", ".dat", ".csv"):
        with open(path) as f:
            for line in f:
                if line.startswith(provenance.TEXT_MARKER):
                    return json.loads(line[len(provenance.TEXT_MARKER):])
                if not line.startswith("#"):
                    break
        return None
    if path.suffix == ".pt":
        obj = safe_load(path, what="file")
        return obj.get("provenance") if isinstance(obj, dict) else None
    return None


def make_provenance(stage: str, settings: dict, inputs: dict[str, str | Path] | None = None,
                    texts: dict[str, str] | None = None) -> dict:
    """:func:`gwnpe.provenance.make_provenance` with the inputs' provenance read from their files.

    Parameters
    ----------
    inputs : dict, optional
        Name -> path of each input file.
    texts : dict, optional
        Setting name -> text stored once (e.g. the prior file).
    """
    return provenance.make_provenance(
        stage, settings, {name: (path, read_provenance(path)) for name, path in (inputs or {}).items()}, texts
    )


def write_json(path, obj, newline: bool = False, **kwargs) -> None:
    """JSON file, atomically (``kwargs`` go to :func:`json.dumps`; ``newline`` ends the file with one)."""
    write_text(path, json.dumps(obj, **kwargs) + ("\n" if newline else ""))


def write_text(path, text: str) -> None:
    """Text file, atomically."""
    with provenance.atomic_output(path) as tmp:
        Path(tmp).write_text(text)


def write_csv(path, header: list[str], rows: list[list]) -> None:
    """CSV file (``csv.writer``), atomically."""
    with provenance.atomic_output(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(rows)


def read_csv(path) -> list[dict]:
    """Rows of a CSV file with a header row (``csv.DictReader``); ``delimiter`` tab for ``.tsv``."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t" if str(path).endswith(".tsv") else ","))


def read_json(path):
    """A JSON file."""
    return json.loads(Path(path).read_text())


def write_table(path, frame, **to_csv) -> None:
    """A pandas DataFrame as CSV, atomically (``to_csv`` go to :meth:`pandas.DataFrame.to_csv`)."""
    with provenance.atomic_output(path) as tmp:
        frame.to_csv(tmp, **to_csv)


HISTORY_COLUMNS = ("epoch", "train_loss", "validation_loss", "learning_rate")
THROUGHPUT_COLUMNS = ("epoch", "wall_time", "samples_per_second")


def write_history(path, history: list[dict], columns=HISTORY_COLUMNS) -> None:
    """Training history as CSV, one row per epoch with ``columns``."""
    with provenance.atomic_output(path) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns)
            w.writeheader()
            for row in history:
                w.writerow({k: row[k] for k in columns})


def save_figure(fig, path, dpi: int) -> None:
    """Write a matplotlib Figure as PNG at ``dpi``, atomically, and close it."""
    import matplotlib.pyplot as plt

    try:
        with provenance.atomic_output(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    finally:
        plt.close(fig)


def safe_load(path: Path, device="cpu", what: str = "model file", fix: str = "rerun the train stage"):
    """``torch.load`` with ``weights_only=True``: tensors and plain data only, never a pickled object.

    Raises
    ------
    ModelError
        If the file is unreadable or truncated, or holds anything else (naming the file and the fix).
    """
    import pickle

    import torch

    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = str(exc).split("\n")
        culprit = next((line.strip() for line in detail if "GLOBAL" in line or "Unsupported" in line), detail[0])
        raise ModelError(
            f"{what} '{path}' holds Python objects other than tensors and plain data ({culprit}). gwnpe reads "
            "model files without running code from them (torch.load weights_only=True), so it refuses this one: "
            f"it was written by other software or an older gwnpe (model format 1 stored numpy arrays), or was "
            f"tampered with. Use a model.pt written by the train stage, or {fix}."
        ) from None
    except Exception as exc:
        raise ModelError(
            f"{what} '{path}' is unreadable or truncated ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
            f"delete it and {fix}, or restore it."
        ) from exc
