"""GNPE inference: Gibbs sampling over the arrival-time proxies, then density recovery.

A GNPE network (:mod:`gwnpe.nn.gnpe`) gives ``q(theta | d, t_hat)`` for strain shifted by the proxies
``t_hat``. With the kernel ``p(t_hat | theta) = prod_I U(t_hat_I - t_I(theta); -kappa, kappa)`` the
target is the joint ``p(theta, t_hat | d) = p(theta | d) p(t_hat | theta)``, whose theta-marginal is
the posterior. Gibbs sampling alternates ``t_hat ~ p(t_hat | theta)`` (exact: add the kernel's noise
to the arrival times of theta) and ``theta ~ q(theta | d, t_hat)`` (the network), over many parallel
chains started from the initialisation network's arrival times.

Density recovery (as DINGO): the Gibbs chains give no density. An unconditional flow ``q(t_hat)``
is fitted to the proxies of the final iteration, and a fresh set of samples is drawn from the joint
proposal ``q(t_hat) q(theta | d, t_hat)``, whose density is known. Importance weights with respect to
the joint target, ``L(theta) pi(theta) p(t_hat | theta) / (q(t_hat) q(theta | d, t_hat))``, make the
theta-marginal exact whatever the fit's quality, and the evidence is unchanged because the kernel
integrates to one. Draws whose proxies lie further than ``kappa`` from their own arrival times (zero
kernel density) or outside the prior count as rejected draws (``acceptance``), as out-of-prior flow
draws do for plain NPE. The returned ``log_q`` is the proposal density divided by the kernel density,
so that :func:`gwnpe.inference.importance_sampling.importance_sample` needs nothing else.
"""

from __future__ import annotations

import logging
import math
from typing import Callable

import numpy as np
import torch

from ..errors import InferenceError
from ..gw.detectors import DetectorNetwork
from ..nn.gnpe import arrival_times, draw_proxies, geocent_from_slot, relative_proxies, shift_phasor
from .frame import reference_time

logger = logging.getLogger(__name__)


def gibbs(init: Callable[[int], torch.Tensor], conditional: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
          n_chains: int, kappa: float, iterations: int, generator: torch.Generator) -> dict:
    """Generic GNPE Gibbs sampler over ``n_chains`` parallel chains.

    Parameters
    ----------
    init : n -> (n, n_det) arrival times
        Starting point of each chain.
    conditional : (n, n_det) proxies -> (theta (n, D), arrival times of theta (n, n_det))
        One draw per chain from ``q(theta | d, t_hat)``.
    kappa : float
        Half-width of the uniform kernel.

    Returns
    -------
    dict with the final ``theta``, ``arrival`` times and ``proxies``, and the convergence trace:
    ``trace_mean`` / ``trace_std`` (iterations, n_det) of the arrival times across chains, and
    ``max_mean_shift``: over the last third of the iterations, the largest change of a mean arrival
    time between consecutive iterations in units of the chains' standard deviation (well below one
    at stationarity: about ``1/sqrt(n_chains)`` from sampling noise alone).
    """
    t = init(n_chains).to(torch.float64)
    means, stds = [], []
    theta = proxies = None
    for _ in range(int(iterations)):
        proxies = draw_proxies(t, kappa, generator)
        theta, t = conditional(proxies)
        t = t.to(torch.float64)
        means.append(t.mean(0).cpu().numpy())
        stds.append(t.std(0).cpu().numpy())
    means, stds = np.array(means), np.array(stds)
    tail = max(2, int(math.ceil(len(means) / 3)))
    if len(means) >= 2:
        m, s = means[-tail:], np.maximum(stds[-tail:], 1e-15)
        shift = float(np.max(np.abs(np.diff(m, axis=0)) / s[1:]))
    else:
        shift = float("nan")
    return {"theta": theta, "arrival": t, "proxies": proxies, "trace_mean": means, "trace_std": stds,
            "max_mean_shift": shift}


