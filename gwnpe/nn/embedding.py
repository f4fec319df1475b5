"""Embedding network: whitened detector strain -> context vector.

The first layer is one linear map per detector from whitened frequency-domain
strain (real and imaginary parts) to reduced-basis coefficients, initialised
from the SVD basis ``V``: ``c = d @ V`` written in real arithmetic. It can be
frozen for the first epochs. A residual MLP (DINGO / Green & Gair 2021) then
maps the concatenated coefficients to the context vector.

Noise conditioning (a network trained over many noise spectra): each detector's ASD enters the same
first layer as one more channel, as DINGO does, compressed by its own linear map onto the 2K outputs.
The channel is ``log(ASD / ASD_reference)`` (zero for the reference ASD, O(0.1-1) for realistic
variations and large at lines), and its weights start at zero: a noise-conditioned network starts as,
and trained on the reference ASD alone stays, the fixed-ASD network.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ModelError


def basis_weight(V: torch.Tensor) -> torch.Tensor:
    """Real weight (2K, 2N) such that ``W @ [Re d, Im d] = [Re(d @ V), Im(d @ V)]`` for V (N, K)."""
    P, Q = V.real.T, V.imag.T  # (K, N)
    return torch.cat([torch.cat([P, -Q], dim=1), torch.cat([Q, P], dim=1)], dim=0)


class BasisProjection(nn.Module):
    """Per-detector linear projection of whitened strain onto (initially) the SVD basis.

    Parameters
    ----------
    n_detectors : int
    n_bins : int
        Frequency bins of the band.
    size : int
        Basis size K; each detector gives 2K real outputs.
    V : (n_bins, K) complex tensor, optional
        Basis used to initialise the weights (random init otherwise).
    asd_reference : (n_detectors, n_bins) tensor, optional
        Reference ASDs of a noise-conditioned projection (the ASD channel is the log ratio to them); a
        placeholder of ones when ``noise_conditioned`` and the weights are loaded afterwards.
    noise_conditioned : bool
        Add the ASD channel.
    """

    def __init__(self, n_detectors: int, n_bins: int, size: int, V: torch.Tensor | None = None,
                 asd_reference: torch.Tensor | None = None, noise_conditioned: bool = False):
        super().__init__()
        self.n_detectors, self.n_bins, self.size = n_detectors, n_bins, size
        self.weight = nn.Parameter(torch.empty(n_detectors, 2 * size, 2 * n_bins))
        self.bias = nn.Parameter(torch.zeros(n_detectors, 2 * size))
        if V is None:
            nn.init.normal_(self.weight, std=(2 * n_bins) ** -0.5)
        else:
            with torch.no_grad():
                self.weight.copy_(basis_weight(V.to(torch.complex128)).to(self.weight.dtype).expand(n_detectors, -1, -1))
        self.noise_conditioned = bool(noise_conditioned or asd_reference is not None)
        if self.noise_conditioned:
            ref = torch.ones(n_detectors, n_bins) if asd_reference is None else torch.as_tensor(asd_reference)
            if tuple(ref.shape) != (n_detectors, n_bins):
                raise ModelError(f"reference ASDs of shape {tuple(ref.shape)} for a projection of {n_detectors} detectors "
                                 f"x {n_bins} bins.")
            self.register_buffer("log_asd_reference", torch.log(ref.to(torch.float64)).float())
            self.asd_weight = nn.Parameter(torch.zeros(n_detectors, 2 * size, n_bins))

    def forward(self, d: torch.Tensor, asd: torch.Tensor | None = None) -> torch.Tensor:
        """(B, n_det, n_bins) complex -> (B, n_det * 2K) real.

        ``asd`` (B or 1, n_det, n_bins): the ASDs the strain was whitened with, for a noise-conditioned
        projection (None: the reference ASDs); ignored otherwise.

        Raises
        ------
        ModelError
            If ``d`` is not (B, n_detectors, n_bins): data for other detectors or another frequency grid.
        """
        if d.ndim != 3 or d.shape[1] != self.n_detectors or d.shape[2] != self.n_bins:
            raise ModelError(
                f"whitened strain of shape {tuple(d.shape)} given to a network built for (batch, "
                f"{self.n_detectors} detectors, {self.n_bins} frequency bins); the data are for other detectors or "
                "on another frequency grid. Make them with the model's detectors and domain (model.settings)."
            )
        x = torch.cat([d.real, d.imag], dim=-1).to(self.weight.dtype)
        out = torch.einsum("bdn,dkn->bdk", x, self.weight) + self.bias
        if self.noise_conditioned and asd is not None:
            if asd.ndim == 2:
                asd = asd[None]
            if tuple(asd.shape[1:]) != (self.n_detectors, self.n_bins):
                raise ModelError(f"ASDs of shape {tuple(asd.shape)} given to a network built for (batch, "
                                 f"{self.n_detectors} detectors, {self.n_bins} frequency bins).")
            a = torch.log(asd.to(out.device, torch.float64)).to(self.weight.dtype) - self.log_asd_reference
            out = out + torch.einsum("bdn,dkn->bdk", a, self.asd_weight)
        return out.flatten(1)


class ResidualBlock(nn.Module):
    """Pre-activation residual block: x + Linear(act(Linear(act(norm(x))))), with a linear skip when widths change."""

    def __init__(self, n_in: int, n_out: int, dropout: float = 0.0, layer_norm: bool = True):
        super().__init__()
        self.norm = nn.LayerNorm(n_in) if layer_norm else nn.Identity()
        self.fc1 = nn.Linear(n_in, n_out)
        self.fc2 = nn.Linear(n_out, n_out)
        self.act = nn.ELU()
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Identity() if n_in == n_out else nn.Linear(n_in, n_out, bias=False)

    def forward(self, x):
        h = self.fc1(self.act(self.norm(x)))
        h = self.fc2(self.drop(self.act(h)))
        return self.skip(x) + h


class ResidualEmbedding(nn.Module):
    """Basis projection, then residual blocks of the given widths, then a linear map to the context."""

    def __init__(self, projection: BasisProjection, widths: list[int], context: int, dropout: float = 0.0, layer_norm: bool = True):
        super().__init__()
        self.projection = projection
        n_in = projection.n_detectors * 2 * projection.size
        self.input = nn.Linear(n_in, widths[0])
        blocks, prev = [], widths[0]
        for w in widths:
            blocks.append(ResidualBlock(prev, w, dropout, layer_norm))
            prev = w
        self.blocks = nn.Sequential(*blocks)
        self.output = nn.Sequential(nn.ELU(), nn.Linear(prev, context))

    def set_projection_trainable(self, trainable: bool) -> None:
        for p in self.projection.parameters():
            p.requires_grad_(trainable)

    def forward(self, d: torch.Tensor, asd: torch.Tensor | None = None) -> torch.Tensor:
        return self.output(self.blocks(self.input(self.projection(d, asd))))
