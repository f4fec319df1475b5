"""Per-event refinement: a copy of the amortised network fine-tuned on a prior truncated to one event's
posterior, then importance sampling with the *original* prior.

Why it is correct
-----------------
The refined network ``q_T`` is trained on simulations from the prior ``pi_T`` truncated to a box ``T``
around the amortised posterior (its ``quantile``/``1 - quantile`` range per parameter, widened by
``margin`` times that range on each side, clipped to the prior). Its target is
``p_T(theta | d) ~ pi_T(theta) L(theta)``, which equals the true posterior wherever the posterior has
its mass inside ``T``. The importance weights always use the full prior, ``w = pi(theta) L(theta) /
q_T(theta)``: they are unbiased for any proposal whose support covers the posterior (a flow's support
is the whole space), so a truncation that cuts posterior mass cannot bias the evidence silently -- it
shows up as a poor efficiency and as weighted mass piled at the box's edge, which
:func:`truncation_check` measures and the result reports (``cut``).

Periodic parameters (phase, ra, psi) are never truncated. The network is re-standardised to the
truncated prior's mean and spread before fine-tuning, so its flow works at the event's scale. The
amortised network is never modified.
"""

from __future__ import annotations

import copy
import logging
import math
import time

import numpy as np
import torch

from ..errors import InferenceError
from ..gw.priors import intrinsic_keys, is_periodic, prior_bounds, truncate_priors
from ..gw.svd import ReducedBasis
from ..gw.waveforms import build_waveform_generator, generate_from_prior, max_failures
from ..nn.gnpe import gnpe_standardisation
from ..nn.simulator import Simulator, TrainingData
from ..nn.training import evaluate, prior_standardisation, torch_seed, train_epoch
from ..seeding import stage_rng, stage_seed_sequence
from .frame import ra_offset, reference_time
from .sampling import model_domain, model_priors, whitening_asds

logger = logging.getLogger(__name__)

#: Settings of a refinement (the config's ``refinement`` section; every key documented in its schema).
DEFAULTS = {
    "threshold": 0.01,      # refine (auto) when the amortised IS efficiency is below this fraction
    "waveforms": 20000,     # waveforms simulated from the truncated prior
    "epochs": 15,           # passes over them
    "batch_size": 512,
    "learning_rate": 3.0e-4,
    "max_seconds": 180.0,   # wall-time bound of the fine-tuning [s]
    "quantile": 0.001,      # tail fraction cut from each side of the amortised samples
    "margin": 0.5,          # widening on each side, in units of the kept range
    "edge_band": 0.05,      # truncation check: band at a cut edge, in units of the box width
    "edge_mass": 0.01,      # weighted posterior mass in that band that flags a cut
}

REFINE_MODES = ("auto", "never", "always")
#: Seed offset of the refined network's draws (far from the per-injection and per-batch offsets).
REFINED_SEED_OFFSET = 250_000_000


def network_frame(model, samples: dict) -> dict:
    """Physical samples (GPS ``geocent_time``, the event's sky) in the frame the network is trained in:
    ``geocent_time`` relative to the trigger, right ascension rotated back (:mod:`gwnpe.inference.frame`)."""
    out = dict(samples)
    if "geocent_time" in out:
        out["geocent_time"] = out["geocent_time"] - model.settings["trigger_time"]
    if "ra" in out and ra_offset(model):
        out["ra"] = np.mod(out["ra"] - ra_offset(model), 2 * np.pi)
    return out


def refinement_settings(section: dict | None) -> dict:
    """The refinement settings: :data:`DEFAULTS` updated with ``section`` (unknown keys refused)."""
    section = dict(section or {})
    unknown = sorted(set(section) - set(DEFAULTS))
    if unknown:
        raise InferenceError(f"unknown refinement setting(s) {', '.join(unknown)}; known: {', '.join(DEFAULTS)}.")
    return {**DEFAULTS, **section}


