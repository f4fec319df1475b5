"""Every file a stage reads or writes, in one place: one reader and one writer per kind, loaders
returning dataclasses, every writer atomic (:func:`gwnpe.provenance.atomic_output`) and every
output carrying its provenance.

=====================  ==================================  =========================================
file                   writer                              reader
=====================  ==================================  =========================================
``psd/<ifo>_psd.txt``  :func:`write_psd`                   :func:`read_psd`, :func:`psd_on_domain`
``bank/bank.h5``       :func:`write_bank`                  :func:`load_bank` -> :class:`Bank`
``svd/basis.h5``       :func:`write_basis`                 :func:`load_basis` -> ReducedBasis
training-set chunks    :func:`write_chunk`                 :func:`read_chunk`
``training_set.h5``    :func:`write_training_set`          :func:`load_training_set` -> TrainingSet
``model/model.pt``     :func:`save_model`                  :func:`load_model` -> NPEModel
``checkpoint.pt``      :func:`save_checkpoint`             :func:`load_checkpoint`
``history.csv``        :func:`write_history`
``injections.h5``      :func:`write_injections`            :func:`load_injections` -> Injections
bilby Result files     :func:`save_result`, write_result   :func:`read_result`
FD strain files        :func:`write_fd_strain`             :func:`read_fd_strain` -> FDStrain
figures                :func:`save_figure`
JSON / CSV tables      :func:`write_json`, write_csv
any output             :func:`make_provenance`             :func:`read_provenance`
=====================  ==================================  =========================================
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import provenance
from .errors import (
    BasisError,
    GwnpeError,
    InferenceError,
    InjectionError,
    ModelError,
    StrainError,
    TrainingSetError,
)
from .gw import noise
from .gw.domain import FrequencyDomain
from .gw.svd import ReducedBasis

MODEL_FORMAT = 1
CHECKPOINT_FORMAT = 1


# ----------------------------------------------------------------------------- provenance


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


def _torch_load(path: Path, device="cpu"):
    import torch

    return torch.load(path, map_location=device, weights_only=False)


def read_provenance(path: str | Path) -> dict | None:
    """Read the provenance of a gwnpe output (HDF5, text, model/checkpoint, bilby Result); None if it has none."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"'{path}' does not exist")
    if path.suffix in (".h5", ".hdf5", ".hdf"):
        import h5py

        with h5py.File(path, "r") as f:
            raw = f.attrs.get(provenance.PROVENANCE_ATTR)
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
        obj = _torch_load(path)
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


# ----------------------------------------------------------------------------- small files


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


# ----------------------------------------------------------------------------- PSD files


