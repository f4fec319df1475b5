"""Waveform bank: h+ and hx of intrinsic draws from the prior, at a reference distance."""

from __future__ import annotations

import json
import logging
from pathlib import Path


from . import provenance
from .config import check_signal_duration, config_subset
from .errors import GwnpeError, WaveformError
from .priors import intrinsic_keys, load_priors
from .seeding import stage_rng
from .waveforms import build_waveform_generator, generate_from_prior, max_failures

logger = logging.getLogger(__name__)


def bank_settings(config: dict) -> dict:
    """The config subset that shapes the bank (what its provenance records)."""
    return config_subset(config, "seed", "priors", "domain", "waveform", "bank")


def run_bank_stage(settings: dict, out_path: str | Path, progress: bool = True) -> dict:
    """Generate the waveform bank and write ``bank.h5``.

    Layout: ``parameters/<name>`` (n,) float64, ``frequencies`` (n_bins,) [Hz],
    ``h_plus`` and ``h_cross`` (n, n_bins) complex128 [1/Hz] at
    ``waveform.reference_distance``, attribute ``failures`` (JSON list of refused
    draws with LAL's reason) and the provenance.

    Returns
    -------
    dict
        Summary: number of waveforms and failures.
    """
    priors = load_priors(settings["priors"], approximant=settings["waveform"]["approximant"])
    check_signal_duration(settings, priors)
    keys = intrinsic_keys(priors)
    if not keys:
        raise GwnpeError(
            f"prior file '{settings['priors']}' samples no intrinsic parameter; the bank would be one waveform. "
            "Give the masses (or other intrinsic parameters) a prior with a range."
        )
    generator = build_waveform_generator(settings)
    n = settings["bank"]["size"]
    allowed = max_failures(settings["waveform"]["max_failure_fraction"], n)
    rng = stage_rng(settings["seed"], "bank")
    logger.info("bank: %d waveforms of %s over %s, %d bins", n, generator.approximant, keys, len(generator.domain))
    params, hp, hc, failures = generate_from_prior(generator, priors, keys, n, rng, allowed, progress=progress,
                                                   source=str(settings["priors"]))
    logger.info("bank: %d draws refused by LAL and redrawn (%d allowed)", len(failures), allowed)

    import h5py

    prov = provenance.make_provenance(
        "bank", {**settings, "prior_file": Path(settings["priors"]).read_text(), "intrinsic_parameters": keys}
    )
    with provenance.atomic_output(out_path) as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            grp = f.create_group("parameters", track_order=True)
            for k in keys:
                grp.create_dataset(k, data=params[k], track_times=False)
            f.create_dataset("frequencies", data=generator.domain.frequencies, track_times=False)
            f.create_dataset("h_plus", data=hp, track_times=False)
            f.create_dataset("h_cross", data=hc, track_times=False)
            f.attrs["failures"] = json.dumps(failures)
            f.attrs["delta_f"] = generator.domain.delta_f
            f.attrs["reference_distance"] = generator.reference_distance
            provenance.write_h5(f, prov)
    return {"n": n, "failures": len(failures)}


def load_bank(path: str | Path) -> dict:
    """Read ``bank.h5`` into a dict: parameters, frequencies, h_plus, h_cross, failures, delta_f."""
    with provenance.open_stage_output(path, "bank file", "bank", GwnpeError) as f:
        return {
            "parameters": {k: v[...] for k, v in f["parameters"].items()},
            "frequencies": f["frequencies"][...],
            "h_plus": f["h_plus"][...],
            "h_cross": f["h_cross"][...],
            "failures": json.loads(f.attrs["failures"]),
            "delta_f": float(f.attrs["delta_f"]),
        }


__all__ = ["bank_settings", "run_bank_stage", "load_bank", "WaveformError"]
