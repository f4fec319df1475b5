"""The NPE model: embedding network + conditional neural-spline flow, with parameter standardisation.

``build_model(settings)`` is the single factory; the model is saved with the
settings that rebuild it (and the provenance of its training data), so
:func:`gwnpe.products.model.load_model` needs nothing else.
"""

from __future__ import annotations

import logging
import math

import torch
import zuko
from torch import nn

from .embedding import BasisProjection, ResidualEmbedding

logger = logging.getLogger(__name__)

class NPEModel(nn.Module):
    """q(theta | d): flow over standardised parameters conditioned on the embedding of whitened strain.

    Parameters are standardised with the prior's mean and standard deviation (stored as buffers);
    :meth:`log_prob` and :meth:`sample` work in physical units.
    """

    def __init__(self, embedding: ResidualEmbedding, flow: zuko.flows.Flow, parameters: list[str], mean, std, settings: dict,
                 n_proxies: int = 0, init: "NPEModel | None" = None):
        super().__init__()
        self.embedding = embedding
        self.flow = flow
        self.parameter_names = list(parameters)
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        self.settings = settings
        # GNPE (gwnpe.nn.gnpe): the flow is also conditioned on standardised relative proxies, and a
        # small initialisation network learns the arrival times from the unshifted strain
        self.n_proxies = int(n_proxies)
        if self.n_proxies:  # (plain models keep the state dict of models made before GNPE)
            self.register_buffer("proxy_mean", torch.zeros(self.n_proxies))
            self.register_buffer("proxy_std", torch.ones(self.n_proxies))
        self.init = init

    @property
    def noise_conditioned(self) -> bool:
        """Whether the network is conditioned on the detectors' ASDs (trained over an ASD dataset)."""
        return bool(getattr(self.embedding.projection, "noise_conditioned", False))

    @property
    def gnpe(self) -> dict | None:
        """The model's GNPE settings (``kappa`` [s], ``iterations``), or None for plain NPE."""
        g = self.settings.get("model", {}).get("gnpe") or {}
        return g if g.get("enabled") else None

    def standardise(self, theta: torch.Tensor) -> torch.Tensor:
        return (theta - self.mean) / self.std

    def context(self, d: torch.Tensor, proxies: torch.Tensor | None = None, asd: torch.Tensor | None = None) -> torch.Tensor:
        """Context of whitened strain ``d``; ``asd`` (B or 1, n_det, n_bins) are the ASDs it was whitened
        with, read by a noise-conditioned network (None: its reference ASDs) and ignored by others."""
        c = self.embedding(d, asd)
        if self.n_proxies:
            if proxies is None:
                raise ValueError("a GNPE network needs the relative proxies of its strain's time shifts")
            c = torch.cat([c, ((proxies.to(c.device, torch.float64) - self.proxy_mean.double()) / self.proxy_std.double()).to(c.dtype)], dim=-1)
        return c

    def log_prob(self, theta: torch.Tensor, d: torch.Tensor, proxies: torch.Tensor | None = None,
                 asd: torch.Tensor | None = None) -> torch.Tensor:
        """log q(theta | d) for physical parameters theta (B, D) and whitened strain d (B, n_det, n_bins)."""
        return self.flow(self.context(d, proxies, asd)).log_prob(self.standardise(theta)) - torch.log(self.std).sum()

    def loss(self, theta: torch.Tensor, d: torch.Tensor, proxies: torch.Tensor | None = None,
             arrival: torch.Tensor | None = None, d_raw: torch.Tensor | None = None,
             asd: torch.Tensor | None = None) -> torch.Tensor:
        """Mean negative log density of standardised parameters (the training objective); for GNPE
        plus that of the initialisation network's arrival times given the unshifted strain."""
        out = -self.flow(self.context(d, proxies, asd)).log_prob(self.standardise(theta)).mean()
        if self.init is not None and arrival is not None:
            # while training, the initialisation network may see only the first part of the batch
            # (model.gnpe.init_batch_fraction): its two-dimensional density needs fewer samples per step
            # than the main network, and its embedding costs as much per sample as the main one's
            n = len(theta)
            if self.training:
                n = max(1, math.ceil(float(self.gnpe.get("init_batch_fraction", 1.0)) * n))
            out = out + self.init.loss(arrival[:n].to(theta.dtype), d_raw[:n], asd=None if asd is None else asd[:n])
        return out

    def set_projection_trainable(self, trainable: bool) -> None:
        self.embedding.set_projection_trainable(trainable)
        if self.init is not None:
            self.init.set_projection_trainable(trainable)

    @torch.no_grad()
    def sample_and_log_prob(self, d: torch.Tensor, n: int, proxies: torch.Tensor | None = None,
                            asd: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """n samples per event: (B, n, D) physical parameters and their log q (B, n)."""
        context = self.context(d, proxies, asd)
        z, lp = self.flow(context).rsample_and_log_prob((n,))  # (n, B, D), (n, B)
        theta = z * self.std + self.mean
        return theta.transpose(0, 1), (lp - torch.log(self.std).sum()).transpose(0, 1)


def build_model(settings: dict, basis_V: torch.Tensor | None = None, mean=None, std=None,
                asd_reference=None) -> NPEModel:
    """Build the model from its settings.

    Parameters
    ----------
    settings : dict
        ``model`` (embedding and flow sections of the config), ``parameters`` (names, in order),
        ``detectors``, ``n_bins`` and ``basis_size``.
    basis_V : (n_bins, K) complex tensor, optional
        SVD basis initialising the first embedding layer (omit when loading saved weights).
    mean, std : sequences, optional
        Parameter standardisation (prior statistics); zeros/ones when loading saved weights.
    asd_reference : (n_det, n_bins) array, optional
        Reference ASDs of a noise-conditioned network (``model.noise_conditioning.enabled``); the ASD
        channel is the log ratio to them. Omit when loading saved weights.
    """
    m = settings["model"]
    emb, fl = m["embedding"], m["flow"]
    n_par = len(settings["parameters"])
    n_det = len(settings["detectors"])
    gnpe = (m.get("gnpe") or {})
    gnpe_on = bool(gnpe.get("enabled"))
    conditioned = bool((m.get("noise_conditioning") or {}).get("enabled"))
    ref = None if asd_reference is None else torch.as_tensor(asd_reference, dtype=torch.float64)

    def embedding_net(widths, context):
        projection = BasisProjection(n_det, settings["n_bins"], settings["basis_size"],
                                     V=basis_V if emb["basis_init"] else None, asd_reference=ref,
                                     noise_conditioned=conditioned)
        return ResidualEmbedding(projection, list(widths), context, emb["dropout"], emb["layer_norm"])

    n_proxies = n_det - 1 if gnpe_on else 0
    embedding = embedding_net(emb["widths"], emb["context"])
    flow = zuko.flows.NSF(
        features=n_par,
        context=emb["context"] + n_proxies,
        transforms=fl["transforms"],
        bins=fl["bins"],
        hidden_features=list(fl["hidden"]),
        passes=2,  # coupling: sampling is one pass per transform
    )
    init = None
    if gnpe_on:
        # p(t_I | d): arrival times from the unshifted strain, a small network of its own
        init_flow = zuko.flows.NSF(features=n_det, context=gnpe["init_context"], transforms=gnpe["init_transforms"],
                                   bins=fl["bins"], hidden_features=list(gnpe["init_hidden"]), passes=2)
        init = NPEModel(embedding_net(gnpe["init_widths"], gnpe["init_context"]), init_flow,
                        [f"arrival_time_{ifo}" for ifo in settings["detectors"]], torch.zeros(n_det), torch.ones(n_det),
                        {})
    mean = torch.zeros(n_par) if mean is None else mean
    std = torch.ones(n_par) if std is None else std
    return NPEModel(embedding, flow, settings["parameters"], mean, std, settings,
                    n_proxies=n_proxies, init=init)