def model_basis(model, basis: ReducedBasis | None = None) -> ReducedBasis:
    """The reduced basis the model's training set was compressed with: ``basis`` when given, else the
    copy stored in the model file (models trained since the refinement work carry it)."""
    if basis is not None:
        return basis
    extra = getattr(model, "extra", {}) or {}
    if "basis_V" not in extra or "asd_reference" not in extra:
        raise InferenceError(
            "this model file carries no reduced basis, which refinement needs to simulate new waveforms; retrain the "
            "model (the train stage now stores its basis), or give the basis file of its svd stage (--basis)."
        )
    dom = model_domain(model)
    return ReducedBasis(V=np.asarray(extra["basis_V"]), asd_reference=np.asarray(extra["asd_reference"], float),
                        frequencies=dom.frequencies, delta_f=dom.delta_f)


def posterior_bounds(samples: dict, priors, names: list[str], quantile: float, margin: float) -> dict[str, tuple[float, float]]:
    """The truncation box: per non-periodic parameter, the ``[quantile, 1 - quantile]`` range of the
    (unweighted, amortised) samples widened by ``margin`` times its width on each side and clipped to
    the prior's range; parameters whose box is the whole prior range are left out."""
    out = {}
    for k in names:
        prior = priors[k]
        if is_periodic(prior):
            continue
        lo, hi = np.quantile(np.asarray(samples[k], float), [quantile, 1.0 - quantile])
        width = max(hi - lo, 1e-12 * max(1.0, abs(hi)))
        pmin, pmax = prior_bounds(prior)
        lo, hi = max(lo - margin * width, pmin), min(hi + margin * width, pmax)
        if lo > pmin or hi < pmax:
            out[k] = (float(lo), float(hi))
    return out


def truncation_check(samples: dict, weights: np.ndarray, bounds: dict, priors, band: float = 0.05,
                     threshold: float = 0.01) -> dict:
    """Does the truncation box cut posterior mass?

    For each edge of the box that lies inside the prior, the weighted fraction of the final posterior
    samples in the band of ``band`` times the box width at that edge, or beyond it. A posterior well
    inside the box puts ~0 there; one cut by the box piles up at the edge (the refined network puts no
    mass beyond it, and the weights cannot restore mass that is never proposed). Returns
    ``edge_mass`` (edge name -> fraction), ``cut`` (the edges above ``threshold``) and ``ok``.
    """
    w = np.asarray(weights, float)
    w = w / w.sum()
    edge_mass, cut = {}, []
    for k, (lo, hi) in bounds.items():
        x = np.asarray(samples[k], float)
        pmin, pmax = prior_bounds(priors[k])
        width = hi - lo
        for side, inside, mask in (("lower", lo > pmin, x <= lo + band * width), ("upper", hi < pmax, x >= hi - band * width)):
            if not inside:
                continue
            m = float(w[mask].sum())
            edge_mass[f"{k} {side}"] = m
            if m > threshold:
                cut.append(f"{k} {side}")
    return {"edge_mass": edge_mass, "cut": cut, "ok": not cut}


def _standardisation(model, priors, names: list[str], seed: int):
    """Mean and std of the network's parameters (and GNPE proxies) under the truncated prior."""
    if model.gnpe is None:
        return prior_standardisation(priors, names, seed), None
    from ..gw.priors import draw

    rng = np.random.default_rng(stage_seed_sequence(seed, "refinement-standardisation"))
    stats = gnpe_standardisation(draw(priors, names, 100_000, rng), names, model.settings["detectors"],
                                 reference_time(model), float(model.gnpe["kappa"]), rng)
    return stats["parameters"], stats


