"""Networks: SVD-initialised residual embedding and a zuko neural-spline coupling flow."""

from .embedding import BasisProjection, ResidualEmbedding
from .model import NPEModel, build_model

__all__ = ["BasisProjection", "ResidualEmbedding", "NPEModel", "build_model"]
