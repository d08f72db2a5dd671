r"""The surrogate spike functions of SpikingJelly 2.0.0 (``activation_based.surrogate``).

Notation: :math:`\Theta` Heaviside with :math:`\Theta(0)=1`, :math:`s(z)=1/(1+e^{-z})`,
:math:`\mathrm{sgn}_0(x)=+1` for :math:`x\ge0`, :math:`-1` otherwise.  Unless stated otherwise the
spiking forward is :math:`\Theta(x)`.  Piecewise primitives avoid evaluating a branch outside its
domain ("double where") so their autodiff gradient never picks up ``0 * inf``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional, Tuple

import jax
import jax.numpy as jnp

from .base import Array, SurrogateFunction, _as_int, _as_real, _inv, heaviside

__all__ = [
    "Sigmoid",
    "ATan",
    "PiecewiseQuadratic",
    "PiecewiseExp",
    "SoftSign",
    "SuperSpike",
    "NonzeroSignLogAbs",
    "Erf",
    "PiecewiseLeakyReLU",
    "SquarewaveFourierSeries",
    "S2NN",
    "QPseudoSpike",
    "LeakyKReLU",
    "FakeNumericalGradient",
    "LogTailedReLU",
    "DeterministicPass",
    "MultiLevelSpikeCount",
    "PoissonPass",
    "Rect",
]


def _sgn0(x: Array) -> Array:
    """+1 for x >= 0 (including -0.0), -1 otherwise; carries no gradient."""
    return 2 * heaviside(x) - 1


@dataclasses.dataclass(frozen=True)
class Sigmoid(SurrogateFunction):
    r"""Logistic surrogate (default surrogate of the neurons; fused id 0).

    .. math:: \sigma'(x) = \alpha\, s(\alpha x)\,(1 - s(\alpha x)), \qquad g(x) = s(\alpha x)

    Args:
      alpha: sharpness, ``> 0`` and finite (default ``4.0``).
      spiking: ``True`` / ``False``: spike forward with the surrogate gradient, or the smooth
        primitive ``g(x)`` differentiated by autodiff (default ``True``).

    Shapes: ``sg(x)``, ``sg.derivative(x)`` and ``sg.primitive(x)`` take ``x`` of any shape and
    return its shape and dtype.
    """

    alpha: float = 4.0
    spiking: bool = True
    _param_names = ("alpha",)
    _real_params = ("alpha",)
    _positive_params = ("alpha",)

    def derivative(self, x: Any) -> Array:
        s = jax.nn.sigmoid(self.alpha * jnp.asarray(x))
        return (1 - s) * s * self.alpha

    def primitive(self, x: Any) -> Array:
        return jax.nn.sigmoid(self.alpha * jnp.asarray(x))


@dataclasses.dataclass(frozen=True)
class ATan(SurrogateFunction):
    r"""Arctangent surrogate (fused id 1).

    .. math:: \sigma'(x) = \frac{\alpha/2}{1 + (\frac{\pi}{2}\alpha x)^2}, \qquad
              g(x) = \frac{1}{\pi}\arctan(\tfrac{\pi}{2}\alpha x) + \tfrac12

    Args:
      alpha: sharpness, ``> 0`` and finite (default ``2.0``).
      spiking: ``True`` / ``False``: spike forward with the surrogate gradient, or the smooth
        primitive ``g(x)`` differentiated by autodiff (default ``True``).

    Shapes: ``sg(x)``, ``sg.derivative(x)`` and ``sg.primitive(x)`` take ``x`` of any shape and
    return its shape and dtype.
    """

    alpha: float = 2.0
    spiking: bool = True
    _param_names = ("alpha",)
    _real_params = ("alpha",)
    _positive_params = ("alpha",)

    def derivative(self, x: Any) -> Array:
        a = self.alpha / 2
        z = (math.pi * a) * jnp.asarray(x)
        return a / (1 + z * z)

    def primitive(self, x: Any) -> Array:
        return jnp.arctan((math.pi / 2 * self.alpha) * jnp.asarray(x)) / math.pi + 0.5


@dataclasses.dataclass(frozen=True)
class PiecewiseQuadratic(SurrogateFunction):
    r"""Triangular derivative (fused id 2).

    .. math:: \sigma'(x) = \begin{cases}\alpha - \alpha^2|x| & |x| \le 1/\alpha\\ 0 & |x| > 1/\alpha\end{cases}
    .. math:: g(x) = \begin{cases}0 & x < -1/\alpha\\ -\frac{\alpha^2}{2}x|x| + \alpha x + \frac12 & |x|\le 1/\alpha\\ 1 & x > 1/\alpha\end{cases}

    Args:
      alpha: sharpness (the window is ``|x| <= 1/alpha``), ``> 0`` and finite (default ``1.0``).
      spiking: ``True`` / ``False``: spike forward with the surrogate gradient, or the smooth
        primitive ``g(x)`` differentiated by autodiff (default ``True``).

    Shapes: ``sg(x)``, ``sg.derivative(x)`` and ``sg.primitive(x)`` take ``x`` of any shape and
    return its shape and dtype.
    """

    alpha: float = 1.0
    spiking: bool = True
    _param_names = ("alpha",)
    _real_params = ("alpha",)
    _positive_params = ("alpha",)

    def derivative(self, x: Any) -> Array:
        x = jnp.asarray(x)
        d = self.alpha - self.alpha**2 * jnp.abs(x)
        return jnp.where(jnp.abs(x) > _inv(self.alpha), jnp.zeros_like(d), d)

    def primitive(self, x: Any) -> Array:
        x = jnp.asarray(x)
        w = _inv(self.alpha)
        mid = -0.5 * self.alpha**2 * x * jnp.abs(x) + self.alpha * x + 0.5
        return jnp.where(x < -w, jnp.zeros_like(x), jnp.where(x > w, jnp.ones_like(x), mid))


@dataclasses.dataclass(frozen=True)
class PiecewiseExp(SurrogateFunction):
    r"""Laplace-shaped derivative (fused id 3).

    .. math:: \sigma'(x) = \frac{\alpha}{2} e^{-\alpha|x|}, \qquad
              g(x) = \begin{cases}1 - \frac12 e^{-\alpha x} & x \ge 0\\ \frac12 e^{\alpha x} & x < 0\end{cases}

    Args:
      alpha: sharpness, ``> 0`` and finite (default ``1.0``).
      spiking: ``True`` / ``False``: spike forward with the surrogate gradient, or the smooth
        primitive ``g(x)`` differentiated by autodiff (default ``True``).

    Shapes: ``sg(x)``, ``sg.derivative(x)`` and ``sg.primitive(x)`` take ``x`` of any shape and
    return its shape and dtype.
    """

    alpha: float = 1.0
    spiking: bool = True
    _param_names = ("alpha",)
    _real_params = ("alpha",)
    _positive_params = ("alpha",)

    def derivative(self, x: Any) -> Array:
        return (self.alpha / 2) * jnp.exp(-self.alpha * jnp.abs(jnp.asarray(x)))

    def primitive(self, x: Any) -> Array:
        x = jnp.asarray(x)
        m = heaviside(x)
        sgn = 2 * m - 1
        # exponent is -alpha*|x| in both branches: no overflow, gradient alpha/2 at 0
        return m - jnp.exp(-self.alpha * sgn * x) / 2 * sgn


@dataclasses.dataclass(frozen=True)
class SoftSign(SurrogateFunction):
    r"""Softsign surrogate, ``alpha > 0`` (fused id 4).

    .. math:: \sigma'(x) = \frac{1}{2\alpha(1/\alpha + |x|)^2} = \frac{\alpha}{2(1+\alpha|x|)^2},
              \qquad g(x) = \frac12\Big(\frac{\alpha x}{1 + |\alpha x|} + 1\Big)

    Args:
      alpha: sharpness, ``> 0`` and finite (default ``2.0``).
      spiking: ``True`` / ``False``: spike forward with the surrogate gradient, or the smooth
        primitive ``g(x)`` differentiated by autodiff (default ``True``).

    Shapes: ``sg(x)``, ``sg.derivative(x)`` and ``sg.primitive(x)`` take ``x`` of any shape and
    return its shape and dtype.
    """

    alpha: float = 2.0
    spiking: bool = True
    _param_names = ("alpha",)
    _real_params = ("alpha",)
    _positive_params = ("alpha",)

    def derivative(self, x: Any) -> Array:
        z = 1 / self.alpha + jnp.abs(jnp.asarray(x))
        return 1 / ((2 * self.alpha) * z * z)

    def primitive(self, x: Any) -> Array:
        ax = self.alpha * jnp.asarray(x)
        big = jnp.finfo(ax.dtype).max if jnp.issubdtype(ax.dtype, jnp.floating) else None
        if big is not None:   # alpha * x beyond the range: inf / inf would be NaN
            ax = jnp.where(ax > big, big, jnp.where(ax < -big, -big, ax))
        return (ax / (1 + jnp.abs(ax)) + 1) / 2


@dataclasses.dataclass(frozen=True)
class SuperSpike(SurrogateFunction):
    r"""Fast-sigmoid derivative; ``alpha`` is the height, the width is fixed (fused id 5).

    .. math:: \sigma'(x) = \frac{\alpha}{(1 + |x|)^2}

    No primitive (as in the reference).

    Args:
      alpha: height of the derivative, ``> 0`` and finite (default ``1.0``).
      spiking: ``True`` only in practice: there is no primitive, so ``False`` raises
        ``NotImplementedError`` when called (default ``True``).

    Shapes: ``sg(x)``, ``sg.derivative(x)`` and ``sg.primitive(x)`` take ``x`` of any shape and
    return its shape and dtype.
    """

    alpha: float = 1.0
    spiking: bool = True
    _param_names = ("alpha",)
    _real_params = ("alpha",)
    _positive_params = ("alpha",)
    has_primitive = False

    def derivative(self, x: Any) -> Array:
        z = 1 + jnp.abs(jnp.asarray(x))
        return self.alpha / (z * z)


@dataclasses.dataclass(frozen=True)
class NonzeroSignLogAbs(SurrogateFunction):
    r"""Log-magnitude surrogate; the primitive is odd and unbounded (not in (0, 1)).

    .. math:: \sigma'(x) = \frac{1}{1/\alpha + |x|} = \frac{\alpha}{1+\alpha|x|}, \qquad
              g(x) = \mathrm{sgn}_0(x)\,\ln(\alpha|x| + 1)

    Args:
      alpha: sharpness, ``> 0`` and finite (default ``1.0``).
      spiking: ``True`` / ``False``: spike forward with the surrogate gradient, or the smooth
        primitive ``g(x)`` differentiated by autodiff (default ``True``).

    Shapes: ``sg(x)``, ``sg.derivative(x)`` and ``sg.primitive(x)`` take ``x`` of any shape and
    return its shape and dtype.
    """

    alpha: float = 1.0
    spiking: bool = True
    _param_names = ("alpha",)
    _real_params = ("alpha",)
    _positive_params = ("alpha",)

    def derivative(self, x: Any) -> Array:
        return self.alpha / (1 + self.alpha * jnp.abs(jnp.asarray(x)))

    def primitive(self, x: Any) -> Array:
        x = jnp.asarray(x)
        m = _sgn0(x)
        return m * jnp.log(self.alpha * m * x + 1)


@dataclasses.dataclass(frozen=True)
class Erf(SurrogateFunction):
    r"""Gaussian derivative (fused id 6).

    .. math:: \sigma'(x) = \frac{\alpha}{\sqrt\pi} e^{-\alpha^2 x^2}, \qquad
              g(x) = \tfrac12\,\mathrm{erfc}(-\alpha x)

    Args:
      alpha: sharpness, ``> 0`` and finite (default ``2.0``).
      spiking: ``True`` / ``False``: spike forward with the surrogate gradient, or the smooth
        primitive ``g(x)`` differentiated by autodiff (default ``True``).

    Shapes: ``sg(x)``, ``sg.derivative(x)`` and ``sg.primitive(x)`` take ``x`` of any shape and
    return its shape and dtype.
    """

    alpha: float = 2.0
    spiking: bool = True
    _param_names = ("alpha",)
    _real_params = ("alpha",)
    _positive_params = ("alpha",)

    def derivative(self, x: Any) -> Array:
        z = self.alpha * jnp.asarray(x)
        return (self.alpha / math.sqrt(math.pi)) * jnp.exp(-z * z)

    def primitive(self, x: Any) -> Array:
        return jax.lax.erfc(-self.alpha * jnp.asarray(x)) / 2


@dataclasses.dataclass(frozen=True)
class PiecewiseLeakyReLU(SurrogateFunction):
    r"""Box derivative with leaky tails; ``w > 0``.

    .. math:: \sigma'(x) = \begin{cases}\frac{1}{2w} & |x| < w\\ c & |x| \ge w\end{cases}
    .. math:: g(x) = \begin{cases}c x + c w & x < -w\\ \frac{x}{2w} + \frac12 & |x| \le w\\ c x - c w + 1 & x > w\end{cases}

    (The primitive's slope at :math:`|x| = w` is the middle one, as in the reference.)

    Args:
      w: half-width of the box, ``> 0`` and finite (default ``1.0``).
      c: slope of the tails, a finite number (default ``0.01``).
      spiking: ``True`` / ``False``: spike forward with the surrogate gradient, or the smooth
        primitive ``g(x)`` differentiated by autodiff (default ``True``).

    Shapes: ``sg(x)``, ``sg.derivative(x)`` and ``sg.primitive(x)`` take ``x`` of any shape and
    return its shape and dtype.
    """

    w: float = 1.0
    c: float = 0.01
    spiking: bool = True
    _param_names = ("w", "c")
    _real_params = ("w", "c")
    _positive_params = ("w",)

    def derivative(self, x: Any) -> Array:
        x = jnp.asarray(x)
        return jnp.where(
            jnp.abs(x) < self.w,
            jnp.full_like(x, 1 / (2 * self.w)),
            jnp.full_like(x, self.c),
        )

    def primitive(self, x: Any) -> Array:
        x = jnp.asarray(x)
        w, c = self.w, self.c
        mid = x / (2 * w) + 0.5
        return jnp.where(x < -w, c * x + c * w, jnp.where(x > w, c * x - c * w + 1, mid))


@dataclasses.dataclass(frozen=True)
class SquarewaveFourierSeries(SurrogateFunction):
    r"""Truncated Fourier series of a square wave; ``n`` int >= 1 ("terms + 1"), ``T_period > 0``.

    With :math:`\omega = 2\pi/T_{period}`:

    .. math:: \sigma'(x) = \frac{4}{T_{period}}\sum_{i=1}^{n-1}\cos((2i-1)\omega x), \qquad
              g(x) = \frac12 + \frac{2}{\pi}\sum_{i=1}^{n-1}\frac{\sin((2i-1)\omega x)}{2i-1}

    The derivative is periodic and can be negative; ``n = 1`` gives zero gradient.

    Args:
      n: number of terms plus one, an int ``>= 1`` (default ``2``).
      T_period: period of the square wave, ``> 0`` and finite (default ``8.0``).
      spiking: ``True`` / ``False``: spike forward with the surrogate gradient, or the smooth
        primitive ``g(x)`` differentiated by autodiff (default ``True``).

    Shapes: ``sg(x)``, ``sg.derivative(x)`` and ``sg.primitive(x)`` take ``x`` of any shape and
    return its shape and dtype.
    """

    n: int = 2
    T_period: float = 8.0
    spiking: bool = True
    _param_names = ("n", "T_period")
    _real_params = ("T_period",)

    def _validate(self) -> None:
        object.__setattr__(self, "n", _as_int(self.name, "n", self.n))
        if self.n < 1:
            raise ValueError(f"SquarewaveFourierSeries: n must be >= 1, got {self.n}")
        if not self.T_period > 0:
            raise ValueError(
                f"SquarewaveFourierSeries: T_period must be > 0, got {self.T_period}"
            )

    def _reduce(self, x: Array) -> Array:
        # every term has period T_period: reduce huge |x| so (2i-1)*omega*x cannot overflow to inf
        return jnp.where(jnp.abs(x) < self.T_period, x, jnp.remainder(x, self.T_period))

    def derivative(self, x: Any) -> Array:
        x = self._reduce(jnp.asarray(x))
        omega = 2 * math.pi / self.T_period
        acc = jnp.zeros_like(x)
        for i in range(1, self.n):
            acc = acc + jnp.cos(((2 * i - 1) * omega) * x)
        return acc * (4 / self.T_period)

    def primitive(self, x: Any) -> Array:
        x = self._reduce(jnp.asarray(x))
        omega = 2 * math.pi / self.T_period
        acc = jnp.zeros_like(x)
        for i in range(1, self.n):
            k = 2 * i - 1
            acc = acc + jnp.sin((k * omega) * x) / k
        return 0.5 + (2 / math.pi) * acc


@dataclasses.dataclass(frozen=True)
class S2NN(SurrogateFunction):
    r"""Sigmoid derivative on the left, :math:`\beta/(x+1)` on the right.

    .. math:: \sigma'(x) = \begin{cases}\alpha s(\alpha x)(1 - s(\alpha x)) & x < 0\\ \frac{\beta}{x+1} & x \ge 0\end{cases}
    .. math:: g(x) = \begin{cases}s(\alpha x) & x < 0\\ \beta\ln(|x+1| + 10^{-5}) + \frac12 & x \ge 0\end{cases}

    (The reference code's ``+0.5``, not its documentation's ``+1``.)

    Args:
      alpha: sharpness of the left (sigmoid) branch, ``> 0`` and finite (default ``4.0``).
      beta: height of the right branch, ``> 0`` and finite (default ``1.0``).
      spiking: ``True`` / ``False``: spike forward with the surrogate gradient, or the smooth
        primitive ``g(x)`` differentiated by autodiff (default ``True``).

    Shapes: ``sg(x)``, ``sg.derivative(x)`` and ``sg.primitive(x)`` take ``x`` of any shape and
    return its shape and dtype.
    """

    alpha: float = 4.0
    beta: float = 1.0
    spiking: bool = True
    _param_names = ("alpha", "beta")
    _real_params = ("alpha", "beta")
    _positive_params = ("alpha", "beta")

    def derivative(self, x: Any) -> Array:
        x = jnp.asarray(x)
        s = jax.nn.sigmoid(self.alpha * x)
        left = self.alpha * s * (1 - s)
        xr = jnp.where(x < 0, jnp.zeros_like(x), x)  # keeps 1/(x+1) away from x = -1
        return jnp.where(x < 0, left, self.beta / (xr + 1))

    def primitive(self, x: Any) -> Array:
        x = jnp.asarray(x)
        neg = x < 0
        xl = jnp.where(neg, x, jnp.zeros_like(x))
        xr = jnp.where(neg, jnp.zeros_like(x), x)
        right = self.beta * jnp.log(jnp.abs(xr + 1) + 1e-5) + 0.5
        return jnp.where(neg, jax.nn.sigmoid(self.alpha * xl), right)


@dataclasses.dataclass(frozen=True)
class QPseudoSpike(SurrogateFunction):
    r"""Heavy-tailed derivative; ``alpha > 1``.

    .. math:: \sigma'(x) = \Big(1 + \frac{2|x|}{\alpha - 1}\Big)^{-\alpha}
    .. math:: g(x) = \begin{cases}1 - \frac12\big(1 + \frac{2x}{\alpha-1}\big)^{1-\alpha} & x \ge 0\\
              \frac12\big(1 - \frac{2x}{\alpha-1}\big)^{1-\alpha} & x < 0\end{cases}

    Args:
      alpha: tail exponent, ``> 1`` and finite (default ``2.0``).
      spiking: ``True`` / ``False``: spike forward with the surrogate gradient, or the smooth
        primitive ``g(x)`` differentiated by autodiff (default ``True``).

    Shapes: ``sg(x)``, ``sg.derivative(x)`` and ``sg.primitive(x)`` take ``x`` of any shape and
    return its shape and dtype.
    """

    alpha: float = 2.0
    spiking: bool = True
    _param_names = ("alpha",)
    _real_params = ("alpha",)

    def _validate(self) -> None:
        # reference: ZeroDivisionError at alpha = 1, NaN for alpha < 1
        if not self.alpha > 1:
            raise ValueError(f"QPseudoSpike: alpha must be > 1, got {self.alpha}")

    def derivative(self, x: Any) -> Array:
        return (1 + (2 / (self.alpha - 1)) * jnp.abs(jnp.asarray(x))) ** (-self.alpha)

    def primitive(self, x: Any) -> Array:
        x = jnp.asarray(x)
        sgn = _sgn0(x)
        base = 1 + (2 / (self.alpha - 1)) * sgn * x  # = 1 + 2|x|/(alpha-1) >= 1
        return heaviside(x) - 0.5 * sgn * base ** (1 - self.alpha)


@dataclasses.dataclass(frozen=True)
class LeakyKReLU(SurrogateFunction):
    r"""Constant derivatives ``k`` (right) and ``leak`` (left); constructor order ``(leak, k)``.

    .. math:: \sigma'(x) = \begin{cases}k & x \ge 0\\ \text{leak} & x < 0\end{cases}, \qquad
              g(x) = \begin{cases}k x & x \ge 0\\ \text{leak}\cdot x & x < 0\end{cases}

    Args:
      leak: derivative for ``x < 0``, a finite number (default ``0.0``).
      k: derivative for ``x >= 0``, a finite number (default ``1.0``).
      spiking: ``True`` / ``False``: spike forward with the surrogate gradient, or the smooth
        primitive ``g(x)`` differentiated by autodiff (default ``True``).

    Shapes: ``sg(x)``, ``sg.derivative(x)`` and ``sg.primitive(x)`` take ``x`` of any shape and
    return its shape and dtype.
    """

    leak: float = 0.0
    k: float = 1.0
    spiking: bool = True
    _param_names = ("leak", "k")
    _real_params = ("leak", "k")

    def derivative(self, x: Any) -> Array:
        x = jnp.asarray(x)
        return jnp.where(x >= 0, jnp.full_like(x, self.k), jnp.full_like(x, self.leak))

    def primitive(self, x: Any) -> Array:
        x = jnp.asarray(x)
        return jnp.where(x >= 0, self.k * x, self.leak * x)


@dataclasses.dataclass(frozen=True)
class FakeNumericalGradient(SurrogateFunction):
    r"""Clipped :math:`1/|x|` derivative.  No ``spiking`` constructor argument; no primitive.

    .. math:: \sigma'(x) = \min\big(\mathrm{sgn}_0(x)/x,\ \alpha\big) = \min(1/|x|, \alpha)

    At :math:`x = \pm 0` the value is :math:`\alpha` (the reference gives :math:`-\infty` at
    ``-0.0``; see docs/differences.md).

    Args:
      alpha: clip of the ``1/|x|`` derivative, ``> 0`` and finite (default ``0.3``).

    Shapes: ``sg(x)``, ``sg.derivative(x)`` and ``sg.primitive(x)`` take ``x`` of any shape and
    return its shape and dtype.
    """

    alpha: float = 0.3
    spiking: bool = dataclasses.field(default=True, init=False)
    _param_names = ("alpha",)
    _real_params = ("alpha",)
    _positive_params = ("alpha",)
    has_primitive = False

    def derivative(self, x: Any) -> Array:
        x = jnp.asarray(x)
        # 1/|x| (inf at +-0, clipped to alpha) instead of sgn0(x)/x, which is -inf at -0.0
        return jnp.minimum(1 / jnp.abs(x), self.alpha)


@dataclasses.dataclass(frozen=True)
class LogTailedReLU(SurrogateFunction):
    r"""ReLU-like derivative with a :math:`1/x` tail.  Note :math:`\sigma'(0) = \alpha` (0 by default).

    .. math:: \sigma'(x) = \begin{cases}\alpha & x \le 0\\ 1 & 0 < x \le 1\\ 1/x & x > 1\end{cases}
    .. math:: g(x) = \begin{cases}\alpha x & x \le 0\\ x & 0 < x \le 1\\ \ln x + 1 & x > 1\end{cases}

    Args:
      alpha: derivative for ``x <= 0``, a finite number (default ``0.0``).
      spiking: ``True`` / ``False``: spike forward with the surrogate gradient, or the smooth
        primitive ``g(x)`` differentiated by autodiff (default ``True``).

    Shapes: ``sg(x)``, ``sg.derivative(x)`` and ``sg.primitive(x)`` take ``x`` of any shape and
    return its shape and dtype.
    """

    alpha: float = 0.0
    spiking: bool = True
    _param_names = ("alpha",)
    _real_params = ("alpha",)

    def derivative(self, x: Any) -> Array:
        x = jnp.asarray(x)
        tail = 1 / jnp.maximum(x, 1)
        return jnp.where(x > 1, tail, jnp.where(x > 0, jnp.ones_like(x), jnp.full_like(x, self.alpha)))

    def primitive(self, x: Any) -> Array:
        x = jnp.asarray(x)
        tail = jnp.log(jnp.maximum(x, 1)) + 1
        # leaky ReLU whose slope at 0 is alpha (as the reference's autograd)
        lrelu = jnp.where(x > 0, x, self.alpha * x)
        return jnp.where(x > 1, tail, lrelu)


@dataclasses.dataclass(frozen=True)
class DeterministicPass(SurrogateFunction):
    r"""Straight-through estimator.

    .. math:: \sigma'(x) = 1, \qquad g(x) = x

    Args:
      spiking: ``True`` / ``False``: spike forward with the surrogate gradient, or the smooth
        primitive ``g(x)`` differentiated by autodiff (default ``True``).

    Shapes: ``sg(x)``, ``sg.derivative(x)`` and ``sg.primitive(x)`` take ``x`` of any shape and
    return its shape and dtype.
    """

    spiking: bool = True

    def derivative(self, x: Any) -> Array:
        return jnp.ones_like(jnp.asarray(x))

    def primitive(self, x: Any) -> Array:
        return jnp.asarray(x)


@dataclasses.dataclass(frozen=True)
class MultiLevelSpikeCount(SurrogateFunction):
    r"""Integer spike counts with a windowed straight-through gradient.

    ``max_spike_count`` (:math:`K`) is an int >= 1; ``grad_window=(grad_min, grad_max)`` defaults
    to :math:`(0, K)` and needs ``grad_min <= grad_max``.  Equality/hash use the resolved
    ``grad_min``/``grad_max`` (``grad_window`` itself is not compared).

    .. math:: \text{spike}(x) = \mathrm{round}(\mathrm{clamp}(x, 0, K))\ \text{(half to even)}, \qquad
              \sigma'(x) = \mathbf 1[\text{grad\_min} \le x \le \text{grad\_max}]
    .. math:: g(x) = \mathrm{clamp}(x, 0, K), \qquad g'(x) = \mathbf 1[0 \le x \le K]

    Args:
      max_spike_count: largest spike count ``K``, an int ``>= 1`` (required).
      spiking: ``True`` / ``False``: spike forward with the surrogate gradient, or the smooth
        primitive ``g(x)`` differentiated by autodiff (default ``True``).
      grad_window: ``(grad_min, grad_max)``, finite numbers with ``grad_min <= grad_max``, or
        ``None``: ``(0, K)`` (default ``None``).

    Shapes: ``sg(x)``, ``sg.derivative(x)`` and ``sg.primitive(x)`` take ``x`` of any shape and
    return its shape and dtype (the spike is an integer count in that dtype).
    """

    max_spike_count: int
    spiking: bool = True
    grad_window: Optional[Tuple[float, float]] = dataclasses.field(
        default=None, compare=False, repr=False
    )
    grad_min: float = dataclasses.field(init=False)
    grad_max: float = dataclasses.field(init=False)
    _param_names = ("max_spike_count", "grad_min", "grad_max")

    def _validate(self) -> None:
        name = self.name
        k = _as_int(name, "max_spike_count", self.max_spike_count)
        if k < 1:
            raise ValueError(f"{name}: max_spike_count must be >= 1, got {k}")
        object.__setattr__(self, "max_spike_count", k)
        gw = self.grad_window
        if gw is None:
            lo, hi = 0.0, float(k)
        else:
            try:
                lo, hi = gw
            except (TypeError, ValueError):
                raise TypeError(
                    f"{name}: 'grad_window' must be None or a pair (grad_min, grad_max); got {gw!r}"
                ) from None
            lo = _as_real(name, "grad_window[0]", lo)
            hi = _as_real(name, "grad_window[1]", hi)
            if lo > hi:
                raise ValueError(
                    f"{name}: 'grad_window' needs grad_min <= grad_max; got ({lo}, {hi})"
                )
            object.__setattr__(self, "grad_window", (lo, hi))  # tuple: hashable
        object.__setattr__(self, "grad_min", lo)
        object.__setattr__(self, "grad_max", hi)

    _forward_keeps_nan = True   # clip and round keep NaN (the kernels' max/min too)

    def _spike_forward(self, x: Array, aux: Any) -> Array:
        return jnp.round(jnp.clip(x, 0, self.max_spike_count))

    def derivative(self, x: Any) -> Array:
        x = jnp.asarray(x)
        return ((x >= self.grad_min) & (x <= self.grad_max)).astype(x.dtype)

    def primitive(self, x: Any) -> Array:
        x = jnp.asarray(x)
        inside = (x >= 0) & (x <= self.max_spike_count)
        # jnp.clip splits the gradient at the ends; the reference passes it fully (inclusive)
        return jnp.where(inside, x, jax.lax.stop_gradient(jnp.clip(x, 0, self.max_spike_count)))


@dataclasses.dataclass(frozen=True)
class PoissonPass(SurrogateFunction):
    r"""Bernoulli sampling with a straight-through gradient.  Spiking mode needs ``key``.

    .. math:: \text{spike}(x) \sim \mathrm{Bernoulli}(x)\ \text{(float32)}, \qquad
              \sigma'(x) = 1, \qquad g(x) = x

    ``x`` is the firing probability (values outside [0, 1] saturate instead of raising).

    Args:
      spiking: ``True``: sample spikes (needs ``key``) with a straight-through gradient; ``False``:
        return ``x`` (default ``True``).

    Shapes: ``sg(x)``, ``sg.derivative(x)`` and ``sg.primitive(x)`` take ``x`` of any shape and
    return its shape and dtype.
    In spiking mode the output is float32 and ``x`` is a probability in ``[0, 1]`` (outside it
    saturates).
    """

    spiking: bool = True
    stochastic = True

    def __call__(self, x: Any, key: Optional[Array] = None) -> Array:
        """Sample spikes with PRNG ``key`` (spiking mode) or return ``x`` (``spiking=False``)."""
        return super().__call__(x, key)

    def _aux(self, x: Array, key: Optional[Array]) -> Any:
        if key is None:
            raise ValueError(
                "PoissonPass: spiking mode samples spikes and needs a PRNG key: call "
                "surrogate(x, key=jax.random.key(...))"
            )
        return jax.random.uniform(key, jnp.shape(x), dtype=jnp.float32)

    def _spike_forward(self, x: Array, aux: Any) -> Array:
        return (aux < x).astype(jnp.float32)   # a NaN probability: NaN by the NaN rule

    def derivative(self, x: Any) -> Array:
        return jnp.ones_like(jnp.asarray(x))

    def primitive(self, x: Any) -> Array:
        return jnp.asarray(x)


@dataclasses.dataclass(frozen=True)
class Rect(SurrogateFunction):
    r"""Rectangular-window derivative.

    .. math:: \sigma'(x) = \alpha\,\mathbf 1[|x| < 0.5/\alpha]\ \text{(strict)}, \qquad
              g(x) = \mathrm{clamp}(\alpha x + 0.5, 0, 1)

    Args:
      alpha: height (the window is ``|x| < 0.5/alpha``), ``> 0`` and finite (default ``1.0``).
      spiking: ``True`` / ``False``: spike forward with the surrogate gradient, or the smooth
        primitive ``g(x)`` differentiated by autodiff (default ``True``).

    Shapes: ``sg(x)``, ``sg.derivative(x)`` and ``sg.primitive(x)`` take ``x`` of any shape and
    return its shape and dtype.
    """

    alpha: float = 1.0
    spiking: bool = True
    _param_names = ("alpha",)
    _real_params = ("alpha",)
    _positive_params = ("alpha",)

    def derivative(self, x: Any) -> Array:
        x = jnp.asarray(x)
        inside = jnp.abs(x) < 0.5 * _inv(self.alpha)
        return inside.astype(x.dtype) * self.alpha

    def primitive(self, x: Any) -> Array:
        y = self.alpha * jnp.asarray(x) + 0.5
        inside = (y >= 0) & (y <= 1)
        # gradient passes at both ends inclusive, like the reference's clamp
        return jnp.where(inside, y, jax.lax.stop_gradient(jnp.clip(y, 0, 1)))
