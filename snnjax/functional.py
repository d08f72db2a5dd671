"""Network-level helpers (SpikingJelly's ``activation_based.functional`` counterparts)."""
from __future__ import annotations

from typing import Any, Callable, Sequence, cast

import jax
import jax.numpy as jnp
from flax import nnx

from snnjax.neuron.base import STEP_MODES, MemoryModule
from snnjax._losses import (first_spike_index, firing_rate_mse_loss, kernel_dot_product,
                            spike_similar_loss, temporal_efficient_training_cross_entropy)

Array = jax.Array


def _modules(model: Any):
    if isinstance(model, nnx.Module):
        it = nnx.iter_modules(model) if hasattr(nnx, "iter_modules") else model.iter_modules()
        return [m for _, m in it]
    if isinstance(model, (list, tuple)):
        return [m for item in model for m in _modules(item)]
    raise TypeError(f"model must be a flax.nnx.Module (or a list of them), got {type(model).__name__}")


def memory_modules(model: Any) -> list[MemoryModule]:
    """Every stateful neuron module inside ``model`` (depth first).

    Args:
      model: an ``nnx.Module``, or a list / tuple of them.
    """
    return [m for m in _modules(model) if isinstance(m, MemoryModule)]


def reset_net(model: Any) -> None:
    """Reset the state of every neuron in ``model`` (call between independent sequences).

    Every sub-module with a ``reset()`` method (neurons, ``layer.Dropout``, stateful encoders) is
    reset: state variables go back to their declared initial (scalar) values.

    Args:
      model: an ``nnx.Module``, or a list / tuple of them.
    """
    for m in _modules(model):
        reset = getattr(m, "reset", None)
        if callable(reset):
            reset()


def _paths(model: nnx.Module) -> dict:
    return {path: m for path, m in nnx.iter_modules(model) if isinstance(m, MemoryModule)}


def init_net_state(model: nnx.Module, *x_sample: Any) -> None:
    """Set every neuron's state to the shapes a forward pass on ``x_sample`` gives it.

    The pass is abstract (``jax.eval_shape`` on a copy: nothing in ``model`` runs or changes but
    the neuron states, which become their initial values at those shapes). Use it before
    ``nnx.scan`` over time with the model in the carry (a carry must keep its shapes) and to
    avoid a re-trace of a jitted step after the first call.

    Args:
      model: any ``nnx.Module`` containing neurons.
      x_sample: the model's input(s) for one call, e.g. ``x[0]`` (``[B, *]``) for single-step
        neurons or ``x_seq`` (``[T, B, *]``) for multi-step ones; only shapes and dtypes matter.
    """
    graphdef, state = nnx.split(model)

    def forward(state, *x):
        copy = nnx.merge(graphdef, state)
        reset_net(copy)
        copy(*x)
        return {path: (m.state, {n: v.get_value() for n, v in m.state_seq.items()})
                for path, m in _paths(copy).items()}

    shapes = jax.eval_shape(forward, state, *x_sample)
    for path, m in _paths(model).items():
        m.reset()
        state_shapes, seq_shapes = shapes[path]
        m.state = jax.tree_util.tree_map(lambda init, s: jnp.full(s.shape, init, s.dtype),
                                         m.state, state_shapes)
        for name, s in seq_shapes.items():
            m.state_seq[name].set_value(jnp.zeros(s.shape, s.dtype))


def detach_net(model: Any) -> None:
    """Stop gradients through every neuron's stored state (truncated BPTT).

    Args:
      model: an ``nnx.Module``, or a list / tuple of them.
    """
    for m in _modules(model):
        detach = getattr(m, "detach", None)
        if callable(detach):
            detach()


def set_step_mode(model: Any, step_mode: str) -> None:
    """Set ``step_mode`` (``'s'`` or ``'m'``) on every module of ``model`` that has one.

    Args:
      model: an ``nnx.Module``, or a list / tuple of them.
      step_mode: ``'s'`` (single step, ``[N, *]``) or ``'m'`` (multi-step, ``[T, N, *]``); a
        module that supports only the other one raises ``ValueError``.
    """
    if step_mode not in STEP_MODES:
        raise ValueError(f"step_mode must be one of {STEP_MODES}, got {step_mode!r}")
    for m in _modules(model):
        if isinstance(m, MemoryModule) or hasattr(m, "step_mode"):
            supported = getattr(m, "supported_step_modes", STEP_MODES)
            if step_mode not in supported:
                raise ValueError(f"{type(m).__name__} supports step_mode in {supported} only, "
                                 f"got {step_mode!r}")
            setattr(m, "step_mode", step_mode)   # any module with a step_mode attribute


