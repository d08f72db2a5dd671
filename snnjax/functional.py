"""Network-level helpers (SpikingJelly's ``activation_based.functional`` counterparts)."""
from __future__ import annotations

import functools
from typing import Any, Callable, Sequence, cast

import jax
import jax.numpy as jnp
from flax import nnx

from snnjax import _checks as C
from snnjax import kernels
from snnjax.neuron.base import STEP_MODES, MemoryModule, NeuronState, StateSequence
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


def _leaf_names(state: Any) -> list[str]:
    """``'layer/name'`` of every leaf of an ``nnx.State``, in ``tree_leaves`` order."""
    def key(k: Any) -> str | None:
        if isinstance(k, jax.tree_util.GetAttrKey):
            return None if k.name == "value" else k.name
        return str(getattr(k, "key", getattr(k, "idx", k)))
    return ["/".join(s for s in map(key, path) if s is not None)
            for path, _ in jax.tree_util.tree_leaves_with_path(state)]


def chunked_forward(model: nnx.Module, x_seq: Any, chunk: int, *, unroll: int | bool = 1,
                    policy: Callable | None = None, owner: str = "chunked_forward") -> Any:
    """Run ``model`` on ``x_seq[T, B, *]`` in chunks of ``chunk`` time steps, every chunk
    rematerialised in the backward pass; values as ``model(x_seq)``, memory sublinear in ``T``.

    With ``n = T // chunk`` full chunks and a remainder of ``r = T - n * chunk`` steps:
    ``S_0`` = the neuron states ``model`` holds (broadcast to their batch shapes),
    ``(S_{k+1}, y_k) = model|S_k (x_seq[k c : (k+1) c])`` for ``k < n`` (a ``lax.scan`` over the
    chunks, state in the carry), then the remainder chunk from ``S_n``;
    ``y = concat(y_0, ..., y_{n-1}, y_rem)`` ``[T, B, *']``. Afterwards every neuron of ``model``
    holds its final state, as after ``model(x_seq)``. Each chunk runs under ``jax.checkpoint``:
    the forward pass keeps only the chunk boundary states ``S_k`` (``n`` copies of the neuron
    state, e.g. ``[B, H]`` per hidden layer) besides the inputs and parameters; the backward pass
    recomputes one chunk at a time, so at most one chunk's activations (``chunk / T`` of the
    unchunked network's) are alive. The price is one extra forward pass of the network.
    ``chunk ~ sqrt(T)`` makes the memory ``O(sqrt(T))``.

    Values are those of the unchunked call up to fp32 rounding (layers see ``chunk * B`` rows
    instead of ``T * B``; parameter gradients are summed chunk by chunk, a different order of
    the same fp32 additions): the same spikes (unless a membrane lies within rounding of the
    threshold), membranes and gradients to ~1e-6 relative.

    The rule: ``model`` maps ``[T, B, *] -> [T, B, *']`` time step by time step (no mixing
    across time other than through neuron states), is built from snnjax neurons (any
    ``step_mode``; multi-step ones in ``step_mode='m'``) and layers or containers without state
    of their own. Only neuron state (the variables declared with ``register_memory``, e.g.
    ``v``; a :class:`~snnjax.layer.Dropout` mask) is carried. Anything else that a call changes
    (batch norm statistics in training mode, a dropout layer drawing keys in training, state
    recording with ``store_v_seq=True``, a layer with time-wide statistics) cannot be carried
    and raises ``ValueError`` naming the variable: put such layers in eval mode, or run them
    outside the chunked part.

    Args:
      model: an ``nnx.Module`` (called as ``model(x_chunk)``).
      x_seq: the input ``[T, B, *]`` (an array, or a pytree of arrays sharing ``T``).
      chunk: time steps per chunk, a positive int; ``chunk >= T`` is one rematerialised chunk.
      unroll: chunks per iteration of the ``lax.scan`` over chunks (a positive int, or ``True``
        for all of them: no loop). Unrolling trades memory for time: on the H200 the SHD-shaped
        step with ``chunk=128, unroll=True`` took 0.56 ms instead of 0.85 ms but 275 MiB of temp
        memory instead of 159 MiB, since XLA may then schedule the chunks' recomputations
        together (``benchmarks/RESULTS.md``). Default 1.
      policy: optional ``jax.checkpoint`` policy for what a chunk may save (default ``None``:
        nothing but its inputs).
      owner: the name used in error messages.

    Returns:
      The output ``[T, B, *']`` (a pytree like ``model``'s).
    """
    chunk = C.positive_int(owner, "chunk", chunk)
    unroll = C.positive_int_or_true(owner, "unroll", unroll)
    if not isinstance(model, nnx.Module):
        raise TypeError(f"{owner}: model must be a flax.nnx.Module, got {type(model).__name__}")
    x_seq = jax.tree_util.tree_map(jnp.asarray, x_seq)
    leaves = jax.tree_util.tree_leaves(x_seq)
    if not leaves or any(a.ndim < 2 for a in leaves) or len({a.shape[0] for a in leaves}) != 1:
        raise ValueError(f"{owner}: x_seq must be [T, B, *] (every leaf with the same T >= 1), "
                         f"got shapes {[tuple(a.shape) for a in leaves]}")
    T = leaves[0].shape[0]
    if T < 1:
        raise ValueError(f"{owner}: x_seq has T = 0 time steps (T >= 1 needed)")
    for path, m in nnx.iter_modules(model):
        if isinstance(m, MemoryModule) and m._recording():
            raise ValueError(f"{owner}: {type(m).__name__} at {'/'.join(map(str, path)) or '.'} "
                             f"records its states ({m.record_flag}=True), which cannot be "
                             f"carried over chunks; set {m.record_flag}=False (or run unchunked)")

    graphdef, carried, rest = nnx.split(model, NeuronState, ...)
    names = _leaf_names(rest)
    # recordings and parameters are exempt: a container's checkpoint (spike storage) hands
    # the layers new parameter arrays of the same values; a forward pass never updates them
    seq_leaf = [isinstance(v, (StateSequence, nnx.Param)) for v in jax.tree_util.tree_leaves(
        rest, is_leaf=lambda v: isinstance(v, nnx.Variable))]

    called: dict = {}   # path -> _exact, as a call leaves it in each neuron it runs

    def values(m: MemoryModule) -> list:
        return ([getattr(m, d.name).get_value() for d in m._memories]
                + [v.get_value() for v in m.state_seq.values()])

    def run(carried: Any, rest: Any, xc: Any) -> tuple[Any, Any]:
        """One chunk from the states ``carried``: ``(states after, output)``."""
        before = jax.tree_util.tree_leaves(rest)
        copy = nnx.merge(graphdef, carried, rest)
        neurons = [(p, m) for p, m in nnx.iter_modules(copy) if isinstance(m, MemoryModule)]
        old = {p: values(m) for p, m in neurons}
        with kernels.under_checkpoint():       # every chunk runs under jax.checkpoint
            y = copy(xc)
        for p, m in neurons:
            if any(a is not b for a, b in zip(old[p], values(m))):
                called[p] = m._exact
        _, new_carried, new_rest = nnx.split(copy, NeuronState, ...)
        after = jax.tree_util.tree_leaves(new_rest)
        changed = [n for n, a, b, s in zip(names, before, after, seq_leaf) if a is not b and not s]
        if len(after) != len(before) or changed:
            raise ValueError(f"{owner}: a call of the model changes {changed or 'its variables'}, "
                             f"which is not neuron state and cannot be carried over chunks (only "
                             f"the neurons' declared states are): batch statistics in training "
                             f"mode, a dropout layer drawing keys, or another stateful layer; put "
                             f"it in eval mode (model.eval()) or run it unchunked")
        length = jax.tree_util.tree_leaves(xc)[0].shape[0]
        for a in jax.tree_util.tree_leaves(y):
            if a.ndim < 1 or a.shape[0] != length:
                raise ValueError(f"{owner}: the model must map [T, B, *] to [T, B, *'] (time "
                                 f"first); a chunk of {length} steps gave shape {a.shape}")
        return new_carried, y

    def run_at(carried: Any, rest: Any, x_seq: Any, start: Any, size: int) -> tuple[Any, Any]:
        """The chunk ``x_seq[start : start + size]``, sliced inside the checkpoint (a sliced
        input given to it would be saved for the backward pass, i.e. the whole input again)."""
        return run(carried, rest, jax.tree_util.tree_map(
            lambda a: jax.lax.dynamic_slice_in_dim(a, start, size, axis=0), x_seq))

    # the neuron states at the shapes (and dtypes) a call leaves them: the scan carry's type
    shapes = jax.eval_shape(functools.partial(run_at, size=min(chunk, T)), carried, rest,
                            x_seq, 0)[0]
    state = jax.tree_util.tree_map(lambda v, s: jnp.broadcast_to(v, s.shape).astype(s.dtype),
                                   carried, shapes)
    n, r = divmod(T, chunk)
    outs = []
    if n:
        body_fn = jax.checkpoint(functools.partial(run_at, size=chunk), prevent_cse=False,
                                 policy=policy)

        def body(state: Any, k: Array) -> tuple[Any, Any]:
            return body_fn(state, rest, x_seq, k * chunk)

        state, ys = jax.lax.scan(body, state, jnp.arange(n), unroll=unroll)
        outs.append(jax.tree_util.tree_map(lambda a: a.reshape((n * chunk,) + a.shape[2:]), ys))
    if r:
        state, y_rem = jax.checkpoint(functools.partial(run_at, size=r), policy=policy)(
            state, rest, x_seq, n * chunk)
        outs.append(y_rem)
    out = outs[0] if len(outs) == 1 else jax.tree_util.tree_map(
        lambda *a: jnp.concatenate(a, axis=0), *outs)

    nnx.update(model, state)
    for path, m in nnx.iter_modules(model):   # as a call leaves them: exact shapes, no recording
        if path in called and isinstance(m, MemoryModule):
            m._exact = called[path]
            m._clear_recording()
    return out


__all__ = ["chunk_multi_step_forward", "chunked_forward", "detach_net", "init_net_state", "memory_modules",
           "multi_step_forward",
           "reset_net", "seq_to_ann_forward", "set_step_mode",
           "first_spike_index", "firing_rate_mse_loss", "kernel_dot_product",
           "spike_similar_loss", "temporal_efficient_training_cross_entropy"]
