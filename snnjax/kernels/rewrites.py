"""Elementwise functions rebuilt from the few primitives every kernel lowering has.

The Mosaic GPU lowering (JAX 0.10-0.11) has no rule for ``floor``, ``ceil``, ``atan``, ``expm1``,
``log1p``, ``erfc`` and no layout rule for ``erf``, and no lowering has JAX 0.12's
``polynomial`` and ``one_minus_square`` (from its own derivative rules); the kernel generator
replaces those primitives by these functions (``jaxpr_tools.inline_eval(rewrites=...)``) when
the backend lacks them. Each uses only add/sub/mul/div, abs, comparisons, ``select_n``, integer
casts, ``exp``, ``log`` and ``rsqrt``. Accuracy (float32, against ``jnp``; ``tests/test_mosaic.py``): within
2 ulp or 1e-6 relative over negative, tiny, large and non-finite arguments. The polynomial
coefficients are Cephes' single-precision ones (the same XLA uses for ``erf`` / ``erfc``).

Only float32 is computed here: float16/bfloat16 arguments go through float32, and float64 (which
no GPU kernel backend builds; interpret mode only) keeps the primitive itself.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Array = Any

_F32 = np.dtype(np.float32)


def _c(x: Array, value: Any) -> Array:
    """``value`` as a scalar of ``x``'s dtype (a literal the lowering broadcasts)."""
    return np.asarray(value, dtype=x.dtype)


def _coef(z: Array, c: Any) -> Array:
    """A coefficient in ``z``'s dtype: a literal for a number, a cast for a traced value."""
    return _c(z, c) if isinstance(c, (int, float, np.generic, np.ndarray)) else c.astype(z.dtype)


def _poly(z: Array, coeffs: tuple[Any, ...]) -> Array:
    """Horner: ``coeffs[0] z^(n-1) + ... + coeffs[-1]`` (highest degree first)."""
    p = jnp.broadcast_to(_coef(z, coeffs[0]), jnp.shape(z))
    for c in coeffs[1:]:
        p = p * z + _coef(z, c)
    return p


def polynomial(x: Array, *coeffs: Any) -> Array:
    """``lax.polynomial`` (JAX >= 0.12, in its own derivative rules; coefficients lowest degree
    first): Horner's rule, as XLA lowers it."""
    return _poly(x, coeffs[::-1])


def one_minus_square(x: Array) -> Array:
    """``lax.one_minus_square`` (JAX >= 0.12): ``(1 + x)(1 - x)``, as XLA lowers it."""
    return (_c(x, 1.0) + x) * (_c(x, 1.0) - x)


def _float32_only(prim: Callable[[Array], Array]) -> Callable:
    """Run the float32 implementation; float64 keeps ``prim``; other floats via float32."""
    def deco(fn: Callable[[Array], Array]) -> Callable[[Array], Array]:
        def wrapped(x: Array) -> Array:
            x = jnp.asarray(x)
            if x.dtype == np.float64:
                return prim(x)
            if x.dtype != _F32:
                return fn(x.astype(_F32)).astype(x.dtype)
            return fn(x)
        wrapped.__name__ = fn.__name__
        wrapped.__doc__ = fn.__doc__
        return wrapped
    return deco


@_float32_only(lax.floor)
def floor(x: Array) -> Array:
    """``floor(x)``: truncate through int32, step down where that rounded up. ``|x| >= 2^23``
    (already an integer), infinities and NaN pass through; ``floor(-0.0) = -0.0``. Exact."""
    t = lax.convert_element_type(lax.convert_element_type(x, np.int32), _F32)
    t = lax.select(t > x, t - _c(x, 1.0), t)
    small = lax.abs(x) < _c(x, 2.0 ** 23)       # False for inf and NaN
    r = lax.select(small, t, x)
    return lax.select(r == _c(x, 0.0), x * _c(x, 0.0), r)   # floor(-0.0) = -0.0


@_float32_only(lax.ceil)
def ceil(x: Array) -> Array:
    """``ceil(x) = -floor(-x)``. Exact."""
    return -floor(-x)


_PI_2 = 1.5707963267948966
_PI_4 = 0.7853981633974483


