"""Networks: SVD-initialised residual embedding, the conditional spline flow, the on-the-fly simulator and the training loop."""
