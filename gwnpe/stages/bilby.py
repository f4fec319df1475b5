"""The bilby stage: bilby + dynesty on one injection, the reference posterior of the comparison.

The sampler sees the injection's strain, PSDs, prior file, waveform model and band (all taken from
the run's config and ``injections.h5``). Time is absolute GPS ``geocent_time`` with the prior shifted
to the trigger time. Distance, phase and time are marginalised where the config asks for it
(``comparison.likelihood.marginalization``) and the parameter is sampled, and reconstructed after
sampling by bilby (``generate_all_bbh_parameters`` with the likelihood), so every parameter still
has posterior samples. Optionally relative binning (fiducial point = the injected parameters).
Several runs per injection differ only in their seed (``reference_run``): their run-to-run JSD is
the reference's own noise floor. Resumes from bilby's checkpoint when the rule reruns; a checkpoint
made with other settings is discarded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path

from .. import provenance
from ..errors import ComparisonError
from ..gw.domain import build_domain, segment_start
from ..gw.likelihood import MARGINALIZED, build_likelihood, marginalized
from ..gw.priors import injected_parameters, load_priors, sampled_keys, to_absolute_time
from ..products.common import make_provenance
from ..products.injections import load_event
from ..products.results import write_result
from .settings import stage_settings

logger = logging.getLogger(__name__)


def _settings_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def run_seed(settings: dict, index: int, run: int = 0) -> int:
    """Seed of reference run ``run`` of injection ``index`` (run 0 keeps the seed of a single run)."""
    return int(settings["seed"]) * 1000 + int(index) + 100_000 * int(run)


def run_distance_lookup_stage(settings: dict, *, out_path) -> None:
    """bilby's distance-marginalisation lookup table for the run's distance prior (minutes on one core).

    The table depends only on the distance prior and on whether the phase is marginalised too (bilby
    checks both when it loads one), so one table serves every reference run; each copies it.
    """
    import numpy as np

    priors_rel = load_priors(settings["priors"], approximant=settings["waveform"]["approximant"])
    margs = marginalized(settings["comparison"]["likelihood"]["marginalization"], priors_rel)
    if "distance" not in margs:
        raise ComparisonError(f"the prior '{settings['priors']}' does not sample luminosity_distance or "
                              "comparison.likelihood.marginalization has no 'distance': no lookup table is needed.")
    dom = build_domain(settings)
    start = segment_start(settings["trigger_time"], settings["domain"])
    zeros = {ifo: np.zeros(len(dom), complex) for ifo in settings["detectors"]}
    flat = {ifo: np.ones(len(dom)) for ifo in settings["detectors"]}  # the table does not depend on the data
    out_path = Path(out_path)
    tmp = out_path.with_name(out_path.stem + ".partial.npz")
    tmp.unlink(missing_ok=True)
    build_likelihood(dom, zeros, flat, start, settings["waveform"]["approximant"], settings["waveform"]["reference_frequency"],
                     priors=to_absolute_time(priors_rel, settings["trigger_time"]), marginalization=margs,
                     distance_lookup_table=tmp)
    os.replace(tmp, out_path)
    logger.info("distance lookup table for %s -> %s", settings["priors"], out_path)


def run_bilby_stage(settings: dict, *, injections_path, index: int, out_path, threads: int = 1, run: int = 0,
                    distance_lookup=None) -> dict:
    """bilby + dynesty for injection ``index`` (reference run ``run``); writes a bilby Result to ``out_path``.

    The sampler works in ``<out dir>/sampler`` (checkpoints, bilby's own files, its copy of the
    distance lookup table ``distance_lookup``, else one built there); the result is copied to
    ``out_path`` atomically only when sampling has finished.
    """
    import bilby
    from bilby.gw.conversion import generate_all_bbh_parameters, generate_mass_parameters

    cmp = settings["comparison"]
    inj = load_event(injections_path, index, ComparisonError)
    priors_rel = load_priors(settings["priors"], approximant=settings["waveform"]["approximant"])
    priors = to_absolute_time(priors_rel, settings["trigger_time"])
    truth = injected_parameters(priors_rel, inj["parameters"], settings["trigger_time"])
    dom = build_domain(settings)
    lk = cmp["likelihood"]
    margs = marginalized(settings["comparison"]["likelihood"]["marginalization"], priors_rel)
    out_path = Path(out_path)
    workdir = out_path.parent / "sampler"
    prov = make_provenance(
        "bilby", {**stage_settings(settings, "bilby"), "injection": index, "reference_run": int(run)},
        inputs={"injections": injections_path}, texts={"prior_file": Path(settings["priors"]).read_text()},
    )
    # a checkpoint of other settings or data must not be resumed
    run_hash = _settings_hash({"settings": prov["settings"], "inputs": prov["inputs"]})
    stamp = workdir / "settings.sha256"
    if workdir.exists() and (not stamp.is_file() or stamp.read_text().strip() != run_hash):
        logger.info("discarding the checkpoint in %s: it was made with other settings or data", workdir)
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(run_hash + "\n")
    original_priors = priors.copy()  # the likelihood fixes the marginalised parameters in `priors`
    table = workdir / "distance_lookup.npz"
    if "distance" in margs and distance_lookup is not None and not table.exists():
        shutil.copyfile(distance_lookup, table)  # bilby checks that it fits this prior (and rebuilds it if not)
    likelihood = build_likelihood(
        dom, inj["strain"], inj["psd"], inj["start_time"], settings["waveform"]["approximant"],
        settings["waveform"]["reference_frequency"], priors=priors, relative_binning=lk["relative_binning"],
        fiducial_parameters=truth, epsilon=lk["epsilon"], marginalization=margs,
        distance_lookup_table=table,
    )
    resumed = any(workdir.glob("*_resume.pickle"))
    logger.info("bilby/dynesty for injection %d, reference run %d (network optimal SNR %.1f), marginalised over %s%s",
                index, run, inj["snr"]["network_optimal"], ", ".join(margs) or "nothing",
                ", resuming from its checkpoint" if resumed else "")
    s = cmp["sampler"]
    # seeds dynesty's rstate and bilby's global generator (used when nested samples are resampled and
    # when marginalised parameters are reconstructed)
    seed = run_seed(settings, index, run)
    bilby.core.utils.random.seed(seed)
    t0 = time.perf_counter()
    result = bilby.run_sampler(
        likelihood=likelihood, priors=priors, sampler="dynesty", outdir=str(workdir), label="dynesty",
        nlive=s["nlive"], sample=s["sample"], naccept=s["naccept"], dlogz=s["dlogz"], npool=max(1, int(threads)),
        maxcall=s["max_calls"], check_point_delta_t=s["checkpoint_interval"], seed=seed, resume=True,
        check_point_plot=False,  # trace plots at every checkpoint cost more than the sampling between them
        # bilby converts the injection too, and its time-marginalised likelihood expects the jitter parameter
        injection_parameters={**truth, "time_jitter": 0.0} if "time" in margs else truth,
        plot=False, save="hdf5", print_method="interval-60",
        # marginalised parameters are drawn back from their conditional posteriors (bilby's reconstruction)
        conversion_function=generate_all_bbh_parameters if margs else None,
    )
    wall = time.perf_counter() - t0
    if margs:
        result.priors = original_priors  # the prior of every parameter, not the fixed values the sampler saw
    result.posterior = generate_mass_parameters(result.posterior)
    sampling_time = float(result.sampling_time.total_seconds() if hasattr(result.sampling_time, "total_seconds")
                          else result.sampling_time)
    result.meta_data["gwnpe"] = {
        "provenance": provenance.dumps(prov),
        "injection": index,
        "reference_run": int(run),
        "seed": seed,
        "marginalized": [MARGINALIZED[m] for m in margs],
        "snr": inj["snr"],
        "search_parameters": sampled_keys(priors_rel),
        "sampling_time_s": sampling_time,
        "wall_time_this_job_s": wall,
        "resumed": resumed,
        "likelihood": "relative_binning" if lk["relative_binning"] else "exact",
    }
    write_result(result, out_path)
    logger.info("injection %d, run %d: %d posterior samples, log BF %.2f +- %.2f, %.0f s sampling, %s likelihood calls",
                index, run, len(result.posterior), result.log_bayes_factor, result.log_evidence_err, sampling_time,
                result.num_likelihood_evaluations)
    return {"sampling_time": sampling_time, "n_posterior": len(result.posterior)}
