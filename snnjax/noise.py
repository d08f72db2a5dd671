"""Gaussian noise with a power-law spectrum ("coloured" noise), in ``jax.numpy``.

The algorithm is the one of SpikingJelly's ``neuron.noisy.powerlaw_psd_gaussian`` (itself the
``colorednoise`` package, after Timmer & Koenig, *On generating power law noise*, A&A 300, 1995):
draw Gaussian Fourier coefficients whose amplitude follows ``f^(-beta/2)`` and transform them
back with an inverse real FFT. Randomness comes from an explicit JAX PRNG key; no global
generator is touched. Pure JAX, no Flax.
"""
from __future__ import annotations

import numbers
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def _check_size(size: Any) -> tuple[int, ...]:
    if isinstance(size, (numbers.Integral, np.integer)) and not isinstance(size, bool):
        size = (int(size),)
    try:
        size = tuple(size)
    except TypeError:
        raise ValueError(f"powerlaw_psd_gaussian: size must be an int or a sequence of ints, "
                         f"got {size!r}") from None
    if not size or any(isinstance(s, bool) or not isinstance(s, (numbers.Integral, np.integer))
                       or s < 1 for s in size):
        raise ValueError(f"powerlaw_psd_gaussian: size must be an int or a non-empty sequence of "
                         f"positive ints (last axis = time), got {size!r}")
    n = int(size[-1])
    if n < 2:
        # the reference fails with IndexError here (no non-DC frequency to normalise by)
        raise ValueError(f"powerlaw_psd_gaussian: the last axis of size (the series length) must "
                         f"be >= 2, got size={size!r}")
    return tuple(int(s) for s in size)


def _check_fmin(fmin: Any) -> float:
    if isinstance(fmin, bool) or not isinstance(fmin, (numbers.Real, np.floating, np.integer)):
        raise ValueError(f"powerlaw_psd_gaussian: fmin must be a real number in [0, 0.5], "
                         f"got {fmin!r}")
    fmin = float(fmin)
    if not 0.0 <= fmin <= 0.5:
        raise ValueError(f"powerlaw_psd_gaussian: fmin must be in [0, 0.5] (a frequency relative "
                         f"to a unit sampling rate), got {fmin}")
    return fmin


def _spectral_scale(n: int, fmin: float) -> tuple[np.ndarray, bool]:
    """Frequencies ``f`` of ``rfft`` (length ``n // 2 + 1``) with everything below the cutoff
    flattened to the first frequency at or above it; host NumPy (depends on static sizes only).

    Returns the flattened frequencies and whether the zero frequency is still 0 (no bin reaches
    ``fmin``: odd ``n`` with ``fmin = 0.5``).
    """
    f = np.fft.rfftfreq(n)
    fmin = max(fmin, 1.0 / n)
    ix = int(np.sum(f < fmin))
    s = f.copy()
    if 0 < ix < len(f):
        s[:ix] = s[ix]
    return s, bool(s[0] == 0.0)


def _concrete_float(x: Any) -> float | None:
    """``float(x)``, or ``None`` when ``x`` is traced (its value is unknown at trace time)."""
    try:
        return float(x)
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
        return None


def powerlaw_psd_gaussian_from_normals(exponent: Any, z_real: Array, z_imag: Array, n: int,
                                       fmin: float = 0.0) -> Array:
    r"""The deterministic part of :func:`powerlaw_psd_gaussian`: standard-normal draws -> series.

    With ``f_k = k / n`` (``k = 0 .. n // 2``), ``s_k = max(f_k, f_c)^(-beta / 2)`` where every
    frequency below ``f_c = max(fmin, 1 / n)`` is replaced by the first one at or above it, the
    Fourier coefficients are ``a_k = s_k z^r_k + i s_k z^i_k``; the imaginary parts of the DC and
    (even ``n``) Nyquist bins are zeroed and their real parts multiplied by ``sqrt(2)``, and

    .. math:: y = \mathrm{irfft}(a, n) / \sigma, \qquad
              \sigma = \frac{2}{n}\sqrt{\textstyle\sum_{k\ge1} w_k^2 s_k^2},

    with ``w_k = 1`` except ``w = 1/2`` for the Nyquist bin of even ``n``.

    ``z_real`` and ``z_imag`` have shape ``[*batch, n // 2 + 1]`` (the reference draws the real
    part first). Feeding ``rng.standard_normal(shape)`` twice from a NumPy generator ``rng``
    reproduces the reference's ``powerlaw_psd_gaussian(..., random_state=rng)`` (up to FFT
    rounding). Returns ``[*batch, n]`` in the promoted dtype of the draws.
    """
    n = int(n)
    if n < 2:
        raise ValueError(f"powerlaw_psd_gaussian: the series length n must be >= 2, got {n}")
    fmin = _check_fmin(fmin)
    nf = n // 2 + 1
    z_real, z_imag = jnp.asarray(z_real), jnp.asarray(z_imag)
    if z_real.shape != z_imag.shape or z_real.ndim < 1 or z_real.shape[-1] != nf:
        raise ValueError(f"powerlaw_psd_gaussian: z_real and z_imag must both have shape "
                         f"[*batch, n // 2 + 1 = {nf}], got {z_real.shape} and {z_imag.shape}")
    f, dc_is_zero = _spectral_scale(n, fmin)
    beta = _concrete_float(exponent)
    if beta is not None and not np.isfinite(beta):
        raise ValueError(f"powerlaw_psd_gaussian: exponent must be a finite number, got {beta}")
    if dc_is_zero and beta is not None and beta > 0:
        # the reference silently returns inf here (0 ** (-exponent / 2))
        raise ValueError(f"powerlaw_psd_gaussian: with an odd series length (n={n}) and "
                         f"fmin=0.5 no frequency bin reaches the cutoff, so the zero frequency "
                         f"would get infinite power for exponent={beta} > 0; use "
                         f"fmin < 0.5 or an even length")
    dtype = jnp.result_type(z_real, z_imag, jnp.float32)
    s = jnp.asarray(f, dtype) ** (-jnp.asarray(exponent, dtype) / 2.0)

    # theoretical std of the result (non-DC bins only; the Nyquist bin of even n counts half)
    w = s[1:]
    w = w.at[-1].multiply((1 + (n % 2)) / 2.0)
    sigma = 2.0 * jnp.sqrt(jnp.sum(w ** 2)) / n

    sr = z_real.astype(dtype) * s
    si = z_imag.astype(dtype) * s
    sqrt2 = np.sqrt(2.0)
    if n % 2 == 0:  # the Nyquist coefficient of a real series is real
        si = si.at[..., -1].set(0.0)
        sr = sr.at[..., -1].multiply(sqrt2)
    si = si.at[..., 0].set(0.0)  # so is the DC coefficient
    sr = sr.at[..., 0].multiply(sqrt2)
    y = jnp.fft.irfft(jax.lax.complex(sr, si), n, axis=-1)
    return (y / sigma).astype(dtype)


