"""The posteriors stage: NPE posteriors of every injection of the campaign, as bilby Result files."""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from ..products.injections import load_injections
from ..products.model import load_model
from ..products.results import save_result
from ..errors import InjectionError
from ..inference.sampling import (check_model_parameters, model_priors, sample_whitened, to_physical, whitened_strain,
                                  whitening_asds)

logger = logging.getLogger(__name__)


def run_posteriors_stage(settings: dict, *, model_path, injections_path, out_paths: list, threads: int = 1,
                         device: str = "cpu") -> dict:
    """NPE posteriors of every injection, sampled in batches; one bilby Result file per injection.

    ``settings`` holds ``seed`` and ``injections.n_samples`` / ``injections.batch_events``.
    """
    from bilby.gw.conversion import generate_mass_parameters

    n_samples, batch_events = settings["injections"]["n_samples"], settings["injections"]["batch_events"]
    seed = settings["seed"]
    torch.set_num_threads(max(1, int(threads)))
    inj = load_injections(injections_path)
    n = len(inj)
    if len(out_paths) != n:
        raise InjectionError(f"{len(out_paths)} posterior files requested for {n} injections in '{injections_path}'.")
    model = load_model(model_path, device=device)
    names = model.parameter_names
    priors = model_priors(model)
    check_model_parameters(model, inj.parameters, injections_path)
    t0 = time.perf_counter()
    d = np.stack([whitened_strain(model, {k: v[i] for k, v in inj.strain.items()}, inj.psd_of(i), inj.start_time)
                  for i in range(n)])
    t_prep = time.perf_counter() - t0
    t0 = time.perf_counter()
    theta, logq = sample_whitened(model, d, n_samples, seed=seed, batch_events=batch_events, device=device,
                                  asd=np.stack([whitening_asds(model, inj.psd_of(i)) for i in range(n)]))
    t_sample = time.perf_counter() - t0
    per_event = (t_prep + t_sample) / n
    logger.info("posteriors: %d injections x %d samples in %.1f s (%.3f s per event)", n, n_samples, t_prep + t_sample, per_event)
    for i, path in enumerate(out_paths):
        truth = {k: float(inj.parameters[k][i]) for k in names}
        truth["geocent_time"] = truth.get("geocent_time", 0.0) + inj.trigger_time
        truth = generate_mass_parameters(truth)
        save_result(path, model, priors, to_physical(model, theta[i]), logq[i], per_event, label=f"injection_{i}",
                    injection_parameters={k: float(v) for k, v in truth.items()},
                    meta_data={"injection": i, "snr": {k: float(v[i]) for k, v in inj.snr.items()},
                               "sampling_time_per_event": per_event, "batch_events": batch_events})
    return {"n": n, "seconds_per_event": per_event}
