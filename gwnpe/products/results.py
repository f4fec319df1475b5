"""bilby Result files: NPE (and NPE+IS) posteriors, and reference runs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import provenance
from ..errors import GwnpeError, InferenceError


def save_result(path, model, priors, samples: dict, log_q: np.ndarray, sampling_time: float, label: str = "gwnpe",
                injection_parameters: dict | None = None, meta_data: dict | None = None,
                extra_columns: dict | None = None, evidence: dict | None = None) -> None:
    """Write NPE samples as a bilby Result file (HDF5 or JSON by extension), atomically.

    ``priors`` is the model's prior (``geocent_time`` relative to the trigger, as
    :func:`gwnpe.inference.sampling.model_priors` gives); the Result stores it in GPS time.
    ``extra_columns`` (e.g. importance weights) are added to the posterior table; ``evidence``
    (``log_evidence``, ``log_evidence_err``, ``log_noise_evidence``, ``log_bayes_factor``) fills
    the Result's evidence fields.
    """
    import bilby
    import pandas as pd

    from ..gw.priors import to_absolute_time

    path = Path(path)
    priors = to_absolute_time(priors, model.settings["trigger_time"])
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
        # provenance as one JSON string: nested dicts become hundreds of HDF5 objects in a Result file
        meta_data={"gwnpe": {"model_provenance": provenance.dumps(model.provenance or {}),
                             "trigger_time": model.settings["trigger_time"],
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