def refine_model(model, bounds: dict[str, tuple[float, float]], settings: dict | None = None, *, seed: int = 0,
                 basis: ReducedBasis | None = None, device: str | torch.device = "cpu", asds=None) -> tuple:
    """Fine-tune a copy of ``model`` on simulations from its prior truncated to ``bounds``.

    ``asds`` (n_det, n_bins): the event's analysis ASDs, which the simulations are whitened with (and
    which a noise-conditioned network is given); default the ASDs the model was trained with.

    Simulates ``waveforms`` intrinsic waveforms from the truncated prior (LALSimulation through
    :mod:`gwnpe.gw.waveforms`), compresses them with the model's basis, and trains for ``epochs``
    passes with extrinsic parameters and noise drawn on the fly from the truncated prior (as the train
    stage does), with a cosine learning-rate schedule, stopping early when ``max_seconds`` is spent.
    Deterministic for a given seed unless the time bound stops it (``stopped_by_time`` says so).

    Returns
    -------
    refined : NPEModel
        The fine-tuned copy (eval mode); ``refined.settings["refinement"]`` records the box and settings.
    info : dict
        ``seconds`` (total), ``simulation_seconds``, ``training_seconds``, ``epochs`` (completed),
        ``stopped_by_time``, ``waveforms``, ``validation_loss`` (before and after, on the truncated prior).
    """
    s = refinement_settings(settings)
    t0 = time.perf_counter()
    basis = model_basis(model, basis)
    priors = model_priors(model)
    trunc = truncate_priors(priors, bounds)
    names = list(model.parameter_names)
    gen = build_waveform_generator(model.settings)
    keys = intrinsic_keys(trunc)
    n = int(s["waveforms"])
    rng = stage_rng(seed, "refinement-waveforms")
    params, hp, hc, failures = generate_from_prior(gen, trunc, keys, n, rng,
                                                   max_failures(model.settings["waveform"].get("max_failure_fraction", 0.01), n))
    data = TrainingData({k: params[k] for k in keys}, basis.compress(hp, dtype=np.complex64),
                        basis.compress(hc, dtype=np.complex64))
    del hp, hc
    t_sim = time.perf_counter() - t0
    asds = np.asarray(model.extra["asds"] if asds is None else asds, float)
    kappa = float(model.gnpe["kappa"]) if model.gnpe is not None else None
    device = torch.device(device)
    sim = Simulator(basis.V, basis.asd_reference, asds, model_domain(model).frequencies, model.settings["detectors"],
                    reference_time(model), trunc, model.settings["reference_distance"],
                    gnpe_kappa=kappa).to(device)

    refined = copy.deepcopy(model).to(device)
    (mean, std), gstats = _standardisation(model, trunc, names, seed)
    with torch.no_grad():
        refined.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        refined.std.copy_(torch.as_tensor(std, dtype=torch.float32))
        if gstats is not None:
            refined.proxy_mean.copy_(torch.as_tensor(gstats["proxies"][0]))
            refined.proxy_std.copy_(torch.as_tensor(gstats["proxies"][1]))
    refined.set_projection_trainable(True)
    n_val = max(1, int(round(0.05 * n)))
    train_idx, val_idx = torch.arange(n - n_val), torch.arange(n - n_val, n)
    B = int(s["batch_size"])
    steps = math.ceil(len(train_idx) / B)
    opt = torch.optim.AdamW(refined.parameters(), lr=float(s["learning_rate"]), weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, int(s["epochs"]) * steps))
    tseed = torch_seed(seed, "refinement")
    before = evaluate(refined, sim, data, val_idx, names, B, tseed)
    t1 = time.perf_counter()
    done, stopped, history = 0, False, []
    for epoch in range(int(s["epochs"])):
        loss = train_epoch(refined, sim, data, train_idx, names, opt, sched, epoch=epoch, seed=tseed, batch_size=B,
                           gradient_clip=1.0, device_type=device.type)
        done = epoch + 1
        history.append(loss)
        elapsed = time.perf_counter() - t1
        if done < int(s["epochs"]) and elapsed * (done + 1) / done > float(s["max_seconds"]):
            stopped = True  # the next epoch would overrun the bound
            break
    after = evaluate(refined, sim, data, val_idx, names, B, tseed)
    refined.eval().cpu()
    info = {"seconds": time.perf_counter() - t0, "simulation_seconds": t_sim, "training_seconds": time.perf_counter() - t1,
            "epochs": done, "stopped_by_time": stopped, "waveforms": n, "waveform_failures": len(failures),
            "validation_loss": {"before": before, "after": after}, "train_loss": history}
    refined.settings = {**model.settings, "refinement": {"bounds": {k: list(v) for k, v in bounds.items()},
                                                          "settings": s, "seed": int(seed)}}
    logger.info("refinement: %d waveforms in %.1f s, %d epochs in %.1f s%s; truncated-prior validation loss %.3f -> %.3f",
                n, t_sim, done, info["training_seconds"], " (stopped by the time bound)" if stopped else "", before, after)
    return refined, info


