r"""Row-block operators: stencils that act on row-chunked Dask factors by halo exchange.

A :class:`StencilOperator` is a banded ``k x k`` matrix given by its diagonals,

.. math::  (A x)_i = \sum_j c_j(i)\, x_{i + o_j},

with offsets ``o_j`` and coefficients ``c_j`` (scalars, or arrays of length ``k`` for
variable coefficients), and a periodic or zero (Dirichlet) boundary.  On a Dask block
``x (k, c)`` chunked by rows it runs as :func:`dask.array.map_overlap`: every chunk
receives ``depth = max |o_j|`` rows of each neighbour (the halo) and computes its rows
alone, so a product never gathers the factor.  On a NumPy block it computes the same
with shifted slices.  It is accepted by :class:`~lowrank_core.LinearMatrixODE` as ``A``,
``B`` or a term of ``terms`` (:func:`lowrank_core._operators.is_block_operator`).

The four products of :mod:`lowrank_core._operators` follow from the shifts
``(S_s z)_i = z_{i+s}`` (zero or periodic outside ``[0, k)``):

* ``A x = sum_j c_j ⊙ S_{o_j} x``,
* ``A^H x = sum_j S_{-o_j}(conj(c_j) ⊙ x)``,  ``A^T x = sum_j S_{-o_j}(c_j ⊙ x)``,
* ``conj(A) x = sum_j conj(c_j) ⊙ S_{o_j} x``.
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

__all__ = ["StencilOperator", "advection_diffusion"]

BOUNDARIES = ("periodic", "zero")


class StencilOperator:
    r"""A banded operator ``(A x)_i = sum_j c_j(i) x_{i + o_j}`` applied by halo exchange.

    Parameters
    ----------
    offsets : sequence of int
        The diagonals ``o_j`` (``0`` the main diagonal, ``1`` the first superdiagonal).
    coefficients : sequence of float or arrays, shape (size,)
        ``c_j``: a scalar (constant coefficient) or a NumPy or Dask array of ``size``
        values (variable coefficient; a Dask array must be chunked as the factors it
        meets).
    size : int
        ``k``: the operator is ``k x k``.
    boundary : {"periodic", "zero"}, default "periodic"
        Rows outside ``[0, k)`` wrap around, or are zero.
    dtype : numpy dtype, optional
        Defaults to the result type of the coefficients (at least float64 for scalars).

    Notes
    -----
    Every row chunk of a Dask block must hold at least ``depth = max |o_j|`` rows.
    Pickles (its coefficients do); it is sent to the workers inside the tasks.

    Examples
    --------
    >>> import numpy as np
    >>> from lowrank_core.dask import StencilOperator
    >>> lap = StencilOperator([-1, 0, 1], [1.0, -2.0, 1.0], size=5)
    >>> lap.apply(np.eye(5), None)[0]
    array([-2.,  1.,  0.,  0.,  1.])
    """

    _lowrank_row_block = True  # recognised by lowrank_core._operators

    def __init__(
        self, offsets: Any, coefficients: Any, size: int, *, boundary: str = "periodic", dtype: Any = None
    ) -> None:
        if isinstance(offsets, (str, bytes)) or not hasattr(offsets, "__iter__"):
            msg = f"`offsets` must be a sequence of ints; got {type(offsets).__name__}."
            raise TypeError(msg)
        offsets = tuple(offsets)
        if not offsets or not all(isinstance(o, (int, np.integer)) and not isinstance(o, bool) for o in offsets):
            msg = f"`offsets` must be a non-empty sequence of ints; got {offsets!r}."
            raise TypeError(msg)
        if isinstance(coefficients, (str, bytes)) or not hasattr(coefficients, "__len__"):
            msg = f"`coefficients` must be a sequence (one per offset); got {type(coefficients).__name__}."
            raise TypeError(msg)
        coefficients = list(coefficients)
        if len(coefficients) != len(offsets):
            msg = f"`coefficients` must have one entry per offset ({len(offsets)}); got {len(coefficients)}."
            raise ValueError(msg)
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
            msg = f"`size` must be an int; got {size!r} of type {type(size).__name__}."
            raise TypeError(msg)
        if size < 1:
            msg = f"`size` must be >= 1; got {size}."
            raise ValueError(msg)
        if boundary not in BOUNDARIES:
            msg = f"`boundary` must be one of {BOUNDARIES}; got {boundary!r}."
            raise ValueError(msg)
        depth = max(abs(int(o)) for o in offsets)
        if depth >= size:
            msg = f"`offsets` reach {depth} rows, beyond the operator size {size}; use offsets with |o| < size."
            raise ValueError(msg)
        for j, c in enumerate(coefficients):
            if array_api_compat.is_array_api_obj(c) and not isinstance(c, (int, float, complex)):
                if not (array_api_compat.is_numpy_array(c) or array_api_compat.is_dask_array(c)):
                    msg = f"`coefficients[{j}]` must be a scalar, a NumPy or a Dask array; got {type(c).__name__}."
                    raise TypeError(msg)
                if tuple(c.shape) != (int(size),):
                    msg = f"`coefficients[{j}]` must have shape ({size},); got {tuple(c.shape)}."
                    raise ValueError(msg)
            elif not isinstance(c, (int, float, complex, np.number)) or isinstance(c, bool):
                msg = f"`coefficients[{j}]` must be a number or an array of shape ({size},); got {type(c).__name__}."
                raise TypeError(msg)
        if dtype is None:
            dtype = np.result_type(np.float64, *(c.dtype if hasattr(c, "dtype") else type(c) for c in coefficients))
        self.offsets = tuple(int(o) for o in offsets)
        self.coefficients = coefficients
        self.size = int(size)
        self.boundary = boundary
        self.dtype = np.dtype(dtype)
        self.depth = depth
        self.a = self  # what LinearMatrixODE checks against the state

    @property
    def shape(self) -> tuple[int, int]:
        """``(size, size)``."""
        return (self.size, self.size)

    def __repr__(self) -> str:
        return f"StencilOperator(offsets={self.offsets}, size={self.size}, boundary={self.boundary!r})"

    # ------------------------------------------------------------------ application
    def _coefficient_arrays(self, x: Any) -> list[Any]:
        """The variable coefficients as arrays of ``x``'s library (Dask: chunked as ``x``'s rows)."""
        arrays = []
        for c in self.coefficients:
            if not _is_array(c):
                continue
            if array_api_compat.is_dask_array(x):
                import dask.array as da

                if not array_api_compat.is_dask_array(c):
                    c = da.from_array(c, chunks=(x.chunks[0],))
                elif c.chunks[0] != x.chunks[0]:
                    msg = (
                        f"a variable coefficient of {self!r} is chunked {c.chunks[0]} but the factor it meets has "
                        f"row chunks {x.chunks[0]}; chunk the coefficients as the state's factors "
                        "(c.rechunk(U.chunks[0]))."
                    )
                    raise ValueError(msg)
            elif array_api_compat.is_dask_array(c):
                c = c.compute()
            arrays.append(c[:, None])  # a column: aligned with the rows of x
        return arrays

    def _run(self, x: Any, forward: bool, conj: bool) -> Any:
        """``A x`` / ``conj(A) x`` (``forward``) or ``A^T x`` / ``A^H x``: one pass over
        ``x`` with a halo of ``depth`` rows (``map_overlap`` on Dask row chunks)."""
        d = self.depth
        arrays = self._coefficient_arrays(x)
        dtype = np.result_type(self.dtype, x.dtype)
        kwargs = {
            "offsets": self.offsets,
            "scalars": tuple(None if _is_array(c) else c for c in self.coefficients),
            "forward": forward,
            "conj": conj,
            "halo": d,
            "dtype_out": dtype,
        }
        if array_api_compat.is_dask_array(x):
            import dask.array as da

            if min(x.chunks[0]) < d:
                msg = (
                    f"{self!r} needs every row chunk of the factor it acts on to hold at least {d} rows (its halo); "
                    f"got row chunks {x.chunks[0]}. Rechunk the state's factors with larger row chunks, e.g. "
                    f"U.rechunk({{0: {max(d, max(x.chunks[0]))}}})."
                )
                raise ValueError(msg)
            boundary = "periodic" if self.boundary == "periodic" else 0
            depth = [{0: d, 1: 0}] * (1 + len(arrays))
            bnd = [{0: boundary, 1: "none"}] * (1 + len(arrays))
            return da.map_overlap(
                _stencil_block,
                x,
                *arrays,
                depth=depth,
                boundary=bnd,
                trim=False,
                dtype=dtype,
                chunks=x.chunks,
                align_arrays=False,
                **kwargs,
            )
        mode = "wrap" if self.boundary == "periodic" else "constant"
        ext = np.pad(x, ((d, d), (0, 0)), mode=mode)
        ext_arrays = [np.pad(c, ((d, d), (0, 0)), mode=mode) for c in arrays]
        return _stencil_block(ext, *ext_arrays, **kwargs)

    # ------------------------------------------------------------------ the four products
    def _check_block(self, x: Any) -> None:
        if x.ndim != 2 or x.shape[0] != self.size:
            msg = f"{self!r} acts on blocks of shape ({self.size}, c); got shape {tuple(x.shape)}."
            raise ValueError(msg)

    def apply(self, x: Any, xp: Any) -> Any:
        """``A x`` for ``x (size, c)``."""
        self._check_block(x)
        return self._run(x, forward=True, conj=False)

    def apply_h(self, x: Any, xp: Any) -> Any:
        """``A^H x``."""
        self._check_block(x)
        return self._run(x, forward=False, conj=True)

    def apply_t(self, x: Any, xp: Any) -> Any:
        """``A^T x``."""
        self._check_block(x)
        return self._run(x, forward=False, conj=False)

    def apply_conj(self, x: Any, xp: Any) -> Any:
        """``conj(A) x``."""
        self._check_block(x)
        return self._run(x, forward=True, conj=True)

    def to_dense(self) -> Any:
        """The ``size x size`` NumPy matrix (for checks on small sizes)."""
        return self.apply(np.eye(self.size, dtype=self.dtype), None)


def _is_array(c: Any) -> bool:
    return array_api_compat.is_array_api_obj(c) and not isinstance(c, (int, float, complex, np.number))


def _stencil_block(
    ext: Any, *coeffs: Any, offsets: Any, scalars: Any, forward: bool, conj: bool, halo: int, dtype_out: Any
) -> Any:
    """One row chunk with its halo, ``ext (rows + 2 halo, c)``, and the variable
    coefficients on the same rows: the chunk's rows of ``sum_j c_j ⊙ S_{o_j} x``
    (``forward``) or ``sum_j S_{-o_j}(c_j ⊙ x)``, conjugated coefficients with ``conj``."""
    d = halo
    rows = ext.shape[0] - 2 * d
    out = np.zeros((rows, *ext.shape[1:]), dtype=dtype_out)
    it = iter(coeffs)
    for o, scalar in zip(offsets, scalars, strict=True):
        c = next(it) if scalar is None else scalar
        if conj:
            c = np.conj(c)
        if forward:  # out_i = c_i x_{i+o}
            xs = ext[d + o : d + o + rows]
            cc = c if scalar is not None else c[d : d + rows]
        else:  # out_i = c_{i-o} x_{i-o}
            xs = ext[d - o : d - o + rows]
            cc = c if scalar is not None else c[d - o : d - o + rows]
        out += cc * xs
    return out


def advection_diffusion(m: int, *, speed: float = 1.0, nu: float = 0.01, length: float = 1.0) -> StencilOperator:
    r"""The periodic 1D advection-diffusion operator ``-a d/dx + nu d^2/dx^2`` on ``m`` points.

    Central differences on ``x_i = i h``, ``h = length / m``:
    ``(A y)_i = -a (y_{i+1} - y_{i-1}) / (2h) + nu (y_{i+1} - 2 y_i + y_{i-1}) / h^2``.
    """
    h = length / m
    lo = speed / (2 * h) + nu / h**2
    hi = -speed / (2 * h) + nu / h**2
    return StencilOperator([-1, 0, 1], [lo, -2 * nu / h**2, hi], size=m)
