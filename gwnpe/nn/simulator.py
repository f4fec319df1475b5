"""Training data made on the fly, in batched tensor code on the training device.

Per batch: take compressed intrinsic waveforms (reduced-basis coefficients of
waveforms whitened by the reference ASD), expand them with the basis, draw the
extrinsic parameters from the prior, project onto each detector (antenna
patterns and time delays from :class:`gwnpe.gw.detectors.DetectorNetwork`, the
time shift as a frequency-domain phase), scale by distance, re-whiten from the
reference ASD to each detector's ASD, and add white Gaussian noise (unit
variance per real component).

Time origin: the strain's phase refers to the trigger time (the geocentre
coalescence at ``trigger_time + geocent_time``). Data whose FFT starts at the
segment start are rotated with :func:`gwnpe.gw.domain.to_trigger_origin` before inference.

Noise conditioning: with an ASD bank (a dataset of ASDs per detector), each sample draws one ASD per
detector (independently) and is whitened by it; the network is given those ASDs
(:meth:`Simulator.loss_inputs`). The whitened noise is white either way; only the signal's whitening
changes (re-whitened from the reference ASD to the drawn one).
"""

from __future__ import annotations

import logging
import math
import numpy as np
import torch

from ..gw.detectors import DetectorNetwork
from ..gw.priors import EXTRINSIC, fixed_parameters, sampled_keys

logger = logging.getLogger(__name__)


class TrainingData:
    """A training set in memory as tensors: intrinsic parameters and basis coefficients.

    Parameters
    ----------
    parameters : dict of (N,) arrays
        Intrinsic parameters.
    h_plus, h_cross : (N, K) complex arrays
        Reduced-basis coefficients of the whitened polarizations (as the training_set stage stores them;
        :func:`gwnpe.products.training_set.load_training_set` reads them).
    """

    def __init__(self, parameters: dict, h_plus, h_cross):
        self.parameters = {k: torch.as_tensor(np.asarray(v), dtype=torch.float64) for k, v in parameters.items()}
        self.h_plus = torch.as_tensor(np.asarray(h_plus))
        self.h_cross = torch.as_tensor(np.asarray(h_cross))

    def __len__(self) -> int:
        return self.h_plus.shape[0]