def read_psd(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies [Hz] and PSD [1/Hz] from a gwnpe PSD text file."""
    path = Path(path)
    if not path.is_file():
        raise StrainError(f"PSD file '{path}' does not exist; run the psd stage first.")
    fix = "delete it and rerun the psd stage (or give a two-column file: frequency [Hz], PSD [1/Hz])"
    try:
        data = np.loadtxt(path, ndmin=2)
    except ValueError as exc:  # includes UnicodeDecodeError of binary files
        reason = str(exc).split("; use `usecols`")[0]  # numpy's advice does not apply to a PSD file
        raise StrainError(f"PSD file '{path}' is not a two-column text file, or is truncated ({reason}); {fix}.") from exc
    if data.shape[1] != 2 or data.shape[0] < 2:
        raise StrainError(
            f"PSD file '{path}' has shape {data.shape}; expected two columns (frequency, PSD) and at least two "
            f"rows: {fix}."
        )
    return data[:, 0], data[:, 1]


def psd_on_domain(path: str | Path, domain: FrequencyDomain) -> np.ndarray:
    """PSD [1/Hz] of a PSD file on the domain's band (see :func:`gwnpe.gw.noise.psd_on_domain`)."""
    f, psd = read_psd(path)
    return noise.psd_on_domain(f, psd, domain, source=f"PSD file '{path}'")


def write_psd(path: str | Path, freqs: np.ndarray, psd: np.ndarray, prov: dict) -> None:
    """Write a PSD text file that :func:`read_psd` reads back bit for bit.

    The file holds the provenance comment line (:func:`gwnpe.provenance.text_header`),
    a ``# frequency [Hz]  PSD [1/Hz]`` line, then two columns printed with ``%.17g``
    (exact float64 round trip).
    """
    freqs = np.asarray(freqs, dtype=np.float64)
    psd = np.asarray(psd, dtype=np.float64)
    if freqs.ndim != 1 or freqs.shape != psd.shape:
        raise ValueError(f"freqs {freqs.shape} and psd {psd.shape} must be 1-d of equal length")
    header = provenance.text_header(prov) + "\n# frequency [Hz]  PSD [1/Hz]"
    with provenance.atomic_output(path) as tmp:
        np.savetxt(tmp, np.column_stack([freqs, psd]), fmt="%.17g", header=header, comments="")


# ----------------------------------------------------------------------------- waveform bank


@dataclass
class Bank:
    """A waveform bank (``bank.h5``).

    Attributes
    ----------
    parameters : dict of (n,) arrays
        Intrinsic parameters of each waveform.
    frequencies : (n_bins,) array
        [Hz] of the domain's band.
    h_plus, h_cross : (n, n_bins) complex128 arrays
        Polarizations [1/Hz] at the reference distance.
    failures : list of dict
        Draws refused by LAL (with LAL's reason) and redrawn.
    delta_f : float
        [Hz]
    """

    parameters: dict
    frequencies: np.ndarray
    h_plus: np.ndarray
    h_cross: np.ndarray
    failures: list
    delta_f: float


def write_bank(path, bank: Bank, reference_distance: float, prov: dict) -> None:
    """Layout: ``parameters/<name>`` (n,) float64, ``frequencies`` (n_bins,) [Hz], ``h_plus`` and
    ``h_cross`` (n, n_bins) complex128 [1/Hz], attributes ``failures`` (JSON), ``delta_f`` [Hz],
    ``reference_distance`` [Mpc] and the provenance."""
    import h5py

    with provenance.atomic_output(path) as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            grp = f.create_group("parameters", track_order=True)
            for k, v in bank.parameters.items():
                grp.create_dataset(k, data=v, track_times=False)
            f.create_dataset("frequencies", data=bank.frequencies, track_times=False)
            f.create_dataset("h_plus", data=bank.h_plus, track_times=False)
            f.create_dataset("h_cross", data=bank.h_cross, track_times=False)
            f.attrs["failures"] = json.dumps(bank.failures)
            f.attrs["delta_f"] = bank.delta_f
            f.attrs["reference_distance"] = reference_distance
            provenance.write_h5(f, prov)


def load_bank(path: str | Path) -> Bank:
    """Read ``bank.h5`` (see :func:`write_bank`)."""
    with open_stage_output(path, "bank file", "bank", GwnpeError) as f:
        return Bank(
            parameters={k: v[...] for k, v in f["parameters"].items()},
            frequencies=f["frequencies"][...],
            h_plus=f["h_plus"][...],
            h_cross=f["h_cross"][...],
            failures=json.loads(f.attrs["failures"]),
            delta_f=float(f.attrs["delta_f"]),
        )


# ----------------------------------------------------------------------------- reduced basis


def write_basis(path, basis: ReducedBasis, singular_values: np.ndarray, validation: dict, mismatch: np.ndarray,
                attrs: dict, prov: dict) -> None:
    """Layout: ``V`` (n_bins, K), ``singular_values``, ``asd_reference``, ``frequencies``, group
    ``validation`` (``mismatch`` per held-out row and the curves of ``validation``), attributes
    ``delta_f`` and ``attrs`` (time shift, tolerance, mismatch statistics) and the provenance."""
    import h5py

    with provenance.atomic_output(path) as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            f.create_dataset("V", data=basis.V, track_times=False)
            f.create_dataset("singular_values", data=singular_values, track_times=False)
            f.create_dataset("asd_reference", data=basis.asd_reference, track_times=False)
            f.create_dataset("frequencies", data=basis.frequencies, track_times=False)
            g = f.create_group("validation", track_order=True)
            g.create_dataset("mismatch", data=mismatch, track_times=False)
            for k, v in validation.items():
                g.create_dataset(k, data=v, track_times=False)
            g.attrs["whitening"] = "reference"
            f.attrs["delta_f"] = basis.delta_f
            for k, v in attrs.items():
                f.attrs[k] = v
            provenance.write_h5(f, prov)


def load_basis(path: str | Path) -> ReducedBasis:
    """Read a basis written by the svd stage (``basis.h5``)."""
    with open_stage_output(path, "basis file", "svd", BasisError) as f:
        return ReducedBasis(
            V=f["V"][...],
            asd_reference=f["asd_reference"][...],
            frequencies=f["frequencies"][...],
            delta_f=float(f.attrs["delta_f"]),
        )


def basis_shape(path: str | Path, frequencies: np.ndarray) -> tuple[int, float]:
    """Basis size K and delta_f [Hz] of ``basis.h5``, after checking it lies on ``frequencies`` (reads no V)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise BasisError(f"basis file '{path}' does not exist; run the svd stage first.")
    try:
        with h5py.File(path, "r") as f:
            n_bins, k = f["V"].shape
            freqs = f["frequencies"][...]
            delta_f = float(f.attrs["delta_f"])
    except (OSError, KeyError) as exc:
        raise BasisError(f"basis file '{path}' is unreadable or incomplete ({exc}); rerun the svd stage.") from exc
    if n_bins != len(frequencies) or len(freqs) != len(frequencies) or not np.allclose(freqs, frequencies):
        raise BasisError(
            f"basis '{path}' is on {len(freqs)} bins ({freqs[0]:g}-{freqs[-1]:g} Hz) but the domain's band has "
            f"{len(frequencies)} bins ({frequencies[0]:g}-{frequencies[-1]:g} Hz); rerun the svd stage with this config's domain."
        )
    return int(k), delta_f


# ----------------------------------------------------------------------------- training set


def write_chunk(path: Path, parameters: dict, h_plus: np.ndarray, h_cross: np.ndarray, tag: str) -> None:
    """One training-set chunk (written on a dask worker): ``parameters/<name>``, ``h_plus``, ``h_cross``.

    Written through a temporary file named with ``tag`` (unique per attempt) and renamed into place.
    """
    import h5py

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{tag}")
    try:
        with h5py.File(tmp, "w", track_order=True) as f:
            grp = f.create_group("parameters", track_order=True)
            for k, v in parameters.items():
                grp.create_dataset(k, data=v, track_times=False)
            f.create_dataset("h_plus", data=h_plus, track_times=False)
            f.create_dataset("h_cross", data=h_cross, track_times=False)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_chunk(path: str, keys: list[str], n: int, k: int) -> tuple[dict, np.ndarray, np.ndarray]:
    """Read one chunk file, checking its shapes."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            params = {key: f["parameters"][key][...] for key in keys}
            hp = f["h_plus"][...]
            hc = f["h_cross"][...]
    except (OSError, KeyError) as exc:
        raise TrainingSetError(f"chunk file '{path}' is unreadable or incomplete ({exc}).") from exc
    if hp.shape != (n, k) or hc.shape != (n, k) or any(v.shape != (n,) for v in params.values()):
        raise TrainingSetError(f"chunk file '{path}' has shape {hp.shape}, expected ({n}, {k}).")
    return params, hp, hc


def write_training_set(path, chunks: list[dict], keys: list[str], n_total: int, k: int, failures: list,
                       attrs: dict, prov: dict) -> None:
    """Merge chunk files (``{"path", "start", "n"}`` each, in order) into ``training_set.h5``.

    Datasets are pre-allocated and filled one chunk at a time, so memory is set by the chunk size;
    each chunk file is deleted once copied. Layout in :mod:`gwnpe.stages.training_set`.
    """
    import h5py

    with provenance.atomic_output(path) as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            grp = f.create_group("parameters", track_order=True)
            pds = {key: grp.create_dataset(key, shape=(n_total,), dtype="f8", track_times=False) for key in keys}
            hp_ds = f.create_dataset("h_plus", shape=(n_total, k), dtype="c8", track_times=False)
            hc_ds = f.create_dataset("h_cross", shape=(n_total, k), dtype="c8", track_times=False)
            for m in chunks:  # chunk order, one chunk in memory at a time
                params, hp, hc = read_chunk(m["path"], keys, m["n"], k)
                rows = slice(m["start"], m["start"] + m["n"])
                for key in keys:
                    pds[key][rows] = params[key]
                hp_ds[rows] = hp
                hc_ds[rows] = hc
                del params, hp, hc
                os.unlink(m["path"])
            f.create_dataset("failures", data=json.dumps(failures), dtype=h5py.string_dtype("utf-8"), track_times=False)
            for key, value in attrs.items():
                f.attrs[key] = value
            provenance.write_h5(f, prov)


@dataclass
class TrainingSet:
    """A training set read by :func:`load_training_set`.

    Attributes
    ----------
    parameters : dict of (N,) arrays (or h5py datasets when lazy)
    h_plus, h_cross : (N, K) complex64 arrays (or h5py datasets when lazy)
        Reduced-basis coefficients of the whitened polarizations at ``reference_distance``.
    failures : list of dict
        Draws refused by LAL and redrawn.
    attrs : dict
        File attributes (``basis_size``, ``delta_f`` [Hz], ``reference_distance`` [Mpc], ...).
    """

    parameters: dict
    h_plus: object
    h_cross: object
    failures: list
    attrs: dict
    _file: object = None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def load_training_set(path: str | Path, lazy: bool = False) -> TrainingSet:
    """Read ``training_set.h5``.

    Parameters
    ----------
    path : str or Path
    lazy : bool
        Return h5py datasets (read on indexing, memory-light) and keep the file open;
        close it with :meth:`TrainingSet.close` or a ``with`` block.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise TrainingSetError(f"training set '{path}' does not exist; run the training_set stage first.")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise TrainingSetError(f"training set '{path}' is unreadable or truncated ({exc}); delete it and rerun the "
                               "training_set stage.") from exc
    try:
        keys = json.loads(f.attrs["intrinsic_parameters"])
        attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items() if k != provenance.PROVENANCE_ATTR}
        raw = f["failures"][()]
        failures = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        if lazy:
            return TrainingSet({k: f["parameters"][k] for k in keys}, f["h_plus"], f["h_cross"], failures, attrs, f)
        out = TrainingSet({k: f["parameters"][k][...] for k in keys}, f["h_plus"][...], f["h_cross"][...], failures, attrs)
    except (KeyError, OSError) as exc:
        f.close()
        raise TrainingSetError(f"training set '{path}' is incomplete ({exc}); delete it and rerun the training_set stage.") from exc
    f.close()
    return out


# ----------------------------------------------------------------------------- model and checkpoints


def save_model(path: str | Path, model, prov: dict, extra: dict | None = None) -> None:
    """Save weights, the settings that rebuild the model, and provenance (atomically)."""
    import torch

    obj = {
        "format": MODEL_FORMAT,
        "settings": model.settings,
        "state_dict": model.state_dict(),
        "provenance": prov,
        **(extra or {}),
    }
    with provenance.atomic_output(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)  # through a file object, a full disk raises OSError(ENOSPC), not a zip RuntimeError


def load_model(path: str | Path, device="cpu"):
    """Rebuild a saved :class:`~gwnpe.nn.model.NPEModel` on ``device`` (eval mode).

    Raises
    ------
    ModelError
        If the file is missing, unreadable (e.g. truncated), not a gwnpe model, or its weights do
        not fit the settings stored with them; the message names the file and the train stage.
    """
    from .nn.model import build_model

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file '{path}' does not exist; run the train stage first.")
    try:
        obj = _torch_load(path, device)
    except Exception as exc:
        raise ModelError(
            f"model file '{path}' is unreadable or truncated ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
            "delete it and rerun the train stage, or restore it."
        ) from exc
    if not isinstance(obj, dict) or obj.get("format") != MODEL_FORMAT:
        found = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise ModelError(
            f"'{path}' is not a gwnpe model file (format {MODEL_FORMAT}, found {found!r}); pass the model.pt "
            "written by the train stage (results/<run>/model/model.pt), or rerun that stage."
        )
    try:
        model = build_model(obj["settings"])
        model.load_state_dict(obj["state_dict"])
    except (KeyError, RuntimeError, TypeError) as exc:
        raise ModelError(
            f"model file '{path}' is incomplete or its weights do not fit its settings ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0]}); delete it and rerun the train stage."
        ) from exc
    model.provenance = obj.get("provenance")
    model.extra = {k: v for k, v in obj.items() if k not in ("state_dict", "settings", "provenance", "format")}
    return model.to(device).eval()


def save_checkpoint(path, run_hash: str, epoch: int, model, optimizer, scheduler, history: list[dict]) -> None:
    """Training state after ``epoch`` epochs, tagged with the run's settings hash (atomically)."""
    import torch

    with provenance.atomic_output(path) as tmp, open(tmp, "wb") as fh:
        torch.save({"format": CHECKPOINT_FORMAT, "run_hash": run_hash, "epoch": epoch, "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "history": history}, fh)


def load_checkpoint(path, run_hash: str, device="cpu") -> dict | None:
    """The checkpoint at ``path`` if it exists and belongs to ``run_hash``; else None (a foreign one is named in a warning)."""
    import logging

    path = Path(path)
    if not path.is_file():
        return None
    ck = _torch_load(path, device)
    if ck.get("format") == CHECKPOINT_FORMAT and ck.get("run_hash") == run_hash:
        return ck
    logging.getLogger(__name__).warning("ignoring checkpoint '%s': it belongs to other settings or inputs", path)
    return None


# ----------------------------------------------------------------------------- injections


@dataclass
class Injections:
    """An injection campaign (``injections.h5``).

    Attributes
    ----------
    parameters : dict of (N,) arrays
        Sampled parameters; ``geocent_time`` relative to ``trigger_time`` (prior convention).
    frequencies : (n_bins,) array [Hz]
    strain : dict ifo -> (N, n_bins) complex128 [1/Hz], phase origin ``start_time``
    psd : dict ifo -> (n_bins,) [1/Hz]
    snr : dict name -> (N,) (``optimal_<ifo>``, ``matched_filter_<ifo>``, ``network_*``)
    start_time, trigger_time : float [GPS s]
    failures : list of dict
        Draws refused by LAL and redrawn.
    """

    parameters: dict
    frequencies: np.ndarray
    strain: dict
    psd: dict
    snr: dict
    start_time: float
    trigger_time: float
    failures: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(next(iter(self.parameters.values())))


def read_injection_file(path, names: list[str]) -> dict[str, np.ndarray]:
    """Parameters from a CSV (header row) or JSON ({name: [values]}) file; every sampled parameter is required."""
    path = Path(path)
    if not path.is_file():
        raise InjectionError(f"injection file '{path}' does not exist (injections.file).")
    if path.suffix == ".json":
        raw = json.loads(path.read_text())
        table = {k: np.asarray(v, float) for k, v in raw.items()}
    else:
        arr = np.genfromtxt(path, delimiter=",", names=True, dtype=float)
        table = {k: np.atleast_1d(arr[k]) for k in arr.dtype.names}
    missing = [k for k in names if k not in table]
    if missing:
        raise InjectionError(f"injection file '{path}' has no column for {', '.join(missing)}; it needs {', '.join(names)}.")
    bad = [k for k in names if not np.all(np.isfinite(table[k]))]
    if bad:
        raise InjectionError(f"injection file '{path}' has non-finite values in {', '.join(bad)}.")
    return {k: table[k] for k in names}


def write_injections(path, inj: Injections, prov: dict) -> None:
    """Layout: ``parameters/<name>``, ``frequencies``, ``strain/<ifo>``, ``psd/<ifo>``, ``snr/<name>``,
    attributes ``start_time``, ``trigger_time``, ``failures`` (JSON) and the provenance."""
    import h5py

    with provenance.atomic_output(path) as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            g = f.create_group("parameters", track_order=True)
            for k, v in inj.parameters.items():
                g.create_dataset(k, data=np.asarray(v, float), track_times=False)
            f.create_dataset("frequencies", data=inj.frequencies, track_times=False)
            gs = f.create_group("strain", track_order=True)
            gp = f.create_group("psd", track_order=True)
            for ifo in inj.strain:
                gs.create_dataset(ifo, data=inj.strain[ifo], track_times=False)
                gp.create_dataset(ifo, data=inj.psd[ifo], track_times=False)
            gsnr = f.create_group("snr", track_order=True)
            for k, v in inj.snr.items():
                gsnr.create_dataset(k, data=v, track_times=False)
            f.attrs["start_time"] = inj.start_time
            f.attrs["trigger_time"] = float(inj.trigger_time)
            f.attrs["failures"] = json.dumps(inj.failures)
            provenance.write_h5(f, prov)


def load_injections(path) -> Injections:
    """Read ``injections.h5`` (see :func:`write_injections`)."""
    with open_stage_output(path, "injection file", "injections", InjectionError) as f:
        return Injections(
            parameters={k: v[...] for k, v in f["parameters"].items()},
            frequencies=f["frequencies"][...],
            strain={k: v[...] for k, v in f["strain"].items()},
            psd={k: v[...] for k, v in f["psd"].items()},
            snr={k: v[...] for k, v in f["snr"].items()},
            start_time=float(f.attrs["start_time"]),
            trigger_time=float(f.attrs["trigger_time"]),
            failures=json.loads(f.attrs.get("failures", "[]")),
        )


# ----------------------------------------------------------------------------- bilby Result files


def save_result(path, model, samples: dict, log_q: np.ndarray, sampling_time: float, label: str = "gwnpe",
                injection_parameters: dict | None = None, meta_data: dict | None = None,
                extra_columns: dict | None = None, evidence: dict | None = None) -> None:
    """Write NPE samples as a bilby Result file (HDF5 or JSON by extension), atomically.

    ``extra_columns`` (e.g. importance weights) are added to the posterior table; ``evidence``
    (``log_evidence``, ``log_evidence_err``, ``log_noise_evidence``, ``log_bayes_factor``) fills
    the Result's evidence fields.
    """
    import bilby
    import pandas as pd

    from .gw.priors import to_absolute_time
    from .inference.sampling import model_priors

    path = Path(path)
    priors = to_absolute_time(model_priors(model), model.settings["trigger_time"])
    posterior = pd.DataFrame({k: np.asarray(v) for k, v in samples.items()})
    posterior["log_q"] = log_q
    for k, v in (extra_columns or {}).items():
        posterior[k] = np.asarray(v)
    result = bilby.core.result.Result(
        label=label,
        outdir=str(path.parent),
        sampler="gwnpe",
        search_parameter_keys=list(model.parameter_names),
        priors=priors,
        posterior=posterior,
        injection_parameters=injection_parameters,
        meta_data={"gwnpe": {"model_provenance": model.provenance, "trigger_time": model.settings["trigger_time"],
                             "detectors": model.settings["detectors"], **(meta_data or {})}},
        sampling_time=sampling_time,
        **(evidence or {}),
    )
    write_result(result, path)


def write_result(result, path) -> None:
    """Save a bilby Result to ``path`` (.hdf5 or .json) atomically; a failed write leaves nothing."""
    path = Path(path)
    ext = path.suffix.lstrip(".") or "hdf5"
    if ext not in ("hdf5", "json"):
        raise InferenceError(f"output '{path}' must end in .hdf5 or .json")
    with provenance.atomic_output(path) as tmp:
        # bilby's save_to_file catches every write error, logs it and pickles the Result to
        # <tmp without extension>.pkl instead of raising: treat that pickle as the failure it is.
        fallback = Path(f"{os.path.splitext(tmp)[0]}.pkl")
        try:
            result.save_to_file(filename=str(tmp), extension=ext, overwrite=True)
        finally:
            failed = fallback.exists()
            fallback.unlink(missing_ok=True)
        if failed:
            raise InferenceError(f"could not write the result file '{path}' (bilby's error is logged above); "
                                 "nothing was written. Fix the cause and rerun.")


def read_result(path, what: str, error: type[Exception] = GwnpeError):
    """A bilby Result file; a missing or unreadable one raises ``error`` naming ``what`` it is and the file."""
    import bilby

    path = Path(path)
    if not path.is_file():
        raise error(f"{what} result '{path}' does not exist; rerun the stage that makes it.")
    try:
        return bilby.core.result.read_in_result(str(path))
    except Exception as exc:  # noqa: BLE001 - bilby raises many types for a bad file
        raise error(f"{what} result '{path}' cannot be read ({type(exc).__name__}: {exc}); delete it and rerun.") from None


# ----------------------------------------------------------------------------- frequency-domain strain files


@dataclass
class FDStrain:
    """A gwnpe frequency-domain strain file.

    Attributes
    ----------
    frequencies : (n_bins,) array [Hz]
    strain : dict ifo -> (n_bins,) complex [1/Hz], phase origin ``start_time``
    start_time, trigger_time : float [GPS s]
    injection_parameters : dict or None
    """

    frequencies: np.ndarray
    strain: dict
    start_time: float
    trigger_time: float
    injection_parameters: dict | None = None


def write_fd_strain(path, frequencies, strain: dict, start_time: float, trigger_time: float, prov: dict | None = None,
                    injection_parameters: dict | None = None) -> None:
    """gwnpe frequency-domain strain file: ``frequencies`` and ``strain/<ifo>`` (complex, phase origin start_time)."""
    import h5py

    with provenance.atomic_output(path) as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            f.create_dataset("frequencies", data=np.asarray(frequencies), track_times=False)
            g = f.create_group("strain", track_order=True)
            for ifo, s in strain.items():
                g.create_dataset(ifo, data=np.asarray(s, complex), track_times=False)
            f.attrs["start_time"] = float(start_time)
            f.attrs["trigger_time"] = float(trigger_time)
            if injection_parameters is not None:
                f.attrs["injection_parameters"] = json.dumps({k: float(v) for k, v in injection_parameters.items()})
            if prov is not None:
                provenance.write_h5(f, prov)


def read_fd_strain(path) -> FDStrain:
    """Read a file written by :func:`write_fd_strain`."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise InferenceError(f"strain file '{path}' does not exist.")
    try:
        with h5py.File(path, "r") as f:
            return FDStrain(
                frequencies=f["frequencies"][...],
                strain={k: v[...] for k, v in f["strain"].items()},
                start_time=float(f.attrs["start_time"]),
                trigger_time=float(f.attrs["trigger_time"]),
                injection_parameters=json.loads(f.attrs["injection_parameters"]) if "injection_parameters" in f.attrs else None,
            )
    except (OSError, KeyError) as exc:
        raise InferenceError(f"strain file '{path}' is not a gwnpe frequency-domain strain file ({exc}).") from exc