def fit_density(x: np.ndarray, seed: int, steps: int = 400, batch_size: int = 1024):
    """An unconditional neural-spline flow fitted to samples ``x`` (n, k) by maximum likelihood.

    Returns ``sample(n) -> (x (n, k), log q(x) (n,))``, float64 tensors in the units of ``x``.
    """
    import zuko

    x = torch.as_tensor(np.asarray(x, float))
    mean, std = x.mean(0), x.std(0).clamp_min(1e-15)
    z = ((x - mean) / std).float()
    torch.manual_seed(seed)
    flow = zuko.flows.NSF(features=x.shape[1], context=0, transforms=3, bins=8, hidden_features=[64, 64])
    opt = torch.optim.Adam(flow.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    g = torch.Generator().manual_seed(seed)
    with torch.enable_grad():  # also when called from no-grad sampling code (sample_whitened, the posteriors stage)
        for _ in range(steps):
            idx = torch.randint(len(z), (min(batch_size, len(z)),), generator=g)
            loss = -flow().log_prob(z[idx]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    flow.eval()
    log_det = float(torch.log(std).sum())

    @torch.no_grad()
    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        zs, lp = flow().rsample_and_log_prob((n,))
        return zs.double() * std + mean, lp.double() - log_det

    return sample


def density_recovery(proxies: np.ndarray, conditional, in_support, kappa: float, n: int, seed: int,
                     max_rounds: int = 20, max_batch: int = 200_000) -> dict:
    """``n`` draws of the joint proposal ``q(t_hat) q(theta | d, t_hat)`` inside the support and the kernel.

    Parameters
    ----------
    proxies : (m, n_det) final proxies of the Gibbs chains; ``q(t_hat)`` is a flow fitted to them.
    conditional : (k, n_det) tensor -> (theta (k, D), log q(theta | d, t_hat) (k,), arrival times (k, n_det))
    in_support : (k, D) ndarray -> (k,) bool, e.g. inside the prior.

    Returns
    -------
    dict with ``theta`` (n, D) ndarray, ``log_q`` (n,): the joint proposal density minus the kernel's log
    density (so that ``log L + log pi - log_q`` is the log importance weight of theta with respect
    to the posterior), and ``acceptance``: kept draws over all draws (the others have zero target density).
    """
    proposal = fit_density(proxies, seed=seed)
    n_det = proxies.shape[1]
    log_kernel = -n_det * math.log(2.0 * kappa)
    kept_theta, kept_lq = [], []
    kept = drawn = 0
    max_draws = 200 * n + 100_000
    for _ in range(max_rounds):
        need = n - kept
        if need <= 0 or drawn >= max_draws:
            break
        # draw as many as the acceptance so far says are needed (a poorly trained network's draws often
        # miss the kernel), at most max_batch at a time
        acc = max(kept, 1) / drawn if drawn else 1.0
        m = min(max_batch, max_draws - drawn, int(need / max(acc, 1e-6) * 1.2) + 16)
        t_hat, lq_t = proposal(m)
        theta, lq, t = conditional(t_hat)
        ok = (torch.abs(t_hat - t) <= kappa).all(dim=1).numpy()
        th = theta.numpy()
        ok &= np.asarray(in_support(th), bool)
        kept_theta.append(th[ok])
        kept_lq.append((lq_t + lq).numpy()[ok] - log_kernel)
        kept += int(ok.sum())
        drawn += m
    if kept < n:
        raise InferenceError(
            f"GNPE density recovery kept {kept} of {drawn} draws (inside the prior and within kappa = {kappa} s "
            f"of their arrival times), fewer than the {n} asked for: the data are probably far from what the "
            "model was trained for, or the Gibbs chains did not converge (raise model.gnpe.iterations).")
    return {"theta": np.concatenate(kept_theta)[:n], "log_q": np.concatenate(kept_lq)[:n], "acceptance": kept / drawn}


class GNPESampler:
    """Gibbs sampling and density recovery for one event with a GNPE model.

    Parameters
    ----------
    model : NPEModel with ``model.gnpe``
    d : (n_det, n_bins) whitened strain, phase origin at the trigger time
    frequencies : (n_bins,) the model's frequency grid [Hz] (``model_domain(model).frequencies``)
    device : torch device
    asd : (n_det, n_bins), optional
        The ASDs ``d`` was whitened with (read by a noise-conditioned network; None: its reference ASDs).
    """

    def __init__(self, model, d, frequencies, device="cpu", asd=None):
        if model.gnpe is None:
            raise InferenceError("GNPESampler needs a model trained with model.gnpe.enabled.")
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.d = torch.as_tensor(np.asarray(d)).to(self.device, torch.complex64)
        self.asd = None if asd is None else torch.as_tensor(np.asarray(asd, float))[None].to(self.device, torch.float32)
        self.kappa = float(model.gnpe["kappa"])
        self.names = list(model.parameter_names)
        self.i_time = self.names.index("geocent_time")
        self.i_ra, self.i_dec = self.names.index("ra"), self.names.index("dec")
        self.frequencies = np.asarray(frequencies, float)
        self.network = DetectorNetwork(list(model.settings["detectors"]), reference_time=reference_time(model),
                                       dtype=torch.float64)

    def arrival(self, theta: torch.Tensor) -> torch.Tensor:
        return arrival_times(self.network, theta[:, self.i_ra].double().cpu(), theta[:, self.i_dec].double().cpu(),
                             theta[:, self.i_time].double().cpu())

    @torch.no_grad()
    def conditional(self, proxies: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One draw of theta (physical, geocent_time relative to the trigger) per proxy vector, its
        log q(theta | d, t_hat), and its arrival times."""
        thetas, lqs = [], []
        for i in range(0, len(proxies), chunk):
            p = proxies[i:i + chunk]
            ds = self.d[None] * shift_phasor(self.frequencies, p.to(self.device), dtype=self.d.dtype)
            th, lq = self.model.sample_and_log_prob(ds, 1, relative_proxies(p).to(self.device), asd=self.asd)
            th = th[:, 0].double().cpu()
            th[:, self.i_time] = geocent_from_slot(self.network, th[:, self.i_time], th[:, self.i_ra], th[:, self.i_dec],
                                                   p[:, 0].cpu())
            thetas.append(th)
            lqs.append(lq[:, 0].double().cpu())
        theta = torch.cat(thetas)
        return theta, torch.cat(lqs), self.arrival(theta)

    @torch.no_grad()
    def init(self, n: int) -> torch.Tensor:
        t, _ = self.model.init.sample_and_log_prob(self.d[None], n, asd=self.asd)
        return t[0].double().cpu()

    def gibbs(self, n_chains: int, iterations: int, seed: int) -> dict:
        g = torch.Generator().manual_seed(int(seed))
        torch.manual_seed(int(seed))
        return gibbs(self.init, lambda p: self.conditional(p)[::2], n_chains, self.kappa, iterations, g)

    def sample(self, n: int, priors, iterations: int | None = None, seed: int = 0, n_chains: int | None = None,
               max_rounds: int = 20) -> dict:
        """``n`` samples of the joint proposal inside the prior and the kernel, with their ``log_q``
        (proposal over kernel density, see the module doc), ``acceptance`` and the Gibbs diagnostics."""
        iterations = int(self.model.gnpe["iterations"] if iterations is None else iterations)
        n_chains = int(n_chains or 2000)  # enough to fit q(t_hat); the n samples come from density recovery
        chains = self.gibbs(n_chains, iterations, seed)

        def in_prior(th: np.ndarray) -> np.ndarray:
            return np.isfinite(priors.ln_prob({k: th[:, i] for i, k in enumerate(self.names)}, axis=0))

        rec = density_recovery(chains["proxies"].numpy(), self.conditional, in_prior, self.kappa, n, seed=int(seed) + 1,
                               max_rounds=max_rounds)
        diagnostics = {"iterations": iterations, "chains": n_chains, "kappa": self.kappa,
                       "max_mean_shift": chains["max_mean_shift"],
                       "converged": bool(chains["max_mean_shift"] < 0.2),
                       "kept_fraction": rec["acceptance"]}
        if not diagnostics["converged"]:
            logger.warning("GNPE Gibbs chains may not have converged: the mean arrival time still moves by %.2f sigma "
                           "per iteration over the last third of %d iterations; raise the iterations",
                           chains["max_mean_shift"], iterations)
        return {"theta": rec["theta"], "log_q": rec["log_q"], "acceptance": rec["acceptance"], "gnpe": diagnostics}