class Simulator(torch.nn.Module):
    """Whitened noisy detector strain from compressed waveforms and extrinsic prior draws.

    Parameters
    ----------
    V : (n_bins, K) complex ndarray
        Reduced basis.
    asd_reference : (n_bins,) ndarray
        ASD the training-set waveforms were whitened with.
    asds : (n_det, n_bins) ndarray
        ASDs of the detectors [1/sqrt(Hz)].
    frequencies : (n_bins,) ndarray
        [Hz]
    detectors : list of str
    trigger_time : float
        GPS [s]; ``geocent_time`` in the prior is relative to it.
    priors : bilby PriorDict
        Extrinsic parameters are drawn from it.
    reference_distance : float
        Distance [Mpc] of the stored waveforms.
    dtype : torch.dtype
        Working real dtype (float32 for training).
    gnpe_kappa : float, optional
        GNPE kernel half-width [s] (:mod:`gwnpe.nn.gnpe`).
    asd_bank : (n_det, M, n_bins) array, optional
        ASDs to draw per sample and detector (noise-conditioned training); used while
        ``draw_asds`` is true (the default when given; the train stage switches it off for the first,
        fixed-ASD stage of its schedule).
    """

    def __init__(self, V, asd_reference, asds, frequencies, detectors, trigger_time, priors, reference_distance, dtype=torch.float32,
                 gnpe_kappa: float | None = None, asd_bank=None):
        super().__init__()
        cdtype = torch.complex64 if dtype == torch.float32 else torch.complex128
        VH = np.asarray(V).conj().T  # (K, n_bins)
        ratio = np.asarray(asd_reference)[None, :] / np.asarray(asds)  # re-whitening, reference -> detector
        self.register_buffer("VH", torch.as_tensor(np.ascontiguousarray(VH)).to(cdtype))
        self.register_buffer("ratio", torch.as_tensor(ratio).to(dtype))
        # per-detector expansion with the re-whitening folded in: (n_det, K, n_bins)
        self.register_buffer("VH_det", torch.as_tensor(np.ascontiguousarray(VH[None] * ratio[:, None, :])).to(cdtype))
        self.register_buffer("frequencies", torch.as_tensor(np.asarray(frequencies), dtype=torch.float64))
        self.register_buffer("asds", torch.as_tensor(np.asarray(asds, float)).to(dtype))
        self.register_buffer("asd_reference", torch.as_tensor(np.asarray(asd_reference, float)).to(dtype))
        if asd_bank is None:
            self.asd_bank = None
        else:
            bank = np.asarray(asd_bank, float)
            if bank.ndim != 3 or bank.shape[0] != len(detectors) or bank.shape[2] != len(frequencies) or bank.shape[1] < 1:
                raise ValueError(f"ASD bank of shape {bank.shape}: expected ({len(detectors)} detectors, M >= 1, "
                                 f"{len(frequencies)} bins)")
            self.register_buffer("asd_bank", torch.as_tensor(bank).to(dtype))
        self.draw_asds = asd_bank is not None
        self.network = DetectorNetwork(list(detectors), reference_time=float(trigger_time), dtype=dtype)
        self.priors = priors
        self.reference_distance = float(reference_distance)
        self.extrinsic_keys = [k for k in sampled_keys(priors) if k in EXTRINSIC]
        fixed = fixed_parameters(priors)
        self.fixed_extrinsic = {k: fixed[k] for k in EXTRINSIC if k in fixed}
        self.n_detectors = len(detectors)
        self.dtype_ = dtype
        self.gnpe_kappa = None if gnpe_kappa is None else float(gnpe_kappa)
        if self.gnpe_kappa is not None:
            # GNPE needs the arrival times exactly: float64 delays
            self.network64 = DetectorNetwork(list(detectors), reference_time=float(trigger_time), dtype=torch.float64)

    def draw_extrinsic(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Extrinsic parameters (physical units) by inverse-CDF of the prior; deterministic from ``generator``."""
        u = torch.rand(len(self.extrinsic_keys), n, generator=generator, dtype=torch.float64).numpy()
        out = {k: torch.as_tensor(np.asarray(self.priors[k].rescale(u[i]), dtype=float)) for i, k in enumerate(self.extrinsic_keys)}
        for k, v in self.fixed_extrinsic.items():
            out[k] = torch.full((n,), v, dtype=torch.float64)
        return out

    def signal(self, c_plus: torch.Tensor, c_cross: torch.Tensor, extrinsic: dict[str, torch.Tensor],
               asd: torch.Tensor | None = None) -> torch.Tensor:
        """Whitened detector signals (B, n_det, n_bins), noise-free; whitened by ``asd`` (B, n_det, n_bins)
        when given, else by the simulator's ASDs.

        Mathematically ``project(c+ V^H, cx V^H) * ratio * d_ref / d_L``, computed in the
        cheapest exact order: antenna patterns and distance are combined with the K
        coefficients, one matmul per detector expands them with the re-whitening folded into
        the basis, and the time shift is one phasor product per bin.
        """
        dev = self.VH.device
        e = {k: v.to(dev) for k, v in extrinsic.items()}
        fp, fc = self.network.antenna_patterns(e["ra"], e["dec"], e["psi"], e["geocent_time"])  # (B, n_det)
        scale = (self.reference_distance / e["luminosity_distance"]).to(self.ratio.dtype)[:, None, None]
        cp = c_plus.to(dev, self.VH.dtype)[:, None, :]
        cc = c_cross.to(dev, self.VH.dtype)[:, None, :]
        coeff = (fp.to(self.ratio.dtype)[..., None] * scale) * cp + (fc.to(self.ratio.dtype)[..., None] * scale) * cc
        if asd is None:
            strain = torch.einsum("bdk,dkn->bdn", coeff, self.VH_det)
        else:
            strain = torch.einsum("bdk,kn->bdn", coeff, self.VH) * (self.asd_reference / asd.to(dev, self.ratio.dtype))
        return strain * self.network.time_shift_phasor(self.frequencies, e["ra"], e["dec"], e["geocent_time"])

    def noise(self, shape, generator: torch.Generator) -> torch.Tensor:
        """White complex Gaussian noise, unit variance per real component (drawn on the CPU generator)."""
        cdtype = torch.complex64 if self.ratio.dtype == torch.float32 else torch.complex128
        n = torch.randn(*shape, generator=generator, dtype=cdtype)  # variance 1/2 per real component
        return n.mul_(math.sqrt(2.0)).to(self.VH.device)

    def draw_asd(self, n: int, generator: torch.Generator) -> torch.Tensor | None:
        """(n, n_det, n_bins) ASDs drawn from the bank, one per sample and detector; None without one
        (or while ``draw_asds`` is off)."""
        if self.asd_bank is None or not self.draw_asds:
            return None
        idx = torch.randint(self.asd_bank.shape[1], (self.n_detectors, n), generator=generator).to(self.asd_bank.device)
        return torch.stack([self.asd_bank[j, idx[j]] for j in range(self.n_detectors)], dim=1)

    def loss_inputs(self, data: TrainingData, index: torch.Tensor, parameter_names: list[str],
                    generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Keyword arguments of :meth:`gwnpe.nn.model.NPEModel.loss` for one batch.

        ``theta`` (B, D) in ``parameter_names`` order, ``d`` the noisy whitened strain (B, n_det, n_bins)
        and ``asd`` the ASDs it was whitened with (drawn from the bank, or the simulator's expanded);
        with GNPE (``gnpe_kappa``) ``d`` is shifted by minus the proxies, and ``proxies`` (relative),
        ``arrival`` (arrival times) and ``d_raw`` (the unshifted strain) are added, ``theta``'s
        ``geocent_time`` slot holding the first detector's arrival time relative to its proxy (see
        :mod:`gwnpe.nn.gnpe`). The bank's draws come after the noise's, so a simulator without a bank
        consumes ``generator`` exactly as before noise conditioning existed.
        """
        ext = self.draw_extrinsic(len(index), generator)
        d0 = self.noise((len(index), self.n_detectors, len(self.frequencies)), generator)
        asd = self.draw_asd(len(index), generator)
        d = self.signal(data.h_plus[index], data.h_cross[index], ext, asd) + d0
        if asd is None:
            asd = self.asds.expand(len(index), -1, -1)
        theta = torch.stack([ext[k] if k in ext else data.parameters[k][index] for k in parameter_names], dim=1)
        if self.gnpe_kappa is None:
            return {"theta": theta.to(self.VH.device, self.ratio.dtype), "d": d, "asd": asd}
        from .gnpe import arrival_times, draw_proxies, relative_proxies, shift_phasor

        t = arrival_times(self.network64, ext["ra"], ext["dec"], ext["geocent_time"]).cpu()
        proxies = draw_proxies(t, self.gnpe_kappa, generator)
        theta[:, parameter_names.index("geocent_time")] = t[:, 0] - proxies[:, 0]  # the slot: t_0 - t_hat_0
        dev = self.VH.device
        d_shifted = d * shift_phasor(self.frequencies, proxies.to(dev), dtype=d.dtype)
        return {"theta": theta.to(dev, self.ratio.dtype), "d": d_shifted, "proxies": relative_proxies(proxies).to(dev),
                "arrival": t.to(dev, self.ratio.dtype), "d_raw": d, "asd": asd}

    def batch(self, data: TrainingData, index: torch.Tensor, parameter_names: list[str], generator: torch.Generator):
        """:meth:`loss_inputs` as a tuple: ``(theta, d)``, with GNPE ``(theta, d_shifted, relative_proxies,
        arrival_times, d)`` (the ASDs left out)."""
        x = self.loss_inputs(data, index, parameter_names, generator)
        if self.gnpe_kappa is None:
            return x["theta"], x["d"]
        return x["theta"], x["d"], x["proxies"], x["arrival"], x["d_raw"]
