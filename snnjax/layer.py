"""Layers of a spiking network (SpikingJelly's ``activation_based.layer`` counterparts).

Layout: Flax's, channels last. A SpikingJelly ``[T, N, C, H, W]`` sequence is
``[T, B, H, W, C]`` here, a single step ``[N, C, H, W]`` is ``[B, H, W, C]``.

* Containers: :class:`SeqToANNContainer` (stateless layers applied to ``[T, B, *]`` with time
  folded into the batch), :class:`MultiStepContainer` (single-step layers run step by step),
  :class:`Remat` (any modules, rematerialised in the backward pass: a memory option).
  Both keep their modules, in order, in the attribute ``layers`` (an ``nnx.List``).
* :class:`Dropout`: one mask per sequence, shared by every time step, kept until ``reset_net``.
* Step-mode layers: :class:`Linear`, :class:`Conv2d`, :class:`BatchNorm2d`, :class:`MaxPool2d`,
  :class:`AvgPool2d`, :class:`AdaptiveAvgPool2d`, :class:`Flatten`, each with
  ``step_mode='s'`` (input ``[B, *]``) or ``'m'`` (``[T, B, *]``, time folded into the batch),
  PyTorch's constructor arguments and PyTorch's default initialisation.

Plain ``nnx`` layers (``nnx.Linear``, ``nnx.Conv``, ``nnx.BatchNorm``, ...) work inside the
containers unchanged.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, ClassVar, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.ad_checkpoint import checkpoint_name

from snnjax import _checks as C
from snnjax import _spikes
from snnjax import functional, kernels
from snnjax.neuron.base import STEP_MODES, MemoryModule

Array = jax.Array


def _check_step_mode(owner: str, step_mode: Any) -> str:
    return C.choice(STEP_MODES)(owner, "step_mode", step_mode)


def _check_single_step(owner: str, modules: Sequence[Any]) -> None:
    """Containers run their modules on single steps (or folded batches): step_mode must be 's'."""
    for i, m in enumerate(modules):
        if not callable(m):
            raise TypeError(f"{owner}: module {i} must be callable, got {m!r}")
        if getattr(m, "step_mode", "s") != "s":
            raise ValueError(f"{owner}: module {i} ({type(m).__name__}) has step_mode="
                             f"{m.step_mode!r}; modules inside this container must have "
                             f"step_mode='s' (the container handles time)")


def _apply_all(layers: Sequence[Callable], x: Any) -> Any:
    for layer in layers:
        x = layer(x)
    return x


# --- memory: compact storage of binary inputs, rematerialisation -------------------------------

def _check_has_params(owner: str, option: str, modules: Any) -> None:
    """``remat`` recomputes a block to save its residuals; without parameters there is no
    backward through weights to trade for, and the option is refused."""
    if not jax.tree_util.tree_leaves(nnx.state(modules, nnx.Param)):
        raise ValueError(f"{owner}: {option} needs a block with parameters (a convolution, a "
                         f"linear layer, a batch norm...); these modules have none: "
                         f"{[type(m).__name__ for m in modules]}")


def _preserves_binary(layers: Sequence[Any]) -> bool:
    """Layers whose output is binary whenever their input is (max of 0/1/NaN values, reshapes)."""
    return len(layers) > 0 and all(getattr(m, "preserves_binary", False) for m in layers)


# what a rematerialised block keeps besides its input: small values whose recomputation would
# need a whole forward kernel (a neuron's chunk-start states; max pooling's int8 positions,
# which need the block's spikes)
_POOL_POSITIONS = "snnjax_max_pool_positions"
_REMAT_POLICY = jax.checkpoint_policies.save_only_these_names(kernels.CHECKPOINTS_NAME,
                                                              _POOL_POSITIONS)


def _checkpointed(fn: Callable, module: Any, x: Array, binary: bool, *, save: bool) -> Any:
    """``fn(module, x)`` whose backward keeps only what the options allow.

    ``binary``: ``x`` is a spike tensor (0, 1, NaN): it is kept as ``int8`` and decoded again in
    the backward (exact). ``save=True``: every other residual is saved as usual (only the decode
    is redone); ``save=False`` (remat): nothing is saved but the input (its ``int8`` code when
    binary) and ``_REMAT_POLICY``'s small values, the rest of the forward is recomputed in the
    backward, and the neurons' backward kernels write in place (``kernels.under_checkpoint``). State
    updates (batch-norm running
    statistics, neuron states) are outputs of the forward: they happen once, a recomputation
    changes nothing.
    """
    if save:
        return _checkpointed_call(fn, module, x, binary, _spikes.saving_all_but_input)
    # the recomputation skips the neurons' forward kernels (their chunk-start states and the
    # pooling positions are kept); the cotangents are the step's own, so aliasing them is free
    with kernels.under_checkpoint(in_place_backward=True):
        return _checkpointed_call(fn, module, x, binary, _REMAT_POLICY)


def _checkpointed_call(fn: Callable, module: Any, x: Array, binary: bool, policy: Callable) -> Any:
    if binary:
        run = nnx.remat(lambda mod, code, a: fn(mod, _spikes.decoded(code, a)), policy=policy)
        # the barrier keeps XLA from fusing the encode with the forward's decode into one pass
        # that holds x and its decoded copy at once (twice the tensor's memory)
        return run(module, jax.lax.optimization_barrier(_spikes.encode(x)), x)
    return nnx.remat(fn, policy=policy)(module, x)


# --- containers --------------------------------------------------------------------------------

class SeqToANNContainer(nnx.Module):
    """Stateless layers applied to a sequence with time folded into the batch.

    ``y_seq = unfold(f_K(...f_1(fold(x_seq))))`` with ``fold: [T, B, *] -> [T*B, *]`` and
    ``unfold: [T*B, *'] -> [T, B, *']`` (SpikingJelly's ``SeqToANNContainer``). A batch norm
    inside therefore normalises over ``T*B`` (and the spatial axes) in training and uses its
    running statistics in eval mode (``model.eval()``).

    Args:
      *modules: callables applied in order (``nnx`` layers, :mod:`snnjax.layer` layers with
        ``step_mode='s'``, plain functions such as ``nnx.relu``).
      remat: recompute the layers in the backward pass from the input instead of keeping their
        activations (keyword-only; a ``ValueError`` if no module has parameters).

    Memory (always on): when ``x_seq`` is the spike output of a binary spiking neuron (the rule
    in the README's "Memory"), the backward keeps it as ``int8`` (0, 1, NaN -> -1) instead of
    its floating dtype; values and gradients are unchanged. A container of only
    :class:`MaxPool2d` / :class:`Flatten` passes the binary tag on to its output.

    Input ``x_seq``: ``[T, B, *]``; output ``[T, B, *']``.
    """

    def __init__(self, *modules: Callable, remat: bool = False):
        owner = type(self).__name__
        _check_single_step(owner, modules)
        self.layers = nnx.List(modules)
        self.remat = C.boolean(owner, "remat", remat)
        if self.remat:
            _check_has_params(owner, "remat=True", self.layers)

    def __call__(self, x_seq: Array) -> Array:
        binary = _spikes.is_binary(x_seq)
        y = functional.seq_to_ann_forward(x_seq, functools.partial(self._stored, binary))
        return _spikes.tag(y) if binary and _preserves_binary(self.layers) else y

    def _stored(self, binary: bool, x: Array) -> Array:
        """``_forward`` with its backward's storage chosen: a binary input kept as ``int8``;
        ``remat=True``: nothing but the input kept, the layers recomputed in the backward."""
        if self.remat:
            return _checkpointed(lambda mod, a: mod._forward(a), self, x, binary, save=False)
        if binary:
            return _checkpointed(lambda mod, a: mod._forward(a), self, x, True, save=True)
        return self._forward(x)

    def _forward(self, x: Array) -> Array:
        """The layers on the folded ``[T*B, *]`` batch (the one place that sees no time axis)."""
        return _apply_all(self.layers, x)


class Remat(nnx.Module):
    """Modules run in order, rematerialised in the backward pass (a memory option).

    ``y = f_K(...f_1(x))`` as :class:`nnx.Sequential`; the backward keeps only the input ``x``
    (as ``int8`` when ``x`` is a spike tensor, see the README's "Memory") and recomputes the
    forward of the block from it, trading one more forward of the block for the memory of
    every activation inside. Wrap one ``conv-BN-neuron`` block, or ``k`` consecutive blocks
    (every ``k`` blocks), e.g.::

        Remat(SeqToANNContainer(Conv2d(...), BatchNorm2d(...)), LIFNode(step_mode='m'),
              SeqToANNContainer(MaxPool2d(2)))

    Batch-norm running statistics and neuron states are updated once per call: they are
    outputs of the forward, the recomputation in the backward changes nothing.

    Args:
      *modules: callables applied in order (any step modes; the block sees what the modules
        would see without it). At least one must have parameters (``nnx.Param``), else a
        ``ValueError`` (nothing to trade memory for).

    Input / output: those of the modules.
    """

    def __init__(self, *modules: Callable):
        owner = type(self).__name__
        for i, m in enumerate(modules):
            if not callable(m):
                raise TypeError(f"{owner}: module {i} must be callable, got {m!r}")
        if not modules:
            raise ValueError(f"{owner}: needs at least one module")
        self.layers = nnx.List(modules)
        _check_has_params(owner, "rematerialisation", self.layers)

    def __call__(self, x: Array) -> Array:
        binary_out = []

        def run(mod: "Remat", a: Array) -> Array:
            y = _apply_all(mod.layers, a)
            binary_out.append(_spikes.is_binary(y))
            return y
        y = _checkpointed(run, self, x, _spikes.is_binary(x), save=False)
        return _spikes.tag(y) if binary_out and binary_out[0] else y


class MultiStepContainer(nnx.Module):
    """Single-step modules run over the time axis, one step at a time.

    ``y_seq[t] = f_K(...f_1(x_seq[t]))`` for ``t = 0 .. T-1`` in order, so stateful modules
    (neurons in ``step_mode='s'``, :class:`Dropout`) carry their state from step to step
    (SpikingJelly's ``MultiStepContainer``). The loop is unrolled into the traced program; a
    ``step_mode='m'`` neuron, which fuses its time loop, is faster where one exists.

    Args:
      *modules: callables applied in order at every step (``step_mode='s'`` if they have one).

    Input ``x_seq``: ``[T, B, *]``; output ``[T, B, *']``.
    """

    def __init__(self, *modules: Callable):
        _check_single_step(type(self).__name__, modules)
        self.layers = nnx.List(modules)

    def __call__(self, x_seq: Array) -> Array:
        x_seq = jnp.asarray(x_seq)
        if x_seq.ndim < 1 or x_seq.shape[0] < 1:
            raise ValueError(f"{type(self).__name__}: input must be [T, B, *] with T >= 1, got "
                             f"shape {x_seq.shape}")
        return functional.multi_step_forward(x_seq, tuple(self.layers))


# --- dropout -----------------------------------------------------------------------------------

def dropout_mask(key: Array, shape: Sequence[int], p: float, dtype: Any = jnp.float32) -> Array:
    """Inverted-dropout mask: ``M = B / (1 - p)``, ``B ~ Bernoulli(1 - p)`` i.i.d.

    Args:
      key: a JAX PRNG key.
      shape: mask shape (one step of the input, ``[B, *]``).
      p: drop probability, ``0 <= p < 1``.
      dtype: mask dtype.
    """
    keep = jax.random.bernoulli(key, 1.0 - p, tuple(shape))
    return jnp.where(keep, 1.0 / (1.0 - p), 0.0).astype(dtype)


class Dropout(MemoryModule):
    """Dropout with one mask per sequence (SpikingJelly's ``layer.Dropout``).

    In training (``deterministic=False``) the first call after construction or
    ``reset_net`` draws ``M = Bernoulli(1 - p) / (1 - p)`` of the per-step shape ``[B, *]``;
    every later step (single-step calls, or all ``T`` steps of a multi-step call) is
    ``Y[t] = X[t] * M`` with that same mask, until :func:`snnjax.functional.reset_net` (which
    makes the next call draw a new one). In eval mode (``deterministic=True``,
    ``model.eval()``) the layer is the identity and the mask is kept.

    The mask is declared state (``mask``, plus the 0-d ``drawn`` flag), like a neuron's
    membrane: it lives in ``nnx.state``, survives ``nnx.split``/``merge`` and ``nnx.jit``, and
    ``reset_net`` / ``init_net_state`` handle it.

    Args:
      p: drop probability, ``0 <= p < 1``.
      step_mode: ``'s'`` (input ``[B, *]``) or ``'m'`` (``[T, B, *]``).
      rngs: ``nnx.Rngs`` (stream ``'dropout'``, else ``'default'``) or an ``nnx.RngStream``;
        needed to draw masks in training (keyword-only).
      deterministic: NNX train/eval flag (keyword-only; default ``False``: training).
    """

    recorded = ()
    arg_checks = {"p": C.in_range(0.0, 1.0, low_open=False, high_open=True),
                  "deterministic": C.boolean}

    def __init__(self, p: float = 0.5, step_mode: str = "s", *, rngs: nnx.Rngs | None = None,
                 deterministic: bool = False):
        super().__init__(step_mode)
        self.p = p
        self.deterministic = deterministic
        rngs = C.optional_rngs(type(self).__name__, "rngs", rngs)
        self.rngs = nnx.data(None if rngs is None else (
            rngs["dropout"] if isinstance(rngs, nnx.Rngs) else rngs).fork())
        self.register_memory("mask", 1.0)
        self.register_memory("drawn", 0.0, per_neuron=False, dtype="int32")

    # pure API: the key is explicit
    def step(self, state: dict, x: Any, key: Array | None = None) -> tuple[dict, Array]:
        """``(state, x[B, *]) -> (state, x * mask)``; ``key`` draws the mask if none is drawn."""
        x = jnp.asarray(x)
        return self._apply(self._conform(state, x), x, key, x)

    def multi_step(self, state: dict, x_seq: Any, key: Array | None = None, *,
                   return_state_seq: bool = False) -> tuple[dict, Array]:
        """``(state, x_seq[T, B, *]) -> (state, x_seq * mask)``, one mask for every step."""
        x_seq = self._check_sequence(x_seq)
        return self._apply(self._conform(state, x_seq[0]), x_seq[0], key, x_seq)

    def _apply(self, state: dict, x_step: Array, key: Array | None, x: Array) -> tuple[dict, Array]:
        if self.deterministic or self.p == 0.0:
            return state, x
        if key is None:
            raise ValueError(f"{type(self).__name__}: training mode needs a PRNG key to draw the "
                             f"mask: construct it with rngs=nnx.Rngs(...) (or pass key=...), or "
                             f"call model.eval()")
        mask = jax.lax.cond(state["drawn"] > 0, lambda: state["mask"],
                            lambda: dropout_mask(key, x_step.shape, self.p, state["mask"].dtype))
        out = (x * mask.astype(x.dtype)).astype(x.dtype)
        return {"mask": mask, "drawn": jnp.ones((), jnp.int32)}, out

    def _key(self) -> Array | None:
        if self.deterministic or self.p == 0.0 or self.rngs is None:
            return None
        return self.rngs()

    def single_step_forward(self, x: Any) -> Array:
        self._require("s")
        x = jnp.asarray(x)
        if self.deterministic or self.p == 0.0:   # identity; the stored mask is left alone
            return x
        state, out = self.step(self.stored_state(x), x, self._key())
        self.state = state
        return out

    def multi_step_forward(self, x_seq: Any) -> Array:
        self._require("m")
        x_seq = self._check_sequence(x_seq)
        if self.deterministic or self.p == 0.0:
            return x_seq
        state, out = self.multi_step(self.stored_state(x_seq[0]), x_seq, self._key())
        self.state = state
        return out


# --- step-mode layers --------------------------------------------------------------------------

def _torch_uniform(fan_in: int) -> Callable:
    """PyTorch's default ``Linear``/``Conv`` initialisation: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``
    (``kaiming_uniform_(a=sqrt(5))`` for the weight, the same bound for the bias)."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0

    def init(key: Array, shape: Sequence[int], dtype: Any = jnp.float32) -> Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)
    return init


def _seq(owner: str, x: Array, ndim: int | None, layout: str) -> None:
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{owner}: expected x with shape {layout}, got shape {tuple(x.shape)}")


class _StepModeMixin:
    """``step_mode='s'``: the layer on ``[B, *]``; ``'m'``: on ``[T, B, *]`` with time folded.

    A layer that keeps binary values binary (``preserves_binary``: max pooling, flatten) passes
    the spike tag of its input on (the rule in the README's "Memory").
    """

    step_ndim: ClassVar[int | None] = None       # ndim of one step's input (None: any)
    step_layout: ClassVar[str] = "[B, *]"
    preserves_binary: ClassVar[bool] = False     # binary input -> binary output
    step_mode: str                               # set by each layer's constructor

    def _forward(self, x: Array) -> Array:
        raise NotImplementedError

    def _apply(self, x: Array) -> Array:
        """``_forward`` in the layer's step mode, ``x`` checked."""
        owner = type(self).__name__
        if self.step_mode == "s":
            _seq(owner, x, self.step_ndim, self.step_layout)
            return self._forward(x)
        _seq(owner, x, None if self.step_ndim is None else self.step_ndim + 1,
             "[T, " + self.step_layout[1:])
        if x.ndim < 2:
            raise ValueError(f"{owner}: step_mode='m' input must be [T, B, *], got shape {x.shape}")
        return functional.seq_to_ann_forward(x, self._forward)

    def __call__(self, x: Any) -> Array:
        binary = _spikes.is_binary(x)
        y = self._apply(jnp.asarray(x))
        return _spikes.tag(y) if binary and self.preserves_binary else y


class Linear(_StepModeMixin, nnx.Linear):
    """``y = x W + b`` on the last axis (an ``nnx.Linear``; SpikingJelly's ``layer.Linear``).

    Kernel ``[in_features, out_features]`` (the transpose of PyTorch's ``weight``), initialised
    like PyTorch: ``W, b ~ U(-1/sqrt(in_features), 1/sqrt(in_features))``.

    Args:
      in_features: size of the input's last axis, a positive int (required).
      out_features: size of the output's last axis, a positive int (required).
      bias: learn ``b``, a bool (default ``True``).
      step_mode: ``'s'`` or ``'m'`` (default ``'s'``; same result: the layer acts on the last
        axis).
      rngs: ``nnx.Rngs`` for the initialisation (keyword-only, required).
      **kwargs: passed to ``nnx.Linear`` (``dtype``, ``param_dtype``, ``precision``,
        ``kernel_init``, ``bias_init``, ``dot_general``, ...; defaults as there, except the
        PyTorch initialisers).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 step_mode: str = "s", *, rngs: nnx.Rngs, **kwargs: Any):
        owner = type(self).__name__
        in_features = C.positive_int(owner, "in_features", in_features)
        out_features = C.positive_int(owner, "out_features", out_features)
        kwargs.setdefault("kernel_init", _torch_uniform(in_features))
        kwargs.setdefault("bias_init", _torch_uniform(in_features))
        nnx.Linear.__init__(self, in_features, out_features,
                            use_bias=C.boolean(owner, "bias", bias), rngs=rngs, **kwargs)
        self.step_mode = _check_step_mode(owner, step_mode)

    def _forward(self, x: Array) -> Array:
        return nnx.Linear.__call__(self, x)

    def _apply(self, x: Array) -> Array:   # any leading axes, in both step modes
        return self._forward(x)


def _pair(owner: str, name: str, value: Any, *, minimum: int = 1) -> tuple[int, int]:
    vals = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(vals) != 2:
        raise ValueError(f"{owner}: {name} must be an int or a pair of ints, got {value!r}")
    out = []
    for v in vals:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{owner}: {name} must be an int or a pair of ints, got {value!r}")
        if v < minimum:
            raise ValueError(f"{owner}: {name} must be >= {minimum}, got {value!r}")
        out.append(int(v))
    return tuple(out)


_PAD_MODES = {"zeros": None, "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


class Conv2d(_StepModeMixin, nnx.Conv):
    """2-D convolution, channels last (an ``nnx.Conv``; SpikingJelly's ``layer.Conv2d``).

    ``y[b, i, j, o] = bias[o] + sum_{u, v, c} x_pad[b, s_h i + d_h u, s_w j + d_w v, c] K[u, v, c, o]``
    (per group). Kernel ``[kh, kw, in_channels // groups, out_channels]`` (PyTorch's ``weight``
    ``[out, in // groups, kh, kw]`` transposed ``(2, 3, 1, 0)``), initialised like PyTorch:
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, ``fan_in = in_channels // groups * kh * kw``.

    Args:
      in_channels: input channels ``C``, a positive int divisible by ``groups`` (required).
      out_channels: output channels, a positive int divisible by ``groups`` (required).
      kernel_size: an int or ``(kh, kw)`` pair of positive ints (required).
      stride: an int or pair of positive ints (default ``1``).
      padding: an int or pair (symmetric, >= 0), or ``'same'`` / ``'valid'`` (default ``0``).
      dilation: an int or pair of positive ints (default ``1``).
      groups: a positive int (default ``1``).
      bias: learn a bias, a bool (default ``True``).
      padding_mode: ``'zeros'``, ``'reflect'``, ``'replicate'`` or ``'circular'`` (default
        ``'zeros'``).
      step_mode: ``'s'`` (``[B, H, W, C]``) or ``'m'`` (``[T, B, H, W, C]``) (default ``'s'``).
      rngs: ``nnx.Rngs`` for the initialisation (keyword-only, required).
      **kwargs: passed to ``nnx.Conv`` (``dtype``, ``param_dtype``, ``precision``,
        ``kernel_init``, ``bias_init``, ...; defaults as there, except the PyTorch
        initialisers).
    """

    step_ndim = 4
    step_layout = "[B, H, W, C]"

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", step_mode: str = "s", *, rngs: nnx.Rngs,
                 **kwargs: Any):
        owner = type(self).__name__
        in_channels = C.positive_int(owner, "in_channels", in_channels)
        out_channels = C.positive_int(owner, "out_channels", out_channels)
        groups = C.positive_int(owner, "groups", groups)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{owner}: in_channels ({in_channels}) and out_channels "
                             f"({out_channels}) must be divisible by groups ({groups})")
        kernel_size = _pair(owner, "kernel_size", kernel_size)
        stride = _pair(owner, "stride", stride)
        dilation = _pair(owner, "dilation", dilation)
        padding_mode = C.choice(tuple(_PAD_MODES))(owner, "padding_mode", padding_mode)
        if isinstance(padding, str):
            padding = C.choice(("same", "valid"))(owner, "padding", padding)
            if padding == "same" and stride != (1, 1):
                raise ValueError(f"{owner}: padding='same' needs stride 1 (as in PyTorch), got "
                                 f"stride={stride}")
            pads = ("SAME" if padding == "same" else "VALID")
        else:
            ph, pw = _pair(owner, "padding", padding, minimum=0)
            pads = ((ph, ph), (pw, pw))
        self.padding_mode = padding_mode
        # non-zero padding modes pad explicitly before a VALID convolution
        self._explicit_pad = None
        if _PAD_MODES[padding_mode] is not None and pads != "VALID":
            if pads == "SAME":
                total = [d * (k - 1) for d, k in zip(dilation, kernel_size)]
                pads = tuple((t // 2, t - t // 2) for t in total)
            self._explicit_pad = pads
            pads = "VALID"
        fan_in = in_channels // groups * kernel_size[0] * kernel_size[1]
        kwargs.setdefault("kernel_init", _torch_uniform(fan_in))
        kwargs.setdefault("bias_init", _torch_uniform(fan_in))
        nnx.Conv.__init__(self, in_channels, out_channels, kernel_size, strides=stride,
                          padding=pads, kernel_dilation=dilation, feature_group_count=groups,
                          use_bias=C.boolean(owner, "bias", bias), rngs=rngs, **kwargs)
        self.step_mode = _check_step_mode(owner, step_mode)

    def _forward(self, x: Array) -> Array:
        if self._explicit_pad is not None:
            (t, b), (l, r) = self._explicit_pad
            x = jnp.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), mode=_PAD_MODES[self.padding_mode])
        return nnx.Conv.__call__(self, x)


class BatchNorm2d(_StepModeMixin, nnx.Module):
    """Batch normalisation over every axis but the channel (last) axis, PyTorch conventions
    (SpikingJelly's ``layer.BatchNorm2d``).

    Training (``use_running_average=False``): ``y = (x - mu_B) / sqrt(var_B + eps) * weight + bias``
    with the biased batch variance; ``running_mean <- (1 - m) running_mean + m mu_B``,
    ``running_var <- (1 - m) running_var + m var_B * n / (n - 1)`` (unbiased), ``m = momentum``
    (``None``: ``1 / num_batches_tracked``, the cumulative average). Eval
    (``use_running_average=True``, ``model.eval()``): the running statistics. With
    ``step_mode='m'`` the statistics are over ``T*B*H*W``.

    Args:
      num_features: channels ``C``.
      eps: added to the variance, > 0 (default ``1e-5``).
      momentum: weight of the new batch in the running statistics, in ``[0, 1]``, or ``None``
        for the cumulative average (default ``0.1``, as PyTorch; Flax's ``nnx.BatchNorm`` uses
        ``1 - momentum`` and the biased variance).
      affine: learn ``weight`` and ``bias``, a bool (default ``True``).
      track_running_stats: keep running statistics, a bool (default ``True``).
      step_mode: ``'s'`` (``[B, H, W, C]``) or ``'m'`` (``[T, B, H, W, C]``) (default ``'s'``).
      use_running_average: NNX train/eval flag (keyword-only, default ``False``: training).
      rngs: accepted for symmetry with the other layers (unused).
    """

    step_ndim = 4
    step_layout = "[B, H, W, C]"
    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, step_mode: str = "s", *,
                 use_running_average: bool = False, rngs: nnx.Rngs | None = None):
        owner = type(self).__name__
        self.num_features = C.positive_int(owner, "num_features", num_features)
        self.eps = C.greater(0.0)(owner, "eps", eps)
        self.momentum = None if momentum is None else C.in_range(
            0.0, 1.0, low_open=False, high_open=False)(owner, "momentum", momentum)
        self.affine = C.boolean(owner, "affine", affine)
        self.track_running_stats = C.boolean(owner, "track_running_stats", track_running_stats)
        self.use_running_average = C.boolean(owner, "use_running_average", use_running_average)
        self.step_mode = _check_step_mode(owner, step_mode)
        c = self.num_features
        self.weight = nnx.Param(jnp.ones((c,), jnp.float32)) if affine else nnx.data(None)
        self.bias = nnx.Param(jnp.zeros((c,), jnp.float32)) if affine else nnx.data(None)
        if track_running_stats:
            self.running_mean = nnx.BatchStat(jnp.zeros((c,), jnp.float32))
            self.running_var = nnx.BatchStat(jnp.ones((c,), jnp.float32))
            self.num_batches_tracked = nnx.BatchStat(jnp.zeros((), jnp.int32))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = nnx.data(None)

    def _forward(self, x: Array) -> Array:
        owner = type(self).__name__
        if x.shape[-1] != self.num_features:
            raise ValueError(f"{owner}: expected {self.num_features} channels on the last axis, "
                             f"got shape {tuple(x.shape)}")
        axes = tuple(range(x.ndim - 1))
        xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        stats = (self.running_mean, self.running_var, self.num_batches_tracked)
        if self.use_running_average and self.track_running_stats:
            assert stats[0] is not None and stats[1] is not None   # track_running_stats
            mean, var = stats[0].get_value(), stats[1].get_value()
            centred = xf - mean
        else:
            mean = xf.mean(axes)
            centred = xf - mean
            # d * d == square(d) exactly; its backward keeps d (already kept), not 2 d
            var = (centred * centred).mean(axes)
            if self.track_running_stats and not self.use_running_average:
                running_mean, running_var, count = stats
                assert running_mean is not None and running_var is not None and count is not None
                n = math.prod(x.shape[:-1])
                tracked = count.get_value() + 1
                m = 1.0 / tracked.astype(jnp.float32) if self.momentum is None else self.momentum
                unbiased = var * (n / max(n - 1, 1))
                sg = jax.lax.stop_gradient
                running_mean.set_value(((1 - m) * running_mean.get_value()
                                        + m * sg(mean)).astype(jnp.float32))
                running_var.set_value(((1 - m) * running_var.get_value()
                                       + m * sg(unbiased)).astype(jnp.float32))
                count.set_value(tracked)
        # y = (x - mu) * (rsqrt(var + eps) * weight) + bias: the backward keeps the centred
        # input and per-channel numbers only (no normalised copy of the input)
        scale = jax.lax.rsqrt(var + self.eps)
        if self.affine:
            weight, bias = self.weight, self.bias
            assert weight is not None and bias is not None          # affine
            return (centred * (scale * weight.get_value()) + bias.get_value()).astype(x.dtype)
        return (centred * scale).astype(x.dtype)


def _pool_padding(owner: str, size: tuple[int, ...], kernel: tuple[int, int],
                  stride: tuple[int, int], pad: tuple[int, int], dilation: tuple[int, int],
                  ceil_mode: bool) -> tuple[tuple[tuple[int, int], ...], tuple[int, ...]]:
    """PyTorch's pooling output size and the (left, right) padding giving it; ``extra`` is the
    right overhang added by ``ceil_mode`` (outside the explicit padding)."""
    pads, extra = [], []
    for n, k, s, p, d in zip(size, kernel, stride, pad, dilation):
        span = d * (k - 1) + 1
        if n + 2 * p < span:
            raise ValueError(f"{owner}: the input ({size}) is smaller than the window after "
                             f"padding (kernel {kernel}, dilation {dilation}, padding {pad})")
        num = n + 2 * p - span
        out = (-(-num // s) if ceil_mode else num // s) + 1
        if ceil_mode and (out - 1) * s >= n + p:   # the last window must start inside the input
            out -= 1
        right = max((out - 1) * s + span - (n + 2 * p), 0)
        pads.append((p, p + right))
        extra.append(right)
    return tuple(pads), tuple(extra)


class _Pool2d(_StepModeMixin, nnx.Module):
    step_ndim = 4
    step_layout = "[B, H, W, C]"

    def __init__(self, kernel_size: Any, stride: Any, padding: Any, dilation: Any,
                 ceil_mode: bool, step_mode: str):
        owner = type(self).__name__
        self.kernel_size = _pair(owner, "kernel_size", kernel_size)
        self.stride = self.kernel_size if stride is None else _pair(owner, "stride", stride)
        self.padding = _pair(owner, "padding", padding, minimum=0)
        self.dilation = _pair(owner, "dilation", dilation)
        for k, p, d in zip(self.kernel_size, self.padding, self.dilation):
            if p > (d * (k - 1) + 1) // 2:   # PyTorch's limit
                raise ValueError(f"{owner}: padding must be at most half the (dilated) kernel "
                                 f"size, got padding={padding}, kernel_size={kernel_size}")
        self.ceil_mode = C.boolean(owner, "ceil_mode", ceil_mode)
        self.step_mode = _check_step_mode(owner, step_mode)

    def _window(self, x: Array, init: Any, op: Callable, pads: tuple) -> Array:
        return jax.lax.reduce_window(x, init, op, (1, *self.kernel_size, 1), (1, *self.stride, 1),
                                     ((0, 0), *pads, (0, 0)),
                                     window_dilation=(1, *self.dilation, 1))


def _tiles(x: Array, kernel: tuple[int, int]) -> Array:
    """``[B, H, W, C]`` (``H``, ``W`` multiples of the kernel) -> ``[B, Ho, Wo, C, kh * kw]``:
    the non-overlapping windows, each window's positions in row-major order."""
    (kh, kw), (b, h, w, c) = kernel, x.shape
    return x.reshape(b, h // kh, kh, w // kw, kw, c).transpose(0, 1, 3, 5, 2, 4).reshape(
        b, h // kh, w // kw, c, kh * kw)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _tiled_max(x: Array, kernel: tuple[int, int]) -> Array:
    """Max over non-overlapping windows that tile ``x`` (stride = kernel). Its backward keeps
    only the position of each window's maximum (the first, as ``reduce_window``'s gradient:
    ties are common in spike maps), as int8 at the output's size, instead of the input or
    XLA's select-and-scatter index arrays (on the CPU four int32 per input element): a spiking
    CNN then needs less memory than its ReLU twin (``benchmarks/RESULTS.md``)."""
    return jnp.max(_tiles(x, kernel), axis=-1)


def _tiled_max_fwd(x: Array, kernel: tuple[int, int]) -> tuple[Array, Array]:
    t = _tiles(x, kernel)
    where = jnp.argmax(t, axis=-1).astype(jnp.int8 if t.shape[-1] <= 127 else jnp.int32)
    return jnp.max(t, axis=-1), checkpoint_name(where, _POOL_POSITIONS)


def _tiled_max_bwd(kernel: tuple[int, int], where: Array, g: Array) -> tuple[Array]:
    # built in the input's layout [B, Ho, kh, Wo, kw, C] from broadcasts alone: one elementwise
    # pass, no window-major intermediate and no transpose of it (a second input-sized buffer)
    (kh, kw), (b, ho, wo, c) = kernel, g.shape
    position = (jnp.arange(kh, dtype=where.dtype)[:, None, None] * kw
                + jnp.arange(kw, dtype=where.dtype)[None, None, :])          # [kh, 1, kw]
    hit = where[:, :, None, :, None, :] == position[..., None]
    gx = jnp.where(hit, g[:, :, None, :, None, :], jnp.zeros((), g.dtype))
    return (gx.reshape(b, ho * kh, wo * kw, c),)


_tiled_max.defvjp(_tiled_max_fwd, _tiled_max_bwd)


class MaxPool2d(_Pool2d):
    """Max pooling over ``H, W`` of ``[B, H, W, C]`` (SpikingJelly's ``layer.MaxPool2d``).

    ``y[b, i, j, c] = max_{u, v} x_pad[b, s_h i + d_h u, s_w j + d_w v, c]`` with ``-inf`` padding;
    output size ``floor`` (or with ``ceil_mode`` ``ceil``) of
    ``(H + 2 p - d (k - 1) - 1) / s + 1``, as PyTorch.

    Args:
      kernel_size: an int or pair of positive ints (required).
      stride: an int or pair of positive ints (default ``None``: ``kernel_size``).
      padding: an int or pair, ``>= 0`` (default ``0``).
      dilation: an int or pair of positive ints (default ``1``).
      return_indices: must be ``False`` (not supported; default ``False``).
      ceil_mode: round the output size up, a bool (default ``False``).
      step_mode: ``'s'`` (``[B, H, W, C]``) or ``'m'`` (``[T, B, H, W, C]``) (default ``'s'``).
    """

    preserves_binary = True

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
                 return_indices: bool = False, ceil_mode: bool = False, step_mode: str = "s"):
        if return_indices:
            raise ValueError(f"{type(self).__name__}: return_indices=True is not supported")
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode, step_mode)

    def _forward(self, x: Array) -> Array:
        pads, _ = _pool_padding(type(self).__name__, x.shape[1:3], self.kernel_size, self.stride,
                                self.padding, self.dilation, self.ceil_mode)
        # a Python scalar init makes this the differentiable reduce_window_max primitive
        low = -np.inf if jnp.issubdtype(x.dtype, jnp.floating) else int(jnp.iinfo(x.dtype).min)
        if self.stride == self.kernel_size and self.dilation == (1, 1):   # windows tile
            if any(p != (0, 0) for p in pads):
                x = jnp.pad(x, ((0, 0), *pads, (0, 0)), constant_values=low)
            (kh, kw), (h, w) = self.kernel_size, x.shape[1:3]
            # rows past the last window are dropped (their gradient is zero)
            return _tiled_max(x[:, :h - h % kh, :w - w % kw], self.kernel_size)
        return self._window(x, low, jax.lax.max, pads)


class AvgPool2d(_Pool2d):
    """Average pooling over ``H, W`` of ``[B, H, W, C]`` (SpikingJelly's ``layer.AvgPool2d``).

    ``y = (sum of the window over the zero-padded input) / D``, ``D`` = ``divisor_override`` if
    given, else the number of window positions inside the padded input
    (``count_include_pad=True``) or inside the input only (``False``); the ``ceil_mode``
    overhang never counts. Output size as :class:`MaxPool2d` (no dilation), as PyTorch.

    Args:
      kernel_size: an int or pair of positive ints (required).
      stride: an int or pair of positive ints (default ``None``: ``kernel_size``).
      padding: an int or pair, ``>= 0`` (default ``0``).
      ceil_mode: round the output size up, a bool (default ``False``).
      count_include_pad: count the zero padding in the divisor, a bool (default ``True``).
      divisor_override: a positive int divisor, or ``None`` (default ``None``).
      step_mode: ``'s'`` (``[B, H, W, C]``) or ``'m'`` (``[T, B, H, W, C]``) (default ``'s'``).
    """

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0,
                 ceil_mode: bool = False, count_include_pad: bool = True,
                 divisor_override: int | None = None, step_mode: str = "s"):
        super().__init__(kernel_size, stride, padding, 1, ceil_mode, step_mode)
        owner = type(self).__name__
        self.count_include_pad = C.boolean(owner, "count_include_pad", count_include_pad)
        self.divisor_override = C.optional_positive_int(owner, "divisor_override",
                                                        divisor_override)

    def _forward(self, x: Array) -> Array:
        h, w = x.shape[1:3]
        pads, extra = _pool_padding(type(self).__name__, (h, w), self.kernel_size, self.stride,
                                    self.padding, self.dilation, self.ceil_mode)
        dtype = jnp.promote_types(x.dtype, jnp.float32)
        total = self._window(x.astype(dtype), 0.0, jax.lax.add, pads)
        if self.divisor_override is not None:
            return (total / self.divisor_override).astype(x.dtype)
        # count of window cells: ones on the input (and on the padding if count_include_pad)
        ones = np.ones((1, h, w, 1), np.float32)
        if self.count_include_pad:
            (ph, pw) = self.padding
            ones = np.pad(ones, ((0, 0), (ph, ph), (pw, pw), (0, 0)), constant_values=1.0)
            pads_c = tuple((0, e) for e in extra)
        else:
            pads_c = pads
        count = jax.lax.reduce_window(jnp.asarray(ones), 0.0, jax.lax.add,
                                      (1, *self.kernel_size, 1), (1, *self.stride, 1),
                                      ((0, 0), *pads_c, (0, 0)))
        return (total / count.astype(dtype)).astype(x.dtype)


def _adaptive_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``A[o, i] = 1 / len`` on PyTorch's adaptive window ``[floor(o n_in / n_out),
    ceil((o + 1) n_in / n_out))``."""
    a = np.zeros((n_out, n_in), np.float64)
    for o in range(n_out):
        start, end = (o * n_in) // n_out, -(-((o + 1) * n_in) // n_out)
        a[o, start:end] = 1.0 / (end - start)
    return a


class AdaptiveAvgPool2d(_StepModeMixin, nnx.Module):
    """Adaptive average pooling of ``[B, H, W, C]`` to ``[B, H', W', C]``
    (SpikingJelly's ``layer.AdaptiveAvgPool2d``).

    ``y[b, o, p, c] = mean_{i in I_o, j in J_p} x[b, i, j, c]`` with PyTorch's windows
    ``I_o = [floor(o H / H'), ceil((o + 1) H / H'))`` (and ``J_p`` likewise).

    Args:
      output_size: ``H'`` = ``W'`` (an int) or ``(H', W')``; ``None`` keeps that size.
      step_mode: ``'s'`` (``[B, H, W, C]``) or ``'m'`` (``[T, B, H, W, C]``) (default ``'s'``).
    """

    step_ndim = 4
    step_layout = "[B, H, W, C]"

    def __init__(self, output_size: Any, step_mode: str = "s"):
        owner = type(self).__name__
        sizes = tuple(output_size) if isinstance(output_size, (tuple, list)) else (
            output_size, output_size)
        if len(sizes) != 2:
            raise ValueError(f"{owner}: output_size must be an int or a pair, got {output_size!r}")
        self.output_size = tuple(None if s is None else C.positive_int(owner, "output_size", s)
                                 for s in sizes)
        self.step_mode = _check_step_mode(owner, step_mode)

    def _forward(self, x: Array) -> Array:
        h, w = x.shape[1:3]
        oh, ow = (h if self.output_size[0] is None else self.output_size[0],
                  w if self.output_size[1] is None else self.output_size[1])
        dtype = jnp.promote_types(x.dtype, jnp.float32)
        ah = jnp.asarray(_adaptive_matrix(h, oh), dtype)
        aw = jnp.asarray(_adaptive_matrix(w, ow), dtype)
        y = jnp.einsum("bhwc,oh,pw->bopc", x.astype(dtype), ah, aw,
                       precision=jax.lax.Precision.HIGHEST)
        return y.astype(x.dtype)


class Flatten(_StepModeMixin, nnx.Module):
    """Flatten axes ``start_dim .. end_dim`` of one step (SpikingJelly's ``layer.Flatten``).

    In ``step_mode='m'`` the axes count within one step (time is folded into the batch first),
    as in the reference. Channels last: ``[B, H, W, C] -> [B, H*W*C]`` orders features
    ``(h, w, c)``, not PyTorch's ``(c, h, w)``; a ``Linear`` after it with weights ported from
    PyTorch needs its input features permuted.

    Args:
      start_dim: first flattened axis of one step's ``[B, *]`` (negative counts from the end;
        default ``1``).
      end_dim: last flattened axis (default ``-1``).
      step_mode: ``'s'`` or ``'m'``.
    """

    preserves_binary = True

    def __init__(self, start_dim: int = 1, end_dim: int = -1, step_mode: str = "s"):
        owner = type(self).__name__
        for name, v in (("start_dim", start_dim), ("end_dim", end_dim)):
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"{owner}: {name} must be an int, got {v!r}")
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)
        self.step_mode = _check_step_mode(owner, step_mode)

    def _forward(self, x: Array) -> Array:
        nd = x.ndim
        start = self.start_dim + nd if self.start_dim < 0 else self.start_dim
        end = self.end_dim + nd if self.end_dim < 0 else self.end_dim
        if not (0 <= start < nd and 0 <= end < nd) or start > end:
            raise ValueError(f"{type(self).__name__}: start_dim={self.start_dim}, end_dim="
                             f"{self.end_dim} do not fit an input of shape {tuple(x.shape)}")
        return x.reshape(x.shape[:start] + (-1,) + x.shape[end + 1:])


# --- long sequences: chunked over time ---------------------------------------------------------

class Chunked(nnx.Module):
    """A network run over chunks of the time axis, each chunk rematerialised in the backward
    pass, so that training memory grows sublinearly in ``T``
    (:func:`snnjax.functional.chunked_forward`).

    ``y_seq = module(x_seq)`` in value (the same spikes unless a membrane lies within rounding
    of the threshold; membranes and gradients to fp32 rounding), computed as ``(S_{k+1}, y_k) = module|S_k(x_seq[k c : (k+1) c])`` over the
    chunks ``k`` (``c = chunk``; a shorter last chunk when ``chunk`` does not divide ``T``), the
    neuron states ``S_k`` carried from chunk to chunk; afterwards ``module``'s neurons hold the
    final states, as after ``module(x_seq)``. Memory: the forward pass keeps the ``T / c``
    boundary states (one neuron state each), the backward pass recomputes one chunk at a time
    (one chunk's activations alive, ``c / T`` of the unchunked network's); the cost is one extra
    forward pass. ``c ~ sqrt(T)`` gives ``O(sqrt(T))`` memory.

    The rule: ``module`` maps ``[T, B, *] -> [T, B, *']`` step by step, built from snnjax
    neurons and layers or containers without state of their own (only declared neuron states
    are carried). A module that changes other state during a call (batch norm in training mode,
    dropout drawing keys in training, ``store_v_seq=True`` recording) raises ``ValueError``.

    Args:
      module: the ``nnx.Module`` to run (e.g. ``Linear -> LIFNode(step_mode='m') -> ...``).
      chunk: time steps per chunk (a positive int).
      unroll: chunks per iteration of the loop over chunks (a positive int, or ``True``: no
        loop); see :func:`snnjax.functional.chunked_forward`. Default 1.

    Input ``x_seq``: ``[T, B, *]``; output ``[T, B, *']``.
    """

    def __init__(self, module: nnx.Module, chunk: int, unroll: int | bool = 1):
        owner = type(self).__name__
        if not isinstance(module, nnx.Module):
            raise TypeError(f"{owner}: module must be a flax.nnx.Module, got {module!r}")
        self.chunk = C.positive_int(owner, "chunk", chunk)
        self.unroll = C.positive_int_or_true(owner, "unroll", unroll)
        self.module = module

    def __call__(self, x_seq: Any) -> Any:
        return functional.chunked_forward(self.module, x_seq, self.chunk, unroll=self.unroll,
                                          owner=type(self).__name__)


__all__ = ["AdaptiveAvgPool2d", "AvgPool2d", "BatchNorm2d", "Chunked", "Conv2d", "Dropout",
           "Flatten", "Linear", "MaxPool2d", "MultiStepContainer", "Remat", "SeqToANNContainer",
           "dropout_mask"]
