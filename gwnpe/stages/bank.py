"""The bank stage: h+ and hx of intrinsic draws from the prior, at a reference distance (``bank.h5``)."""

from __future__ import annotations

import logging
from pathlib import Path

from ..products.bank import Bank, write_bank
from ..products.common import make_provenance
from ..errors import GwnpeError
from ..gw.priors import intrinsic_keys, load_priors
from ..gw.waveforms import build_waveform_generator, check_signal_duration, generate_from_prior, max_failures
from ..seeding import stage_rng
from .settings import stage_settings

logger = logging.getLogger(__name__)


def run_bank_stage(settings: dict, *, out_path: str | Path, progress: bool = True) -> dict:
    """Generate the waveform bank and write ``bank.h5`` (layout: :func:`gwnpe.products.bank.write_bank`).

    Parameters
    ----------
    settings : dict
        Validated config with the bank stage's keys (:func:`gwnpe.stages.settings.stage_settings`).
    out_path : str or Path
    progress : bool
        Show a progress bar.

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

    prov = make_provenance("bank", {**stage_settings(settings, "bank"), "intrinsic_parameters": keys},
                                    texts={"prior_file": Path(settings["priors"]).read_text()})
    bank = Bank(parameters={k: params[k] for k in keys}, frequencies=generator.domain.frequencies,
                         h_plus=hp, h_cross=hc, failures=failures, delta_f=generator.domain.delta_f)
    write_bank(out_path, bank, generator.reference_distance, prov)
    return {"n": n, "failures": len(failures)}
