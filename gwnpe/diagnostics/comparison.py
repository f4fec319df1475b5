"""Figures of merit of a comparison with a reference sampler (bilby + dynesty): per-parameter
Jensen-Shannon divergences of NPE and NPE+IS, log Bayes factors, wall-time ratios, and the goals."""

from __future__ import annotations

import numpy as np

from ..errors import ComparisonError
from .jsd import js_divergence, prior_domain

#: Goals of the comparison (README "Comparison with Bilby").
GOALS = {"jsd_max_nat": 0.002, "is_efficiency_median_min": 0.10, "log_evidence_max_sigma": 2.0, "speedup_min": 1000.0}


#: Least ESS, and largest Pareto k-hat, of NPE+IS weights for its evidence to be compared with dynesty's.
EVIDENCE_MIN_ESS = 100
EVIDENCE_MAX_PARETO_K = 0.7

#: Fewest bilby posterior samples a JSD is computed from.
MIN_REFERENCE_SAMPLES = 10

#: Sampler settings bilby recommends for results one publishes (its dynesty guide): below them a
#: reference is a smoke test, not a converged posterior.
CONVERGED_NLIVE = 1000
CONVERGED_NACCEPT = 60


def reference_quality(sampler: dict) -> str:
    """``converged (...)`` for bilby's publication settings (nlive >= 1000, naccept >= 60, no call cap),
    else ``smoke (...)`` naming what falls short."""
    short = []
    if sampler["nlive"] < CONVERGED_NLIVE:
        short.append(f"nlive {sampler['nlive']} < {CONVERGED_NLIVE}")
    if sampler["sample"] == "acceptance-walk" and sampler["naccept"] < CONVERGED_NACCEPT:
        short.append(f"naccept {sampler['naccept']} < {CONVERGED_NACCEPT}")
    if sampler.get("max_calls") is not None:
        short.append(f"capped at {sampler['max_calls']} calls")
    if short:
        return "smoke (" + ", ".join(short) + "): not a converged reference; config/validation.yaml is"
    return f"converged (nlive {sampler['nlive']}, {sampler['sample']}, naccept {sampler['naccept']})"


#: A JSD within the reference's run-to-run JSD plus this margin [nat] is "indistinguishable".
INDISTINGUISHABLE_MARGIN = 0.002


def jsd_verdict(jsd: float, floor: float | None) -> str:
    """``indistinguishable`` when ``jsd <= floor + 0.002`` nat, else ``distinguishable``; without a floor
    (one reference run) ``no floor (one reference run)``."""
    if floor is None or not np.isfinite(floor):
        return "no floor (one reference run)"
    return "indistinguishable" if jsd <= floor + INDISTINGUISHABLE_MARGIN else "distinguishable"


def _priors(result) -> dict:
    """A Result's priors, or {} for a Result without any (bilby's property raises then)."""
    try:
        return result.priors or {}
    except ValueError:
        return {}


def _n_eff(posterior, weights) -> float:
    return float(len(posterior)) if weights is None else float(np.sum(weights) ** 2 / np.sum(weights**2))


def posterior_jsd(a, b, parameters: list[str] | None = None, n_bootstrap: int = 0, seed: int = 0,
                  weights_a: bool = True, weights_b: bool = True) -> list[dict]:
    """Per-parameter Jensen-Shannon divergences [nat] of two bilby Results, with bootstrap errors.

    Parameters
    ----------
    a, b : bilby.core.result.Result
        Their posteriors; a ``weights`` column (importance weights) is used when present and the
        corresponding ``weights_*`` is True.
    parameters : list of str, optional
        Default: the search parameters of ``a`` that both posteriors hold.
    n_bootstrap, seed
        See :func:`gwnpe.diagnostics.jsd.js_divergence`.

    Returns
    -------
    list of dict
        ``parameter``, ``jsd``, ``jsd_err``, ``n_eff_a``, ``n_eff_b`` per parameter. Bounds and
        periodicity come from ``a``'s priors (else ``b``'s); parameters without a prior (derived
        masses) are unbounded.
    """
    pa, pb = a.posterior, b.posterior
    if parameters is None:
        parameters = [k for k in a.search_parameter_keys if k in pb]
    missing = [k for k in parameters if k not in pa or k not in pb]
    if missing:
        raise ComparisonError(f"parameters {missing} are not in both posteriors; compare parameters both hold.")
    wa = pa["weights"].to_numpy() if weights_a and "weights" in pa else None
    wb = pb["weights"].to_numpy() if weights_b and "weights" in pb else None
    rows = []
    for j, k in enumerate(parameters):
        prior = _priors(a).get(k) or _priors(b).get(k)
        bounds, periodic = prior_domain(prior)
        v, e = js_divergence(pa[k].to_numpy(), pb[k].to_numpy(), weights_x=wa, weights_y=wb, n_bootstrap=n_bootstrap,
                             seed=seed + j, bounds=bounds, periodic=periodic, name=k)
        rows.append({"parameter": k, "jsd": v, "jsd_err": e, "n_eff_a": _n_eff(pa, wa), "n_eff_b": _n_eff(pb, wb)})
    return rows


