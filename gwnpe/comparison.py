"""Comparison with Bilby: dynesty on the very same data, NPE importance sampling, and the figures of merit.

Three stages, one job per compared injection for the first two:

* :func:`run_bilby_stage`: bilby + dynesty on the injection's strain, PSDs, prior file,
  waveform model and band (all taken from the run's config and ``injections.h5``). Time is
  sampled as absolute GPS ``geocent_time`` with the prior shifted to the trigger time. Nothing
  is marginalised, so every parameter has samples. Optionally relative binning (fiducial point =
  the injected parameters). Resumes from bilby's checkpoint when the rule reruns; a checkpoint
  made with other settings is discarded.
* :func:`run_importance_sampling_stage`: ``comparison.n_samples`` NPE samples, reweighted with the
  exact bilby likelihood (:mod:`gwnpe.inference.likelihood`): NPE+IS.
* :func:`run_compare_stage`: per parameter Jensen-Shannon divergences (:mod:`gwnpe.diagnostics.jsd`)
  of NPE and NPE+IS against bilby, log Bayes factors (dynesty vs IS), and wall-time ratios.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np

from . import provenance
from .errors import GwnpeError

logger = logging.getLogger(__name__)

#: Goals of the comparison (README "Comparison with Bilby").
GOALS = {"jsd_max_nat": 0.002, "is_efficiency_median_min": 0.10, "log_evidence_max_sigma": 2.0, "speedup_min": 1000.0}


#: Fewest bilby posterior samples a JSD is computed from.
MIN_REFERENCE_SAMPLES = 10


class ComparisonError(GwnpeError):
    """A compared injection does not exist, or the inputs of the comparison do not fit together."""


def comparison_settings(config: dict) -> dict:
    from .config import config_subset

    return config_subset(config, "seed", "detectors", "trigger_time", "priors", "domain", "waveform", "comparison")


def comparison_indices(comparison: dict, n_injections: int) -> list[int]:
    """The injection indices named by ``comparison.injections`` (a count or a list), checked against the campaign."""
    spec = comparison["injections"]
    if isinstance(spec, int):
        if spec > n_injections:
            raise ComparisonError(
                f"comparison.injections asks for the first {spec} injections, but the campaign has {n_injections}; "
                f"lower comparison.injections to at most {n_injections} or raise injections.count."
            )
        return list(range(spec))
    bad = [i for i in spec if not 0 <= int(i) < n_injections]
    if bad:
        raise ComparisonError(
            f"comparison.injections names injection index {bad[0]}"
            + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
            + f", but the campaign has injections 0-{n_injections - 1}; use indices below {n_injections} "
            "or raise injections.count."
        )
    return sorted(int(i) for i in spec)


def _injection(injections_path, index: int) -> dict:
    from .injections import load_injections

    inj = load_injections(injections_path)
    n = len(next(iter(inj["parameters"].values())))
    if not 0 <= index < n:
        raise ComparisonError(f"injection index {index} does not exist in '{injections_path}' (it has {n}: 0-{n - 1}).")
    return {
        "parameters": {k: float(v[index]) for k, v in inj["parameters"].items()},
        "strain": {k: v[index] for k, v in inj["strain"].items()},
        "psd": inj["psd"],
        "snr": {k: float(v[index]) for k, v in inj["snr"].items()},
        "start_time": inj["start_time"],
        "trigger_time": inj["trigger_time"],
    }


def _truth(priors_rel, params: dict, trigger_time: float) -> dict:
    """Injected parameters incl. fixed ones, with GPS geocent_time (bilby's convention)."""
    from .priors import fixed_parameters

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

    from .domain import build_domain
    from .inference.likelihood import build_likelihood
    from .inference.sampling import write_result
    from .priors import load_priors, sampled_keys, to_absolute_time

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
    prov = provenance.make_provenance(
        "bilby", {**settings, "prior_file": Path(settings["priors"]).read_text(), "injection": index},
        inputs={"injections": injections_path},
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
    write_result(result, out_path)
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

    from .inference.likelihood import importance_result_fields, importance_sample, warn_if_inefficient
    from .inference.sampling import model_priors, sample_posterior, save_result
    from .injections import check_model_parameters
    from .nn.model import load_model

    torch.set_num_threads(max(1, int(threads)))
    cmp = settings["comparison"]
    inj = _injection(injections_path, index)
    model = load_model(model_path, device=device)
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
    from bilby.gw.conversion import generate_mass_parameters

    extra, evidence, is_summary = importance_result_fields(res)
    save_result(
        out_path, model, out["samples"], out["log_q"], out["sampling_time"] + res["time"], label=f"injection_{index}_is",
        injection_parameters=generate_mass_parameters(truth),
        meta_data={"injection": index, "snr": inj["snr"], "npe_time_s": out["sampling_time"], "acceptance": out["acceptance"],
                   "importance_sampling": is_summary,
                   "provenance": provenance.make_provenance("importance_sampling", settings,
                                                            inputs={"model": model_path, "injections": injections_path})},
        extra_columns=extra, evidence=evidence,
    )
    return is_summary


# -- comparison ----------------------------------------------------------------------------------------


def _read_result(path, what: str):
    import bilby

    path = Path(path)
    if not path.is_file():
        raise ComparisonError(f"{what} result '{path}' does not exist; rerun the stage that makes it.")
    try:
        return bilby.core.result.read_in_result(str(path))
    except Exception as exc:  # noqa: BLE001 - bilby raises many types for a bad file
        raise ComparisonError(f"{what} result '{path}' cannot be read ({type(exc).__name__}: {exc}); delete it and rerun.") from None


def compare_injection(bilby_result, is_result, parameters: list[str], n_bootstrap: int, seed: int) -> dict:
    """JSDs, evidences and times of one injection."""
    from .diagnostics.jsd import js_divergence

    ref = bilby_result.posterior
    post = is_result.posterior
    if len(ref) < MIN_REFERENCE_SAMPLES:
        raise ComparisonError(
            f"the bilby result of injection {bilby_result.meta_data['gwnpe']['injection']} has {len(ref)} posterior "
            f"samples, too few to compare (at least {MIN_REFERENCE_SAMPLES}); the run stopped early: raise "
            "comparison.sampler.max_calls (or set it to null) or comparison.sampler.nlive."
        )
    w = post["weights"].to_numpy()
    rows = []
    for j, k in enumerate(parameters):
        for method, weights in (("npe", None), ("npe_is", w)):
            v, e = js_divergence(post[k].to_numpy(), ref[k].to_numpy(), weights_x=weights, n_bootstrap=n_bootstrap,
                                 seed=seed + j, name=k)
            rows.append({"parameter": k, "method": method, "jsd": v, "jsd_err": e})
    meta_b = bilby_result.meta_data["gwnpe"]
    meta_i = is_result.meta_data["gwnpe"]
    is_sum = meta_i["importance_sampling"]
    t_bilby = float(meta_b["sampling_time_s"])
    t_npe = float(meta_i["npe_time_s"])
    t_is = t_npe + float(is_sum["time"])
    lbf_b, err_b = float(bilby_result.log_bayes_factor), float(bilby_result.log_evidence_err)
    lbf_i, err_i = float(is_sum["log_bayes_factor"]), float(is_sum["log_evidence_err"])
    sigma = float(np.hypot(err_b, err_i))
    return {
        "jsd": rows,
        "snr": meta_b["snr"],
        "bilby": {"sampling_time_s": t_bilby, "log_bayes_factor": lbf_b, "log_bayes_factor_err": err_b,
                  "n_posterior": len(ref), "likelihood_calls": int(getattr(bilby_result, "num_likelihood_evaluations", 0) or 0),
                  "likelihood": meta_b.get("likelihood")},
        "npe": {"time_s": t_npe, "n_samples": len(post)},
        "npe_is": {"time_s": t_is, "efficiency": float(is_sum["efficiency"]), "ess": float(is_sum["ess"]),
                   "log_bayes_factor": lbf_i, "log_bayes_factor_err": err_i},
        "time_ratio_npe": t_bilby / t_npe,
        "time_ratio_npe_is": t_bilby / t_is,
        "log_bayes_factor_difference": lbf_i - lbf_b,
        "log_bayes_factor_difference_sigma": (lbf_i - lbf_b) / sigma if sigma > 0 else float("inf"),
    }


def run_compare_stage(settings: dict, indices: list[int], bilby_paths: list, is_paths: list, out_dir) -> dict:
    """Write ``jsd.csv``, ``summary.json``, ``jsd_table.csv``, ``times.csv`` and ``evidence.csv`` to ``out_dir``."""
    import pandas as pd

    from .priors import load_priors, sampled_keys

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
    eff = [c["npe_is"]["efficiency"] for c in per.values()]
    agg = {
        "injections": indices,
        "jsd_max_nat": {m: float(jsd[jsd.method == m].jsd.max()) for m in ("npe", "npe_is")},
        "jsd_median_nat": {m: float(jsd[jsd.method == m].jsd.median()) for m in ("npe", "npe_is")},
        "is_efficiency_median": float(np.median(eff)),
        "log_bayes_factor_max_abs_sigma": float(max(abs(c["log_bayes_factor_difference_sigma"]) for c in per.values())),
        "time_ratio_npe_min": float(min(c["time_ratio_npe"] for c in per.values())),
        "time_ratio_npe_median": float(np.median([c["time_ratio_npe"] for c in per.values()])),
        "time_ratio_npe_is_median": float(np.median([c["time_ratio_npe_is"] for c in per.values()])),
    }
    agg["goals"] = {
        "jsd_npe_is_max_below_0.002": agg["jsd_max_nat"]["npe_is"] <= GOALS["jsd_max_nat"],
        "is_efficiency_median_above_10pc": agg["is_efficiency_median"] >= GOALS["is_efficiency_median_min"],
        "log_bayes_factor_within_2_sigma": agg["log_bayes_factor_max_abs_sigma"] <= GOALS["log_evidence_max_sigma"],
        "npe_1000x_faster": agg["time_ratio_npe_min"] >= GOALS["speedup_min"],
    }
    summary = {"aggregate": agg, "per_injection": per, "estimator": "binned Gaussian KDE, Scott bandwidth, nats; "
               "error = bootstrap standard deviation (gwnpe.diagnostics.jsd)",
               "provenance": provenance.make_provenance("compare", settings, inputs={})}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with provenance.atomic_output(out_dir / "jsd.csv") as tmp:
        jsd.to_csv(tmp, index=False, float_format="%.6g")
    wide = jsd.pivot_table(index="parameter", columns=["method", "injection"], values="jsd", sort=False)
    wide.columns = [f"{'NPE+IS' if m == 'npe_is' else 'NPE'} #{i}" for m, i in wide.columns]
    with provenance.atomic_output(out_dir / "jsd_table.csv") as tmp:
        wide.reindex(parameters).to_csv(tmp, float_format="%.4f")
    times = pd.DataFrame([{"injection": int(i), "network SNR": c["snr"]["network_optimal"],
                           "bilby [s]": c["bilby"]["sampling_time_s"], "NPE [s]": c["npe"]["time_s"],
                           "NPE+IS [s]": c["npe_is"]["time_s"], "bilby/NPE": c["time_ratio_npe"],
                           "bilby/(NPE+IS)": c["time_ratio_npe_is"], "bilby likelihood calls": c["bilby"]["likelihood_calls"]}
                          for i, c in per.items()])
    with provenance.atomic_output(out_dir / "times.csv") as tmp:
        times.to_csv(tmp, index=False, float_format="%.4g")
    ev = pd.DataFrame([{"injection": int(i), "log BF dynesty": c["bilby"]["log_bayes_factor"],
                        "err dynesty": c["bilby"]["log_bayes_factor_err"], "log BF NPE+IS": c["npe_is"]["log_bayes_factor"],
                        "err NPE+IS": c["npe_is"]["log_bayes_factor_err"], "difference [sigma]": c["log_bayes_factor_difference_sigma"],
                        "IS efficiency": c["npe_is"]["efficiency"], "IS ESS": c["npe_is"]["ess"]} for i, c in per.items()])
    with provenance.atomic_output(out_dir / "evidence.csv") as tmp:
        ev.to_csv(tmp, index=False, float_format="%.4g")
    with provenance.atomic_output(out_dir / "summary.json") as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2, default=float) + "\n")
    logger.info("comparison of %d injections: max JSD NPE %.4f / NPE+IS %.4f nat; median IS efficiency %.1f%%; "
                "min time ratio %.0f", len(indices), agg["jsd_max_nat"]["npe"], agg["jsd_max_nat"]["npe_is"],
                100 * agg["is_efficiency_median"], agg["time_ratio_npe_min"])
    return summary


