"""The comparison with Bilby: dynesty on the very same data, NPE importance sampling, and the figures of merit.

Three stages, one job per compared injection for the first two:

* :func:`run_bilby_stage`: bilby + dynesty on the injection's strain, PSDs, prior file,
  waveform model and band (all taken from the run's config and ``injections.h5``). Time is
  sampled as absolute GPS ``geocent_time`` with the prior shifted to the trigger time. Nothing
  is marginalised, so every parameter has samples. Optionally relative binning (fiducial point =
  the injected parameters). Resumes from bilby's checkpoint when the rule reruns; a checkpoint
  made with other settings is discarded.
* :func:`run_importance_sampling_stage`: ``comparison.n_samples`` NPE samples, reweighted with the
  exact bilby likelihood (:mod:`gwnpe.inference.importance_sampling`): NPE+IS.
* :func:`run_compare_stage`: per parameter Jensen-Shannon divergences, log Bayes factors
  (dynesty vs IS) and wall-time ratios (:mod:`gwnpe.diagnostics.comparison`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path

from .. import products
from ..diagnostics.comparison import aggregate, compare_injection
from ..diagnostics.plots import overlay_figure
from ..errors import ComparisonError
from ..gw.domain import build_domain
from ..gw.likelihood import build_likelihood
from ..gw.priors import fixed_parameters, load_priors, sampled_keys, to_absolute_time
from ..inference.importance_sampling import importance_result_fields, importance_sample, warn_if_inefficient
from ..inference.sampling import check_model_parameters, model_priors, sample_posterior
from .settings import stage_settings

logger = logging.getLogger(__name__)


def _read_result(path, what: str):
    return products.read_result(path, what, ComparisonError)


def _injection(injections_path, index: int) -> dict:
    inj = products.load_injections(injections_path)
    n = len(inj)
    if not 0 <= index < n:
        raise ComparisonError(f"injection index {index} does not exist in '{injections_path}' (it has {n}: 0-{n - 1}).")
    return {
        "parameters": {k: float(v[index]) for k, v in inj.parameters.items()},
        "strain": {k: v[index] for k, v in inj.strain.items()},
        "psd": inj.psd,
        "snr": {k: float(v[index]) for k, v in inj.snr.items()},
        "start_time": inj.start_time,
        "trigger_time": inj.trigger_time,
    }


def _truth(priors_rel, params: dict, trigger_time: float) -> dict:
    """Injected parameters incl. fixed ones, with GPS geocent_time (bilby's convention)."""
    full = {**fixed_parameters(priors_rel), **params}
    full["geocent_time"] = full.get("geocent_time", 0.0) + trigger_time
    return full


def _settings_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def run_bilby_stage(settings: dict, injections_path, index: int, out_path, threads: int = 1) -> dict:
    """bilby + dynesty for injection ``index``; writes a bilby Result to ``out_path``.

    The sampler works in ``<out dir>/sampler`` (checkpoints, bilby's own files); the result is
    copied to ``out_path`` atomically only when sampling has finished.
    """
    import bilby
    from bilby.gw.conversion import generate_mass_parameters

    cmp = settings["comparison"]
    inj = _injection(injections_path, index)
    priors_rel = load_priors(settings["priors"], approximant=settings["waveform"]["approximant"])
    priors = to_absolute_time(priors_rel, settings["trigger_time"])
    truth = _truth(priors_rel, inj["parameters"], settings["trigger_time"])
    dom = build_domain(settings)
    lk = cmp["likelihood"]
    likelihood = build_likelihood(
        dom, inj["strain"], inj["psd"], inj["start_time"], settings["waveform"]["approximant"],
        settings["waveform"]["reference_frequency"], priors=priors, relative_binning=lk["relative_binning"],
        fiducial_parameters=truth, epsilon=lk["epsilon"],
    )
    out_path = Path(out_path)
    workdir = out_path.parent / "sampler"
    prov = products.make_provenance(
        "bilby", {**stage_settings(settings, "bilby"), "injection": index}, inputs={"injections": injections_path},
        texts={"prior_file": Path(settings["priors"]).read_text()},
    )
    # a checkpoint of other settings or data must not be resumed
    run_hash = _settings_hash({"settings": prov["settings"], "inputs": prov["inputs"]})
    stamp = workdir / "settings.sha256"
    if workdir.exists() and (not stamp.is_file() or stamp.read_text().strip() != run_hash):
        logger.info("discarding the checkpoint in %s: it was made with other settings or data", workdir)
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(run_hash + "\n")
    resumed = any(workdir.glob("*_resume.pickle"))
    logger.info("bilby/dynesty for injection %d (network optimal SNR %.1f)%s", index, inj["snr"]["network_optimal"],
                ", resuming from its checkpoint" if resumed else "")
    s = cmp["sampler"]
    # seeds dynesty's rstate and bilby's global generator (used when nested samples are resampled)
    run_seed = int(settings["seed"]) * 1000 + index
    bilby.core.utils.random.seed(run_seed)
    t0 = time.perf_counter()
    result = bilby.run_sampler(
        likelihood=likelihood, priors=priors, sampler="dynesty", outdir=str(workdir), label="dynesty",
        nlive=s["nlive"], sample=s["sample"], naccept=s["naccept"], dlogz=s["dlogz"], npool=max(1, int(threads)),
        maxcall=s["max_calls"], check_point_delta_t=s["checkpoint_interval"], seed=run_seed, resume=True,
        injection_parameters=truth, plot=False, save="hdf5", print_method="interval-60",
    )
    wall = time.perf_counter() - t0
    result.posterior = generate_mass_parameters(result.posterior)
    sampling_time = float(result.sampling_time.total_seconds() if hasattr(result.sampling_time, "total_seconds")
                          else result.sampling_time)
    result.meta_data["gwnpe"] = {
        "provenance": prov,
        "injection": index,
        "snr": inj["snr"],
        "search_parameters": sampled_keys(priors_rel),
        "sampling_time_s": sampling_time,
        "wall_time_this_job_s": wall,
        "resumed": resumed,
        "likelihood": "relative_binning" if lk["relative_binning"] else "exact",
    }
    products.write_result(result, out_path)
    logger.info("injection %d: %d posterior samples, log BF %.2f +- %.2f, %.0f s sampling, %s likelihood calls",
                index, len(result.posterior), result.log_bayes_factor, result.log_evidence_err, sampling_time,
                result.num_likelihood_evaluations)
    return {"sampling_time": sampling_time, "n_posterior": len(result.posterior)}


def run_importance_sampling_stage(settings: dict, model_path, injections_path, index: int, out_path,
                                  threads: int = 1, device: str = "cpu") -> dict:
    """NPE samples of injection ``index`` reweighted with the exact bilby likelihood (NPE+IS), as a bilby Result.

    The result's posterior holds the proposal samples with columns ``weights`` (mean 1),
    ``log_likelihood`` (ratio to noise), ``log_prior`` and ``log_q``; its evidence fields hold
    the IS estimate.
    """
    import torch
    from bilby.gw.conversion import generate_mass_parameters

    torch.set_num_threads(max(1, int(threads)))
    cmp = settings["comparison"]
    inj = _injection(injections_path, index)
    model = products.load_model(model_path, device=device)
    check_model_parameters(model, inj["parameters"], injections_path)
    seed = int(settings["seed"]) * 1000 + index
    out = sample_posterior(model, inj["strain"], inj["psd"], cmp["n_samples"], start_time=inj["start_time"],
                           seed=seed, device=device)
    n_drawn = cmp["n_samples"] / out["acceptance"]
    w = settings["waveform"]
    res = importance_sample(model, inj["strain"], inj["psd"], inj["start_time"], out["samples"], out["log_q"],
                            n_drawn, w["approximant"], w["reference_frequency"])
    warn_if_inefficient(res, f"injection {index}")
    logger.info("injection %d: NPE %d samples in %.2f s; IS %.1f s: efficiency %.2f%% (ESS %.0f), log BF %.2f +- %.2f",
                index, cmp["n_samples"], out["sampling_time"], res["time"], 100 * res["efficiency"], res["ess"],
                res["log_bayes_factor"], res["log_evidence_err"])
    truth = _truth(model_priors(model), inj["parameters"], settings["trigger_time"])
    extra, evidence, is_summary = importance_result_fields(res)
    products.save_result(
        out_path, model, out["samples"], out["log_q"], out["sampling_time"] + res["time"], label=f"injection_{index}_is",
        injection_parameters=generate_mass_parameters(truth),
        meta_data={"injection": index, "snr": inj["snr"], "npe_time_s": out["sampling_time"], "acceptance": out["acceptance"],
                   "importance_sampling": is_summary,
                   "provenance": products.make_provenance("importance_sampling", stage_settings(settings, "importance_sampling"),
                                                          inputs={"model": model_path, "injections": injections_path})},
        extra_columns=extra, evidence=evidence,
    )
    return is_summary


def run_compare_stage(settings: dict, *, indices: list[int], bilby_paths: list, is_paths: list, out_dir) -> dict:
    """Write ``jsd.csv``, ``summary.json``, ``jsd_table.csv``, ``times.csv`` and ``evidence.csv`` to ``out_dir``."""
    import pandas as pd

    if not (len(indices) == len(bilby_paths) == len(is_paths)):
        raise ComparisonError(f"{len(indices)} injections but {len(bilby_paths)} bilby and {len(is_paths)} NPE+IS results.")
    parameters = sampled_keys(load_priors(settings["priors"]))
    cmp = settings["comparison"]
    per, rows = {}, []
    for i, pb, pi in zip(indices, bilby_paths, is_paths):
        rb, ri = _read_result(pb, "bilby"), _read_result(pi, "NPE+IS")
        for k in parameters:
            for res, what, p in ((rb, "bilby", pb), (ri, "NPE+IS", pi)):
                if k not in res.posterior:
                    raise ComparisonError(f"{what} result '{p}' has no samples of '{k}'; it was made with another prior.")
        c = compare_injection(rb, ri, parameters, cmp["jsd_bootstrap"], int(settings["seed"]) + i)
        rows += [{"injection": i, **r} for r in c.pop("jsd")]
        per[str(i)] = c
    jsd = pd.DataFrame(rows)
    agg = aggregate(per, jsd, indices)
    summary = {"aggregate": agg, "per_injection": per, "estimator": "binned Gaussian KDE, Scott bandwidth, nats; "
               "error = bootstrap standard deviation (gwnpe.diagnostics.jsd)",
               "provenance": products.make_provenance("compare", stage_settings(settings, "compare"))}
    out_dir = Path(out_dir)
    products.write_table(out_dir / "jsd.csv", jsd, index=False, float_format="%.6g")
    wide = jsd.pivot_table(index="parameter", columns=["method", "injection"], values="jsd", sort=False)
    wide.columns = [f"{'NPE+IS' if m == 'npe_is' else 'NPE'} #{i}" for m, i in wide.columns]
    products.write_table(out_dir / "jsd_table.csv", wide.reindex(parameters), float_format="%.4f")
    times = pd.DataFrame([{"injection": int(i), "network SNR": c["snr"]["network_optimal"],
                           "bilby [s]": c["bilby"]["sampling_time_s"], "NPE [s]": c["npe"]["time_s"],
                           "NPE+IS [s]": c["npe_is"]["time_s"], "bilby/NPE": c["time_ratio_npe"],
                           "bilby/(NPE+IS)": c["time_ratio_npe_is"], "bilby likelihood calls": c["bilby"]["likelihood_calls"]}
                          for i, c in per.items()])
    products.write_table(out_dir / "times.csv", times, index=False, float_format="%.4g")
    ev = pd.DataFrame([{"injection": int(i), "log BF dynesty": c["bilby"]["log_bayes_factor"],
                        "err dynesty": c["bilby"]["log_bayes_factor_err"], "log BF NPE+IS": c["npe_is"]["log_bayes_factor"],
                        "err NPE+IS": c["npe_is"]["log_bayes_factor_err"], "difference [sigma]": c["log_bayes_factor_difference_sigma"],
                        "IS efficiency": c["npe_is"]["efficiency"], "IS ESS": c["npe_is"]["ess"]} for i, c in per.items()])
    products.write_table(out_dir / "evidence.csv", ev, index=False, float_format="%.4g")
    products.write_json(out_dir / "summary.json", summary, newline=True, indent=2, default=float)
    logger.info("comparison of %d injections: max JSD NPE %.4f / NPE+IS %.4f nat; median IS efficiency %.1f%%; "
                "min time ratio %.0f", len(indices), agg["jsd_max_nat"]["npe"], agg["jsd_max_nat"]["npe_is"],
                100 * agg["is_efficiency_median"], agg["time_ratio_npe_min"])
    return summary


def plot_overlay(bilby_path, is_path, out_path) -> None:
    """Corner overlay of bilby (dynesty), NPE and NPE+IS posteriors of one injection (PNG)."""
    fig = overlay_figure(_read_result(bilby_path, "bilby"), _read_result(is_path, "NPE+IS"))
    products.save_figure(fig, out_path, dpi=70)