def compare_injection(bilby_result, is_result, parameters: list[str], n_bootstrap: int, seed: int,
                      other_runs: list | None = None) -> dict:
    """JSDs, evidences and times of one injection (bilby Results of the reference and of NPE+IS).

    ``other_runs``: further bilby runs of the same injection with other seeds; the JSD between
    ``bilby_result`` and the first of them is the reference's noise floor of each parameter, and each
    NPE / NPE+IS JSD gets a verdict against it (:func:`jsd_verdict`).
    """
    ref = bilby_result.posterior
    post = is_result.posterior
    for r in (bilby_result, *(other_runs or [])):
        if len(r.posterior) < MIN_REFERENCE_SAMPLES:
            meta = r.meta_data["gwnpe"]
            raise ComparisonError(
                f"the bilby result of injection {meta['injection']} (reference run {meta.get('reference_run', 0)}) has "
                f"{len(r.posterior)} posterior samples, too few to compare (at least {MIN_REFERENCE_SAMPLES}); the run "
                "stopped early: raise comparison.sampler.max_calls (or set it to null) or comparison.sampler.nlive."
            )
    floor = {}
    if other_runs:
        for r in posterior_jsd(bilby_result, other_runs[0], parameters, n_bootstrap, seed + 7919):
            floor[r["parameter"]] = (r["jsd"], r["jsd_err"])
    rows = []
    for method, weighted in (("npe", False), ("npe_is", True)):
        for r in posterior_jsd(is_result, bilby_result, parameters, n_bootstrap, seed, weights_a=weighted):
            f, f_err = floor.get(r["parameter"], (float("nan"), float("nan")))
            rows.append({"parameter": r["parameter"], "method": method, "jsd": r["jsd"], "jsd_err": r["jsd_err"],
                         "floor": f, "floor_err": f_err, "verdict": jsd_verdict(r["jsd"], f),
                         "n_eff": r["n_eff_a"], "n_reference": r["n_eff_b"]})
    meta_b = bilby_result.meta_data["gwnpe"]
    meta_i = is_result.meta_data["gwnpe"]
    is_sum = meta_i["importance_sampling"]
    t_bilby = float(meta_b["sampling_time_s"])
    t_npe = float(meta_i["npe_time_s"])
    t_is = t_npe + float(is_sum["time"])
    lbf_b, err_b = float(bilby_result.log_bayes_factor), float(bilby_result.log_evidence_err)
    lbf_i, err_i = float(is_sum["log_bayes_factor"]), float(is_sum["log_evidence_err"])
    sigma = float(np.hypot(err_b, err_i))
    verdict = evidence_verdict(float(is_sum["ess"]), float(is_sum.get("pareto_k", float("nan"))))
    n_ref = len(ref)  # bilby's posterior: equally weighted draws, each an effective sample
    return {
        "jsd": rows,
        "snr": meta_b["snr"],
        "reference_runs": [{"seed": r.meta_data["gwnpe"].get("seed"), "log_bayes_factor": float(r.log_bayes_factor),
                            "log_bayes_factor_err": float(r.log_evidence_err), "n_posterior": len(r.posterior),
                            "sampling_time_s": float(r.meta_data["gwnpe"]["sampling_time_s"]),
                            "marginalized": r.meta_data["gwnpe"].get("marginalized", [])}
                           for r in (bilby_result, *(other_runs or []))],
        "bilby": {"sampling_time_s": t_bilby, "log_bayes_factor": lbf_b, "log_bayes_factor_err": err_b,
                  "n_posterior": len(ref), "likelihood_calls": int(getattr(bilby_result, "num_likelihood_evaluations", 0) or 0),
                  "likelihood": meta_b.get("likelihood")},
        "npe": {"time_s": t_npe, "n_samples": len(post)},
        "npe_is": {"time_s": t_is, "efficiency": float(is_sum["efficiency"]), "ess": float(is_sum["ess"]),
                   "pareto_k": float(is_sum.get("pareto_k", float("nan"))),
                   "log_bayes_factor": lbf_i, "log_bayes_factor_err": err_i},
        "time_ratio_npe": t_bilby / t_npe,
        "time_ratio_npe_is": t_bilby / t_is,
        # time to an effective sample: the ratio that compares like with like
        "seconds_per_effective_sample": {"bilby": t_bilby / n_ref, "npe_is": t_is / max(float(is_sum["ess"]), 1e-300)},
        "log_bayes_factor_difference": lbf_i - lbf_b,
        "log_bayes_factor_difference_sigma": ((lbf_i - lbf_b) / sigma if sigma > 0 else float("inf"))
        if verdict == "assessable" else None,
        "evidence_verdict": verdict,
    }


