"""The importance_sampling stage: NPE samples of one compared injection, reweighted with the exact
bilby likelihood (NPE+IS, :mod:`gwnpe.inference.importance_sampling`), as a bilby Result."""

from __future__ import annotations

import logging

from .. import provenance
from ..errors import ComparisonError
from ..gw.priors import injected_parameters
from ..inference.importance_sampling import (importance_result_fields, importance_sample, warn_if_inefficient)
from ..inference.sampling import check_model_parameters, model_priors, sample_posterior
from ..products.common import make_provenance
from ..products.injections import load_event
from ..inference.refinement import sample_to_target
from ..products.model import load_model, refined_model_path, save_model
from .cluster import optional_client
from ..products.results import save_result
from .settings import stage_settings

logger = logging.getLogger(__name__)


#: Config section of the sample sizes -> the stage (settings table entry) that uses it.
SECTION_STAGE = {"comparison": "importance_sampling", "accuracy": "accuracy_sampling"}
#: Seed offset of the accuracy campaign's draws, so that they never repeat the comparison's of the same event.
SECTION_SEED_OFFSET = {"comparison": 0, "accuracy": 500_000_000}


def run_importance_sampling_stage(settings: dict, *, model_path, injections_path, index: int, out_path,
                                  threads: int = 1, device: str = "cpu", section: str = "comparison") -> dict:
    """NPE samples of injection ``index`` reweighted with the exact bilby likelihood (NPE+IS), as a bilby Result.

    The result's posterior holds the proposal samples with columns ``weights`` (mean 1),
    ``log_likelihood`` (ratio to noise), ``log_prior`` and ``log_q``; its evidence fields hold
    the IS estimate. ``section`` is the config section of the sample sizes and target ESS:
    ``comparison`` (the Bilby comparison) or ``accuracy`` (the accuracy campaign).
    """
    import torch
    from bilby.gw.conversion import generate_mass_parameters

    torch.set_num_threads(max(1, int(threads)))
    cmp = settings[section]
    stage = SECTION_STAGE[section]
    inj = load_event(injections_path, index, ComparisonError)
    model = load_model(model_path, device=device)
    check_model_parameters(model, inj["parameters"], injections_path)
    seed = int(settings["seed"]) * 1000 + index + SECTION_SEED_OFFSET[section]
    w = settings["waveform"]
    if cmp.get("target_ess") is None:
        out = sample_posterior(model, inj["strain"], inj["psd"], cmp["n_samples"], start_time=inj["start_time"],
                               seed=seed, device=device)
        n_drawn = cmp["n_samples"] / out["acceptance"]
        res = importance_sample(model, inj["strain"], inj["psd"], inj["start_time"], out["samples"], out["log_q"],
                                n_drawn, w["approximant"], w["reference_frequency"], seed=seed)
        samples = {**out["samples"], **res["reconstructed"]}  # with the marginalised parameters' draws
        log_q, npe_time, acceptance = out["log_q"], out["sampling_time"], out["acceptance"]
        gnpe = out.get("gnpe")
    else:
        with optional_client(settings.get("dask"), threads) as client:
            drawn = sample_to_target(model, inj["strain"], inj["psd"], inj["start_time"], cmp, w, seed=seed,
                                     client=client, device=device)
        if drawn["refined"] is not None:
            # the per-event network beside the result (the amortised model file is untouched)
            path = refined_model_path(out_path)
            save_model(path, drawn["refined"], make_provenance(stage, stage_settings(settings, stage),
                                                               inputs={"model": model_path, "injections": injections_path}),
                       extra=model.extra)
            drawn["res"]["refinement"]["model"] = path.name
        res, samples, log_q, npe_time = drawn["res"], drawn["samples"], drawn["log_q"], drawn["npe_time"]
        acceptance, gnpe = drawn["acceptance"], drawn["gnpe"]
    warn_if_inefficient(res, f"injection {index}")
    logger.info("injection %d: NPE %d samples in %.2f s; IS %.1f s: efficiency %.2f%% (ESS %.0f), log BF %.2f +- %.2f",
                index, len(log_q), npe_time, res["time"], 100 * res["efficiency"], res["ess"],
                res["log_bayes_factor"], res["log_evidence_err"])
    priors = model_priors(model)
    truth = injected_parameters(priors, inj["parameters"], settings["trigger_time"])
    extra, evidence, is_summary = importance_result_fields(res)
    if "refinement" in res:
        is_summary["refinement"] = res["refinement"]
    save_result(
        out_path, model, priors, samples, log_q, npe_time + res["time"], label=f"injection_{index}_is",
        injection_parameters=generate_mass_parameters(truth),
        meta_data={"injection": index, "snr": inj["snr"], "npe_time_s": npe_time, "acceptance": acceptance,
                   "importance_sampling": is_summary, **({"gnpe": gnpe} if gnpe is not None else {}),
                   "provenance": provenance.dumps(make_provenance(
                       stage, stage_settings(settings, stage),
                       inputs={"model": model_path, "injections": injections_path}))},
        extra_columns=extra, evidence=evidence,
    )
    return is_summary