def seq_to_ann_forward(x_seq: Array | Sequence[Array], stateless_module: Callable | Sequence[Callable]) -> Any:
    """Apply stateless layers to a sequence by folding time into the batch.

    ``[T, B, *] -> [T * B, *] -> module(s) -> [T, B, *']``. ``x_seq`` may be a tuple of arrays
    sharing ``[T, B]``; the module(s) then receive them as positional arguments.

    Args:
      x_seq: ``[T, B, *]``, or a tuple / list of such arrays with the same ``T`` and ``B``.
      stateless_module: a callable (e.g. an ``nnx`` layer) or a sequence of them, applied in
        order.

    Returns:
      The output(s) reshaped to ``[T, B, *']`` (a pytree of outputs keeps its structure).
    """
    xs: tuple[Array, ...] = (tuple(x_seq) if isinstance(x_seq, (tuple, list))
                             else (cast(Array, x_seq),))
    lead = xs[0].shape[:2]
    for x in xs:
        if x.ndim < 2 or x.shape[:2] != lead:
            raise ValueError(f"seq_to_ann_forward: every input must be [T, B, *] with the same T and "
                             f"B; got shapes {[tuple(x.shape) for x in xs]}")
    flat = tuple(x.reshape((lead[0] * lead[1],) + x.shape[2:]) for x in xs)
    mods: Sequence[Callable] = (stateless_module if isinstance(stateless_module, (list, tuple))
                                else (cast(Callable, stateless_module),))
    y = mods[0](*flat)
    for mod in mods[1:]:
        y = mod(y)
    return jax.tree_util.tree_map(lambda a: a.reshape(lead + a.shape[1:]), y)


def multi_step_forward(x_seq: Array, single_step_module: Callable | Sequence[Callable]) -> Array:
    """Apply single-step module(s) at every time step of ``x_seq[T, N, *]`` and stack the outputs.

    Stateful modules carry their state from step to step. This is a loop over ``T`` traced into
    the program; prefer ``step_mode='m'`` neurons, which fuse the time loop.

    Args:
      x_seq: ``[T, N, *]``.
      single_step_module: a callable or a sequence of callables applied in order at each step.

    Returns:
      ``[T, N, *']``: the per-step outputs stacked.
    """
    mods: Sequence[Callable] = (single_step_module if isinstance(single_step_module, (list, tuple))
                                else (cast(Callable, single_step_module),))
    outs = []
    for t in range(x_seq.shape[0]):
        y = x_seq[t]
        for mod in mods:
            y = mod(y)
        outs.append(y)
    return jnp.stack(outs)


def chunk_multi_step_forward(split_size: int, x_seq: Array, multi_step_module: Callable) -> Array:
    """Run a multi-step module on consecutive time chunks of ``split_size`` (state carries over).

    Args:
      split_size: time steps per chunk, a positive int (the last chunk may be shorter).
      x_seq: ``[T, N, *]``.
      multi_step_module: a callable on ``[t, N, *]`` (e.g. a ``step_mode='m'`` neuron).

    Returns:
      ``[T, N, *']``: the chunks' outputs concatenated over time.
    """
    if not isinstance(split_size, int) or split_size < 1:
        raise ValueError(f"split_size must be a positive int, got {split_size!r}")
    outs = [multi_step_module(x_seq[i:i + split_size]) for i in range(0, x_seq.shape[0], split_size)]
    return jnp.concatenate(outs)


__all__ = ["chunk_multi_step_forward", "detach_net", "init_net_state", "memory_modules",
           "multi_step_forward",
           "reset_net", "seq_to_ann_forward", "set_step_mode",
           "first_spike_index", "firing_rate_mse_loss", "kernel_dot_product",
           "spike_similar_loss", "temporal_efficient_training_cross_entropy"]