@_float32_only(lax.atan)
def atan(x: Array) -> Array:
    """``arctan(x)``: Cephes' ``atanf`` range reduction (``|x| > tan(3pi/8)``: ``pi/2 +
    atan(-1/|x|)``; ``|x| > tan(pi/8)``: ``pi/4 + atan((|x|-1)/(|x|+1))``) and its degree-9 odd
    polynomial; one division, branch-free."""
    ax = lax.abs(x)
    big = ax > _c(x, 2.414213562373095)
    mid = ax > _c(x, 0.4142135623730950)
    one = lax.full_like(x, 1.0)
    num = lax.select(big, -one, lax.select(mid, ax - one, ax))
    den = lax.select(big, ax, lax.select(mid, ax + one, one))
    xr = num / den
    y0 = lax.select(big, lax.full_like(x, _PI_2), lax.select(mid, lax.full_like(x, _PI_4),
                                                             lax.full_like(x, 0.0)))
    z = xr * xr
    p = _poly(z, (8.05374449538e-2, -1.38776856032e-1, 1.99777106478e-1, -3.33329491539e-1))
    r = y0 + (p * z * xr + xr)
    r = lax.select(x < _c(x, 0.0), -r, r)
    return lax.select(x == _c(x, 0.0), x, r)    # keeps the sign of zero


_EXPM1_TAYLOR = tuple(1.0 / np.prod(np.arange(1, n + 1)) for n in range(11, 1, -1)) + (1.0,)


def _expm1_small(x: Array) -> Array:
    """``expm1`` for ``|x| <= 1/2``: Taylor series to ``x^11`` (truncation < 1e-11)."""
    return x * _poly(x, _EXPM1_TAYLOR)


# Written without ``log(exp(x))`` or ``(1 + x) - 1``: XLA folds those to ``x`` (CPU interpret
# mode), which would undo the classic cancellation-free formulas.
@_float32_only(lax.expm1)
def expm1(x: Array) -> Array:
    """``exp(x) - 1``: a Taylor polynomial for ``|x| <= 1/2`` (no cancellation), ``exp(x) - 1``
    beyond (``|exp(x) - 1| >= 0.39`` there)."""
    small = lax.abs(x) <= _c(x, 0.5)
    r = lax.select(small, _expm1_small(x), lax.exp(x) - _c(x, 1.0))
    return lax.select(lax.abs(x) < _c(x, 2.0 ** -24), x, r)   # expm1(x) rounds to x there


@_float32_only(lax.log1p)
def log1p(x: Array) -> Array:
    """``log(1 + x)``: for ``1 + x`` in ``[sqrt(1/2), sqrt(2)]`` the series
    ``2 atanh(s) = 2 (s + s^3/3 + ...)``, ``s = x / (2 + x)`` (``|s| <= 0.172``, to ``s^15``);
    ``log(1 + x)`` beyond."""
    near = (x > _c(x, -0.2928932188134524)) & (x < _c(x, 0.41421356237309515))
    xs = lax.select(near, x, lax.full_like(x, 0.0))
    s = xs / (xs + _c(x, 2.0))
    z = s * s
    series = _c(x, 2.0) * s * _poly(z, tuple(1.0 / k for k in range(15, 0, -2)))
    r = lax.select(near, series, lax.log(x + _c(x, 1.0)))
    return lax.select(lax.abs(x) < _c(x, 2.0 ** -24), x, r)   # log1p(x) rounds to x there


_ERF_T = (7.853861353153693e-5, -8.010193625184903e-4, 5.188327685732524e-3,
          -2.685381193529856e-2, 1.128358514861418e-1, -3.761262582423300e-1,
          1.128379165726710e+0)
_ERFC_P = (2.326819970068386e-2, -1.387039388740657e-1, 3.687424674597105e-1,
           -5.824733027278666e-1, 6.210004621745983e-1, -4.944515323274145e-1,
           3.404879937665872e-1, -2.741127028184656e-1, 5.638259427386472e-1)
_ERFC_R = (-1.047766399936249e+1, 1.297719955372516e+1, -7.495518717768503e+0,
           2.921019019210786e+0, -1.015265279202700e+0, 4.218463358204948e-1,
           -2.820767439740514e-1, 5.641895067754075e-1)


