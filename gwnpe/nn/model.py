"""The NPE model: embedding network + conditional neural-spline flow, with parameter standardisation.

``build_model(settings)`` is the single factory; the model is saved with the
settings that rebuild it (and the provenance of its training data), so
:func:`gwnpe.products.model.load_model` needs nothing else.
"""

from __future__ import annotations

import logging

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

    def __init__(self, embedding: ResidualEmbedding, flow: zuko.flows.Flow, parameters: list[str], mean, std, settings: dict):
        super().__init__()
        self.embedding = embedding
        self.flow = flow
        self.parameter_names = list(parameters)
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        self.settings = settings

    def standardise(self, theta: torch.Tensor) -> torch.Tensor:
        return (theta - self.mean) / self.std

    def log_prob(self, theta: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """log q(theta | d) for physical parameters theta (B, D) and whitened strain d (B, n_det, n_bins)."""
        context = self.embedding(d)
        return self.flow(context).log_prob(self.standardise(theta)) - torch.log(self.std).sum()

    def loss(self, theta: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """Mean negative log density of standardised parameters (the training objective)."""
        return -self.flow(self.embedding(d)).log_prob(self.standardise(theta)).mean()

    @torch.no_grad()
    def sample_and_log_prob(self, d: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n samples per event: (B, n, D) physical parameters and their log q (B, n)."""
        context = self.embedding(d)
        z, lp = self.flow(context).rsample_and_log_prob((n,))  # (n, B, D), (n, B)
        theta = z * self.std + self.mean
        return theta.transpose(0, 1), (lp - torch.log(self.std).sum()).transpose(0, 1)


def build_model(settings: dict, basis_V: torch.Tensor | None = None, mean=None, std=None) -> NPEModel:
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
    """
    m = settings["model"]
    emb, fl = m["embedding"], m["flow"]
    n_par = len(settings["parameters"])
    projection = BasisProjection(len(settings["detectors"]), settings["n_bins"], settings["basis_size"],
                                 V=basis_V if emb["basis_init"] else None)
    embedding = ResidualEmbedding(projection, list(emb["widths"]), emb["context"], emb["dropout"], emb["layer_norm"])
    flow = zuko.flows.NSF(
        features=n_par,
        context=emb["context"],
        transforms=fl["transforms"],
        bins=fl["bins"],
        hidden_features=list(fl["hidden"]),
        passes=2,  # coupling: sampling is one pass per transform
    )
    mean = torch.zeros(n_par) if mean is None else mean
    std = torch.ones(n_par) if std is None else std
    return NPEModel(embedding, flow, settings["parameters"], mean, std, settings)
