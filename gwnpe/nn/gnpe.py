"""GNPE for the detector arrival times (Dax et al. 2021, arXiv 2106.12594 and 2111.13139).

Each detector's strain is shifted in time by minus a *proxy* of its arrival time,
``t_hat_I = t_I + eps_I`` with ``eps_I ~ U(-kappa, kappa)``, so that the network sees every signal
within ``kappa`` of zero in every detector instead of anywhere in the +-0.1 s (plus light-travel time)
of the prior. The network is conditioned on the proxies in relative form (``t_hat_I - t_hat_0`` for
the detectors after the first, as DINGO's exact equivariance under an overall time shift). Its
``geocent_time`` slot holds the arrival time in the first detector relative to that detector's proxy,
``t_0 - t_hat_0`` (within +-kappa, and resolved by the shifted data to a fraction of a millisecond),
instead of DINGO's ``geocent_time - t_hat_0``, which also carries the sky-dependent light travel time
of up to 21 ms; :func:`geocent_from_slot` maps it back (``geocent_time = t_hat_0 + slot - delay_0(ra,
dec)``, a shift by a function of the other parameters, so densities are unchanged). A small initialisation network learns
``p(t_I | d)`` from the unshifted strain; :mod:`gwnpe.inference.gnpe` uses both in Gibbs sampling.

Times are relative to the trigger time (the strain's phase origin), in seconds.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..gw.detectors import DetectorNetwork


def shift_phasor(frequencies, shifts: torch.Tensor, dtype=torch.complex64) -> torch.Tensor:
    """``exp(+2 pi i f s)`` for shifts ``s`` (..., n_det) on a uniform grid: (..., n_det, n_bins).

    Multiplying a detector's strain by it moves the signal *earlier* by ``s`` (a signal arriving at
    ``t`` then arrives at ``t - s``). Phases are reduced modulo one cycle in float64 before the cast,
    from two small tables (``f_k = f_0 + (m a + b) df``), so the result is accurate to the working
    precision at any shift.
    """
    f = torch.as_tensor(frequencies, dtype=torch.float64, device=shifts.device)
    n = f.shape[0]
    df = float(f[1] - f[0]) if n > 1 else 0.0
    s = shifts.to(torch.float64)[..., None]
    m = max(1, int(math.ceil(math.sqrt(n))))
    na = -(-n // m)

    def phasor(cycles):
        cycles = cycles - torch.round(cycles)
        angle = (2.0 * math.pi * cycles).to(torch.float32 if dtype == torch.complex64 else torch.float64)
        return torch.polar(torch.ones_like(angle), angle)

    e0 = phasor(s * float(f[0]))
    a = phasor(s * (torch.arange(na, dtype=torch.float64, device=f.device) * (m * df)))
    b = phasor(s * (torch.arange(m, dtype=torch.float64, device=f.device) * df))
    out = (e0 * a)[..., :, None] * b[..., None, :]  # (..., n_det, na, m)
    return out.reshape(*out.shape[:-2], na * m)[..., :n].to(dtype)


def arrival_times(network: DetectorNetwork, ra, dec, geocent_time) -> torch.Tensor:
    """(B, n_det) arrival times relative to the trigger [s], float64: geocentre time plus each detector's delay."""
    t = torch.as_tensor(geocent_time, dtype=torch.float64)
    delays = network.time_delays(torch.as_tensor(ra), torch.as_tensor(dec), t).to(torch.float64)
    return t.to(delays.device)[:, None] + delays


def geocent_from_slot(network: DetectorNetwork, slot, ra, dec, proxy0) -> torch.Tensor:
    """``geocent_time`` (relative to the trigger) of the network's time slot ``t_0 - t_hat_0``:
    ``t_hat_0 + slot - delay_0(ra, dec)``, the first detector's delay evaluated at its arrival time
    (the sidereal-time difference to the geocentre's, at most 21 ms, changes it by about 1e-8 s)."""
    t0 = torch.as_tensor(proxy0, dtype=torch.float64) + torch.as_tensor(slot, dtype=torch.float64)
    delay = network.time_delays(torch.as_tensor(ra), torch.as_tensor(dec), t0).to(torch.float64)[:, 0]
    return t0 - delay.to(t0.device)


def draw_proxies(t: torch.Tensor, kappa: float, generator: torch.Generator) -> torch.Tensor:
    """``t + eps``, ``eps ~ U(-kappa, kappa)`` independently per detector (drawn on the CPU generator)."""
    eps = (2.0 * torch.rand(*t.shape, generator=generator, dtype=torch.float64) - 1.0) * kappa
    return t + eps.to(t.device)


def relative_proxies(proxies: torch.Tensor) -> torch.Tensor:
    """The network's proxy context: ``t_hat_I - t_hat_0`` for the detectors after the first, (B, n_det - 1)."""
    return proxies[:, 1:] - proxies[:, :1]


def gnpe_standardisation(s: dict, names: list[str], detectors: list[str], trigger_time: float, kappa: float,
                         rng: np.random.Generator) -> dict:
    """Mean and standard deviation, under the prior and the kernel, of what the GNPE networks see.

    Parameters
    ----------
    s : dict of (n,) arrays
        Prior draws of ``names`` (with ``geocent_time``, ``ra`` and ``dec``).

    Returns ``parameters`` (the network's parameters, ``geocent_time`` as ``t_0 - t_hat_0``),
    ``proxies`` (relative proxies) and ``arrival`` (arrival times, the initialisation network's
    parameters), each as a (mean, std) pair of arrays.
    """
    net = DetectorNetwork(list(detectors), reference_time=float(trigger_time), dtype=torch.float64)
    t = arrival_times(net, torch.as_tensor(s["ra"]), torch.as_tensor(s["dec"]), torch.as_tensor(s["geocent_time"]))
    g = torch.Generator().manual_seed(int(rng.integers(2**62)))
    proxies = draw_proxies(t, kappa, g)
    theta = np.stack([s[k] for k in names], axis=1)
    theta[:, names.index("geocent_time")] = (t[:, 0] - proxies[:, 0]).numpy()
    rel = relative_proxies(proxies).numpy()
    arrival = t.numpy()

    def stats(x):
        return x.mean(axis=0), np.maximum(x.std(axis=0), 1e-12)

    return {"parameters": stats(theta), "proxies": stats(rel), "arrival": stats(arrival)}