def evidence_verdict(ess: float, khat: float) -> str:
    """``"assessable"`` when the NPE+IS evidence can be compared (ESS >= 100 and Pareto k-hat <= 0.7),
    else ``"not assessable: ..."`` saying why (its error would be meaningless)."""
    reasons = []
    if not ess >= EVIDENCE_MIN_ESS:
        reasons.append(f"ESS {ess:.0f} < {EVIDENCE_MIN_ESS}")
    if not khat <= EVIDENCE_MAX_PARETO_K:
        reasons.append(f"Pareto k-hat {khat:.2f} > {EVIDENCE_MAX_PARETO_K}")
    return "assessable" if not reasons else "not assessable: " + ", ".join(reasons)


def aggregate(per: dict, jsd, indices: list[int]) -> dict:
    """Aggregate figures over the compared injections (``per``: :func:`compare_injection` results by
    index; ``jsd``: a DataFrame of their JSD rows) and whether each goal is met."""
    eff = [c["npe_is"]["efficiency"] for c in per.values()]
    agg = {
        "injections": indices,
        "jsd_max_nat": {m: float(jsd[jsd.method == m].jsd.max()) for m in ("npe", "npe_is")},
        "jsd_median_nat": {m: float(jsd[jsd.method == m].jsd.median()) for m in ("npe", "npe_is")},
        "reference_floor_max_nat": float(jsd.floor.max()) if jsd.floor.notna().any() else None,
        # fraction of (injection, parameter) pairs whose JSD is within the reference floor + 0.002 nat
        "indistinguishable_fraction": {m: float((jsd[jsd.method == m].verdict == "indistinguishable").mean())
                                       if jsd.floor.notna().any() else None for m in ("npe", "npe_is")},
        "is_efficiency_median": float(np.median(eff)),
        # only where the evidence is assessable (None when nowhere)
        "log_bayes_factor_max_abs_sigma": max((abs(c["log_bayes_factor_difference_sigma"]) for c in per.values()
                                               if c["log_bayes_factor_difference_sigma"] is not None), default=None),
        "evidence_assessable": [i for i, c in per.items() if c["evidence_verdict"] == "assessable"],
        "time_ratio_npe_min": float(min(c["time_ratio_npe"] for c in per.values())),
        "time_ratio_npe_median": float(np.median([c["time_ratio_npe"] for c in per.values()])),
        "time_ratio_npe_is_median": float(np.median([c["time_ratio_npe_is"] for c in per.values()])),
    }
    agg["goals"] = {
        "jsd_npe_is_max_below_0.002": agg["jsd_max_nat"]["npe_is"] <= GOALS["jsd_max_nat"],
        "npe_is_indistinguishable_from_the_reference": "no floor (one reference run)"
        if agg["indistinguishable_fraction"]["npe_is"] is None else agg["indistinguishable_fraction"]["npe_is"] == 1.0,
        "is_efficiency_median_above_10pc": agg["is_efficiency_median"] >= GOALS["is_efficiency_median_min"],
        "log_bayes_factor_within_2_sigma": "not assessable" if agg["log_bayes_factor_max_abs_sigma"] is None
        else agg["log_bayes_factor_max_abs_sigma"] <= GOALS["log_evidence_max_sigma"],
        "npe_1000x_faster": agg["time_ratio_npe_min"] >= GOALS["speedup_min"],
    }
    return agg