def importance_sample_refined(model, strain: dict, psds: dict, start_time: float, approximant: str,
                              reference_frequency: float, *, target_ess: float, max_samples: int, batch_size: int,
                              refine: str = "auto", settings: dict | None = None, seed: int = 0, client=None,
                              basis: ReducedBasis | None = None, device: str = "cpu") -> tuple[dict, object | None]:
    """Importance sampling to a target ESS, refining the network for this event when needed.

    The amortised network's first batch (``batch_size`` samples) is importance-sampled. With
    ``refine="auto"`` and its efficiency at least ``threshold``, or with ``"never"``, sampling continues
    with the amortised network to the target. Otherwise (efficiency below the threshold, or
    ``"always"``) the truncation box is read from that batch (:func:`posterior_bounds`), a copy of the
    network is fine-tuned (:func:`refine_model`), and importance sampling to the target starts afresh
    with the refined network (the batches of the two proposals are not mixed). The final posterior is
    checked against the box (:func:`truncation_check`).

    Returns
    -------
    result : dict
        :func:`~gwnpe.inference.importance_sampling.importance_sample_to_target`'s result of the final
        proposal, plus ``refinement``: ``mode``, ``refined`` (bool), ``efficiency_before``,
        ``ess_before``, ``n_before`` (the amortised batch), ``efficiency_after`` and, when refined,
        ``time`` [s], ``bounds``, ``truncation`` and the fine-tuning ``info``.
    refined : NPEModel or None
        The refined network (None when not refined).
    """
    from .importance_sampling import importance_sample_to_target

    if refine not in REFINE_MODES:
        raise InferenceError(f"refine must be one of {', '.join(REFINE_MODES)}, not {refine!r}.")
    s = refinement_settings(settings)
    common = dict(client=client, device=device)
    if refine == "never":
        res = importance_sample_to_target(model, strain, psds, start_time, approximant, reference_frequency,
                                          target_ess=target_ess, max_samples=max_samples, batch_size=batch_size,
                                          seed=seed, **common)
        res["refinement"] = {"mode": refine, "refined": False, "efficiency_before": res["efficiency"],
                             "ess_before": res["ess"], "n_before": res["n"], "efficiency_after": None}
        return res, None
    import warnings

    from ..errors import ImportanceSamplingWarning

    n_first = min(batch_size, max_samples)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImportanceSamplingWarning)  # the first batch alone rarely reaches the target
        first = importance_sample_to_target(model, strain, psds, start_time, approximant, reference_frequency,
                                            target_ess=target_ess, max_samples=n_first, batch_size=n_first, seed=seed,
                                            **common)
    before = {"efficiency_before": first["efficiency"], "ess_before": first["ess"], "n_before": first["n"],
              "pareto_k_before": first["pareto_k"]}
    if refine == "auto" and (first["efficiency"] >= s["threshold"] or first["reached"]):
        logger.info("amortised efficiency %.2f%% >= threshold %.2f%%: no refinement", 100 * first["efficiency"],
                    100 * s["threshold"])
        res = importance_sample_to_target(model, strain, psds, start_time, approximant, reference_frequency,
                                          target_ess=target_ess, max_samples=max_samples, batch_size=batch_size,
                                          seed=seed, **common)
        res["refinement"] = {"mode": refine, "refined": False, **before, "efficiency_after": None}
        return res, None
    t0 = time.perf_counter()
    priors = model_priors(model)
    rel = network_frame(model, first["samples"])
    bounds = posterior_bounds(rel, priors, list(model.parameter_names), s["quantile"], s["margin"])
    logger.info("amortised efficiency %.3f%% (ESS %.1f of %d): refining on the box %s", 100 * first["efficiency"],
                first["ess"], first["n"], ", ".join(f"{k} [{lo:.6g}, {hi:.6g}]" for k, (lo, hi) in bounds.items()))
    refined, info = refine_model(model, bounds, s, seed=seed, basis=basis, device=device,
                                 asds=whitening_asds(model, psds) if model.noise_conditioned else None)
    res = importance_sample_to_target(refined, strain, psds, start_time, approximant, reference_frequency,
                                      target_ess=target_ess, max_samples=max_samples, batch_size=batch_size,
                                      seed=seed + REFINED_SEED_OFFSET, **common)
    post = network_frame(model, res["samples"])
    check = truncation_check(post, res["weights"], bounds, priors, s["edge_band"], s["edge_mass"])
    if not check["ok"]:
        masses = ", ".join(f"{c} {check['edge_mass'][c]:.3f}" for c in check["cut"])
        msg = (f"the refinement's truncated prior cuts posterior mass (weighted mass in the edge band: {masses}); "
               "raise refinement.margin or lower refinement.quantile, or use the amortised result.")
        logger.warning(msg)
    res["refinement"] = {"mode": refine, "refined": True, **before, "efficiency_after": res["efficiency"],
                         "time": time.perf_counter() - t0, "bounds": {k: list(v) for k, v in bounds.items()},
                         "truncation": check, "info": info}
    logger.info("refinement: efficiency %.3f%% -> %.2f%% (ESS %.0f), %.0f s", 100 * first["efficiency"],
                100 * res["efficiency"], res["ess"], res["refinement"]["time"])
    return res, refined


