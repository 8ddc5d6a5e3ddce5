"""Small shared helpers for the client tests."""

import numpy as np

DIM = 8  # test tenants are small: the client does not care about the dimension


def vec(seed: int, dim: int = DIM) -> np.ndarray:
    """A deterministic non-zero float32 vector."""
    return np.random.default_rng(seed).standard_normal(dim).astype(np.float32) + 0.01


def near(base: np.ndarray, angle: float, seed: int) -> np.ndarray:
    """A unit vector at exactly `angle` radians from `base`: its cosine score is cos(angle)."""
    b = base / np.linalg.norm(base)
    u = vec(1000 + seed, base.size)
    u = u - (u @ b) * b
    u /= np.linalg.norm(u)
    return (np.cos(angle) * b + np.sin(angle) * u).astype(np.float32)
