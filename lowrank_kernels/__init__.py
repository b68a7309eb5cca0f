"""lowrank_kernels: batched thin QR and small SVD kernels (Numba CPU, numba-cuda GPU).

This package never imports ``lowrank_core``.  The kernels themselves land with the
kernels issue; ``lowrank_core._linalg`` is the only module that will call them.  Until
then this module offers only capability probes, so importing it is cheap.
"""

from __future__ import annotations

import importlib.util

__all__ = ["has_cpu", "has_cuda"]


def has_cpu() -> bool:
    """True when Numba is importable (CPU kernels can be compiled)."""
    return importlib.util.find_spec("numba") is not None


def has_cuda() -> bool:
    """True when numba-cuda and CuPy are importable and a GPU is visible (or simulated)."""
    if importlib.util.find_spec("numba") is None or importlib.util.find_spec("cupy") is None:
        return False
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:  # pragma: no cover - depends on the driver
        return False
