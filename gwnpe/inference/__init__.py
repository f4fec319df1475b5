"""Inference with a trained model: posterior sampling and importance sampling with the exact likelihood."""