def _exp_minus_square(ax: Array) -> Array:
    """``exp(-ax^2)`` with ``ax^2`` split exactly (``ax = hi + lo``, ``hi`` with 12 bits), so
    the rounding of the square does not grow into the exponent's error for large ``ax``."""
    hi = floor(ax * _c(ax, 4096.0)) * _c(ax, 1.0 / 4096.0)
    lo = ax - hi
    d = lo * (hi + hi + lo)       # |d| < 0.005 for ax < 10.1
    # exp(-hi^2) (1 + expm1(-d)); not exp(-hi^2) * exp(-d), which XLA merges into one exp
    return lax.exp(-(hi * hi)) * (_c(ax, 1.0) + _expm1_small(-d))


def _erfc_ge1(x: Array) -> Array:
    """``erfc(|x|)`` for ``|x| >= 1``: ``exp(-x^2) / |x| * P(1/x^2)`` (P for ``|x| < 2``, R
    beyond)."""
    ax = lax.abs(x)
    q = _c(x, 1.0) / ax
    y = q * q
    p = lax.select(ax < _c(x, 2.0), _poly(y, _ERFC_P), _poly(y, _ERFC_R))
    r = _exp_minus_square(ax) * q * p
    # erfc(10.1) < 2^-149; NaN stays NaN
    return lax.select(ax >= _c(x, 10.1), lax.full_like(x, 0.0), r)


def _erf_lt1(x: Array) -> Array:
    return x * _poly(x * x, _ERF_T)


@_float32_only(lax.erfc)
def erfc(x: Array) -> Array:
    """``1 - erf(x)``: ``1 - erf`` for ``|x| < 1``; the Cephes tail (relative accuracy for
    ``x >= 1``, ``2 - erfc(-x)`` for ``x <= -1``)."""
    tail = _erfc_ge1(x)
    r = lax.select(x < _c(x, 0.0), _c(x, 2.0) - tail, tail)
    small = lax.abs(x) < _c(x, 1.0)
    return lax.select(small, _c(x, 1.0) - _erf_lt1(x), r)


@_float32_only(lax.erf)
def erf(x: Array) -> Array:
    """``erf(x)``: Cephes' odd polynomial for ``|x| < 1``, ``+-(1 - erfc(|x|))`` beyond."""
    tail = _c(x, 1.0) - _erfc_ge1(x)
    r = lax.select(x < _c(x, 0.0), -tail, tail)
    return lax.select(lax.abs(x) < _c(x, 1.0), _erf_lt1(x), r)


@_float32_only(lax.sqrt)
def sqrt(x: Array) -> Array:
    """``sqrt(x) = x rsqrt(x)`` plus one Newton correction; ``0``, ``inf`` pass through."""
    tiny = x < _c(x, 2.0 ** -100)       # subnormals: scale by 2^64 first
    xs = lax.select(tiny, x * _c(x, 2.0 ** 64), x)
    r = lax.rsqrt(xs)
    y = xs * r
    y = y + _c(x, 0.5) * r * (xs - y * y)
    y = lax.select(tiny, y * _c(x, 2.0 ** -32), y)
    keep = (x == _c(x, 0.0)) | (x == _c(x, np.inf))
    y = lax.select(xs == _c(x, 0.0), xs, y)     # a subnormal flushed to zero
    return lax.select(keep, x, y)


def integer_pow(x: Array, y: int) -> Array:
    """``x ** y`` for an integer ``y`` from the exponents Mosaic lowers (``>= 2`` and ``-1``):
    ``x ** -n = 1 / x ** n``, ``x ** 0 = 1``, ``x ** 1 = x``."""
    y = int(y)
    if y >= 2 or y == -1:
        return lax.integer_pow(x, y)
    if y == 0:
        return lax.full_like(x, 1.0)
    if y == 1:
        return x
    return _c(x, 1.0) / lax.integer_pow(x, -y)


__all__ = ["integer_pow", "atan", "ceil", "erf", "erfc", "expm1", "floor", "log1p",
           "one_minus_square", "polynomial", "sqrt"]
del jax