def sample_to_target(model, strain: dict, psds: dict, start_time: float, section: dict, waveform: dict, *, seed: int,
                     client=None, device: str = "cpu") -> dict:
    """NPE+IS of one event to ``section["target_ess"]`` (batches of ``n_samples``, at most ``max_samples``),
    with per-event refinement when ``section["refine"]`` asks for it (settings ``section["refinement"]``);
    likelihoods on ``client``'s dask workers when given. Used by the comparison's and the accuracy
    campaign's importance sampling and by the events stage.

    Returns a dict with ``res`` (of :func:`importance_sample_to_target`), ``samples`` (the marginalised
    parameters' draws included), ``log_q``, ``npe_time``, ``acceptance``, ``gnpe`` (or None) and
    ``refined`` (the refined network, or None).
    """
    from .importance_sampling import importance_sample_to_target

    refine = section.get("refine", "never")
    common = dict(target_ess=section["target_ess"], max_samples=section["max_samples"],
                  batch_size=section["n_samples"], seed=seed, client=client, device=device)
    refined = None
    if refine == "never":
        res = importance_sample_to_target(model, strain, psds, start_time, waveform["approximant"],
                                          waveform["reference_frequency"], **common)
    else:
        res, refined = importance_sample_refined(model, strain, psds, start_time, waveform["approximant"],
                                                 waveform["reference_frequency"], refine=refine,
                                                 settings=section.get("refinement"), **common)
    return {"res": res, "samples": res["samples"], "log_q": res["log_q"], "npe_time": res["npe_time"],
            "acceptance": len(res["log_q"]) / res["n_drawn"], "gnpe": res.get("gnpe"), "refined": refined}