def plot_overlay(bilby_path, is_path, out_path) -> None:
    """Corner plot of bilby (dynesty), NPE and NPE+IS posteriors of one injection, truth marked."""
    import corner
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    rb, ri = _read_result(bilby_path, "bilby"), _read_result(is_path, "NPE+IS")
    keys = [k for k in rb.meta_data["gwnpe"]["search_parameters"] if k in ri.posterior]
    truths = [rb.injection_parameters.get(k) for k in keys] if rb.injection_parameters else None
    ranges = []
    for k in keys:
        lo = min(np.percentile(rb.posterior[k], 0.5), np.percentile(ri.posterior[k], 0.5))
        hi = max(np.percentile(rb.posterior[k], 99.5), np.percentile(ri.posterior[k], 99.5))
        ranges.append((lo, hi) if hi > lo else (lo - 1, hi + 1))
    kw = dict(bins=30, smooth=0.9, plot_datapoints=False, plot_density=False, levels=(0.5, 0.9), range=ranges,
              labels=keys)
    layers = [("gwnpe NPE", ri.posterior, None, "tab:blue", "--"),
              ("bilby (dynesty)", rb.posterior, None, "k", "-"),
              ("gwnpe NPE+IS", ri.posterior, ri.posterior["weights"].to_numpy(), "tab:red", "-")]
    fig, handles, skipped = None, [], []
    for label, post, weights, color, ls in layers:
        if len(post) <= len(keys):  # corner needs more samples than dimensions (a budget-capped smoke run)
            skipped.append(f"{label}: only {len(post)} samples")
            continue
        fig = corner.corner(post[keys].to_numpy(), weights=weights, fig=fig, color=color,
                            truths=truths if fig is None else None, truth_color="tab:orange",
                            hist_kwargs={"density": True, "color": color, "ls": ls}, **kw)
        handles.append(Line2D([], [], color=color, ls=ls, label=label))
    fig.legend(handles=handles, loc="upper right", fontsize=14)
    if skipped:
        fig.suptitle("not shown: " + "; ".join(skipped), fontsize=12)
    with provenance.atomic_output(out_path) as tmp:
        fig.savefig(tmp, format="png", dpi=70)
    plt.close(fig)