def powerlaw_psd_gaussian(exponent: Any, size: int | Sequence[int], fmin: float = 0.0,
                          key: Any = None, *, dtype: Any = None) -> Array:
    """Gaussian noise with power spectral density ``S(f) ~ f^(-exponent)``.

    ``exponent`` 0: white, 1: pink, 2: brown (red) noise. ``size``: int or sequence of ints; the
    **last axis is time**, all other axes are independent series. ``fmin`` in ``[0, 0.5]`` is a
    low-frequency cutoff (relative to a unit sampling rate) below which the spectrum is flat.
    ``key``: a JAX PRNG key (``jax.random.key(0)``) or an int seed; required. The two
    standard-normal arrays of shape ``[*size[:-1], size[-1] // 2 + 1]`` (real then imaginary
    parts) are drawn with ``jax.random.normal`` from ``split(key)``, then transformed by
    :func:`powerlaw_psd_gaussian_from_normals`. Same key -> same series on every backend.

    The series is normalised by the theoretical std of its non-DC part: the variance is about 1
    for white noise and somewhat above 1 for coloured noise (the DC term adds power).
    Returns an array of shape ``size`` in ``dtype`` (default: JAX's default float type).

    Errors (``ValueError``): ``size[-1] < 2``; ``fmin`` outside ``[0, 0.5]``; an odd length with
    ``fmin = 0.5`` and ``exponent > 0`` (infinite power at the zero frequency).

    Args:
      exponent: spectral exponent ``beta``, a finite number (may be traced).
      size: output shape, a positive int or a sequence of positive ints; the last axis is time
        and must be ``>= 2``.
      fmin: low-frequency cutoff, in ``[0, 0.5]`` (default ``0.0``).
      key: a JAX PRNG key or an int seed (required; default ``None`` raises ``TypeError``).
      dtype: a floating dtype, or ``None`` for JAX's default float (default ``None``;
        keyword-only).

    Returns:
      ``[*size]`` noise in ``dtype``.
    """
    size = _check_size(size)
    fmin = _check_fmin(fmin)
    if key is None:
        raise TypeError("powerlaw_psd_gaussian: key is required: pass a JAX PRNG key "
                        "(e.g. jax.random.key(0)) or an int seed; there is no global generator")
    if isinstance(key, (numbers.Integral, np.integer)) and not isinstance(key, bool):
        key = jax.random.key(int(key))
    dtype = jnp.dtype(dtype) if dtype is not None else jnp.asarray(0.0).dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"powerlaw_psd_gaussian: dtype must be a floating type, got {dtype}")
    n = size[-1]
    shape = size[:-1] + (n // 2 + 1,)
    k_real, k_imag = jax.random.split(key)
    # draw in at least float32, as the spectral arithmetic needs it
    draw_dtype = jnp.promote_types(dtype, jnp.float32)
    z_real = jax.random.normal(k_real, shape, draw_dtype)
    z_imag = jax.random.normal(k_imag, shape, draw_dtype)
    return powerlaw_psd_gaussian_from_normals(exponent, z_real, z_imag, n, fmin).astype(dtype)


__all__ = ["powerlaw_psd_gaussian", "powerlaw_psd_gaussian_from_normals"]
