r"""Exchange of models with NIR, the Neuromorphic Intermediate Representation (``nir`` >= 1.0).

``to_nir(model, x_seq)`` writes a feed-forward snnjax model as a ``nir.NIRGraph``;
``from_nir(graph)`` builds a multi-step snnjax model (``[T, B, *] -> [T, B, *]``) from one. The
``nir`` package is optional (``pip install 'snnjax[nir]'``) and is imported only when these
functions run.

**Time.** NIR neurons are ODEs in continuous time and NIR stores no time step. snnjax's neurons
are the discrete updates of these ODEs under forward Euler with step ``dt``
(``v[t] = v[t-1] + dt * dv/dt``), the mapping of SpikingJelly's NIR exporter and importer (same
default ``dt = 1e-4``), so graphs move between snnjax, SpikingJelly and snnTorch. With
``H`` the charged membrane, ``X`` the input, ``V_r`` = ``v_reset``:

================================================  ===============================================
snnjax (discrete, one step)                       NIR node (continuous) and its parameters
================================================  ===============================================
``IFNode``: ``H = V + X``                         ``IF``: ``dv/dt = R I``; ``r = 1/dt``
``LIFNode(decay_input=True)``:                    ``LIF``: ``tau_n dv/dt = (v_leak - v) + R I``;
``H = V + (X - (V - V_r)) / tau``                 ``tau_n = tau dt``, ``r = 1``, ``v_leak = V_r``
``LIFNode(decay_input=False)``:                   ``LIF`` with ``tau_n = tau dt``, ``r = tau``,
``H = V - (V - V_r) / tau + X``                   ``v_leak = V_r``
``ParametricLIFNode``: as LIF with                exported as that ``LIF`` (the current ``w``);
``1/tau = sigmoid(w)``                            imported back as a ``LIFNode``
``CUBALIFNode``: ``C' = c_decay C + X``,          ``CubaLIF``: ``tau_syn dI/dt = -I + w_in S``,
``H = v_decay V + C'``                            ``tau_mem dv/dt = (v_leak - v) + R I``;
                                                  ``tau_syn = dt/(1 - c_decay)``,
                                                  ``w_in = tau_syn/dt``,
                                                  ``tau_mem = dt/(1 - v_decay)``,
                                                  ``r = tau_mem/dt``, ``v_leak = 0``
``NonSpikingLIFNode`` (``decode=None``):          ``LI``: ``tau_n dv/dt = (v_leak - v) + R I``;
``V = V + (X - V) / tau``, output ``V``           ``tau_n = tau dt``, ``r = 1``, ``v_leak = 0``
``NonSpikingIFNode`` (``decode=None``):           ``I``: ``dv/dt = R I``; ``r = 1/dt``
``V = V + X``, output ``V``
================================================  ===============================================

Check, for LIF: Euler gives ``v + (dt / tau_n) (v_leak - v + r x) = v + (v_leak - v + r x) / tau``,
which is snnjax's charge for ``r = 1`` and, for ``r = tau``, ``v + (V_r - v) / tau + x``. In
CubaLIF the current is updated first and the membrane takes the updated current (as in
SpikingJelly and snnTorch): ``I' = I + (dt/tau_syn)(-I + w_in x) = c_decay I + x``, then
``v' = v + (dt/tau_mem)(v_leak - v + r I') = v_decay v + I'``.

Firing and reset: a spike when ``H >= v_threshold`` (snnjax, SpikingJelly) while NIR writes
``v > v_threshold``; the two differ only when ``H`` equals the threshold exactly. After a spike the
membrane is set to ``v_reset`` (hard reset). Neurons start at ``v_reset`` (integrators at 0); NIR
does not fix the initial state.

What NIR cannot express raises an error naming the module or node: soft reset
(``v_reset=None``: NIR resets to a value), PSN-type neurons (they mix all time steps), any other
neuron or layer without a NIR node (max pooling, batch norm, plain functions, ...), recurrent
edges, branching graphs, per-neuron parameter values (snnjax neurons take one value per layer),
and NIR parameters outside the mapping above (e.g. an LIF ``r`` other than ``1`` or ``tau_n/dt``).
The surrogate gradient and ``detach_reset`` are training choices and are not exported; imported
neurons get the class default surrogate. ``Dropout`` layers are exported as nothing (NIR graphs
describe inference, where dropout is the identity).

**Layout.** snnjax is channels last (``[T, B, H, W, C]``), NIR channels first (``(C, H, W)`` per
sample): convolution kernels ``[kh, kw, C_in, C_out]`` are NIR weights ``(C_out, C_in, kh, kw)``
(``transpose(3, 2, 0, 1)``); ``nnx.Linear`` kernels ``(in, out)`` are NIR ``Affine`` / ``Linear``
weights ``(out, in)``. ``layer.Flatten`` orders the features of a ``[H, W, C]`` map
``(h, w, c)`` and NIR's ``Flatten`` ``(c, h, w)``: the graph keeps NIR's order and the first
``Affine``/``Linear`` after the flatten gets its weight columns permuted on export
(``W[o, (c, h, w)] = K[(h, w, c), o]``) and back on import, so both models compute the same
function. A flatten of a feature map must therefore be followed by an ``Affine``/``Linear``
(only neurons in between); otherwise an error says so.
"""
from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from snnjax import layer as L
from snnjax import neuron as N
from snnjax.neuron.base import MemoryModule

if TYPE_CHECKING:   # the optional dependency, for the annotations only
    import nir as nir_package

__all__ = ["from_nir", "to_nir"]

_RTOL = 1e-5          # relative tolerance when matching NIR parameters to the Euler mapping
_SEQ, _FOLD, _STEP = "seq", "fold", "step"   # what the leading axes of a module's input are
_EXPORTED = ("nnx.Linear / layer.Linear", "nnx.Conv / layer.Conv2d (2-D)", "layer.AvgPool2d",
             "layer.Flatten", "IFNode", "LIFNode", "ParametricLIFNode", "CUBALIFNode",
             "NonSpikingLIFNode", "NonSpikingIFNode", "Dropout (skipped)", "nnx.Sequential",
             "layer.SeqToANNContainer", "layer.MultiStepContainer")
_IMPORTED = ("Input", "Output", "Affine", "Linear", "Conv2d", "AvgPool2d", "SumPool2d",
             "Flatten", "IF", "LIF", "CubaLIF", "LI", "I", "NIRGraph (a chain)")


def _nir() -> Any:
    """The ``nir`` package, imported on first use."""
    try:
        import nir
    except ImportError as err:
        raise ImportError("snnjax.nir needs the 'nir' package (NIR >= 1.0): "
                          "pip install 'snnjax[nir]'") from err
    return nir


def _check_dt(fn: str, dt: Any) -> float:
    if isinstance(dt, (bool, np.bool_)) or not isinstance(dt, (int, float, np.number)):
        raise TypeError(f"{fn}: dt must be a positive number (seconds), got {dt!r}")
    dt = float(dt)
    if not (math.isfinite(dt) and dt > 0.0):
        raise ValueError(f"{fn}: dt must be a positive finite number (seconds), got {dt!r}")
    return dt


def _nir_shape(shape: tuple, where: str) -> tuple:
    """Per-sample snnjax shape -> NIR shape: ``(F,)`` stays, ``(H, W, C)`` -> ``(C, H, W)``."""
    if len(shape) == 1:
        return tuple(shape)
    if len(shape) == 3:
        return (shape[2], shape[0], shape[1])
    raise NotImplementedError(f"to_nir: {where} gets per-sample inputs of shape {shape}; NIR "
                              f"export supports vectors (F,) and channels-last maps (H, W, C)")


def _pair_of(value: Any) -> tuple[int, int]:
    arr = np.asarray(value).reshape(-1)
    if arr.size == 1:
        return (int(arr[0]), int(arr[0]))
    return (int(arr[0]), int(arr[1]))


# --- export ------------------------------------------------------------------------------------

class _Exporter:
    """Walks a model, appending one NIR node per module; ``pending`` holds the ``(H, W, C)`` of
    a channels-last flatten until the ``Affine``/``Linear`` that absorbs its order."""

    def __init__(self, nir: Any, dt: float):
        self.nir, self.dt = nir, dt
        self.nodes: dict[str, Any] = {}
        self.pending: tuple[tuple, str] | None = None

    # -- structure ------------------------------------------------------------------------------

    def walk(self, module: Any, x: jax.ShapeDtypeStruct, path: tuple, ctx: str
             ) -> jax.ShapeDtypeStruct:
        where = _where(path, module)
        if isinstance(module, nnx.Sequential):
            for i, child in enumerate(module.layers):
                x = self.walk(child, x, path + (str(i),), ctx)
            return x
        if isinstance(module, (L.SeqToANNContainer, L.MultiStepContainer)):
            if ctx != _SEQ:
                raise NotImplementedError(f"to_nir: {where} is nested in another container; "
                                          f"containers must receive the whole [T, B, *] sequence")
            t, b = x.shape[:2]
            folded = isinstance(module, L.SeqToANNContainer)
            y = jax.ShapeDtypeStruct(((t * b,) if folded else (b,)) + x.shape[2:], x.dtype)
            for i, child in enumerate(module.layers):
                y = self.walk(child, y, path + (str(i),), _FOLD if folded else _STEP)
            return jax.ShapeDtypeStruct((t, b) + y.shape[1:] if folded else (t,) + y.shape,
                                        y.dtype)
        if isinstance(module, (L.Dropout, nnx.Dropout)):
            return x                        # identity at inference; no NIR node
        return self.leaf(module, x, path, ctx)

    def leaf(self, module: Any, x: jax.ShapeDtypeStruct, path: tuple, ctx: str
             ) -> jax.ShapeDtypeStruct:
        where = _where(path, module)
        name = "_".join(path) if path else type(module).__name__.lower()
        mapper = self._mapper(module, where)
        self._check_mode(module, where, ctx)
        y = _abstract_call(module, x, where)
        lead = 2 if ctx == _SEQ else 1
        in_shape, out_shape = tuple(x.shape[lead:]), tuple(y.shape[lead:])
        if self.pending is not None and not isinstance(
                module, (nnx.Linear, MemoryModule, N.NonSpikingBaseNode, L.Flatten)):
            self._flatten_error(type(module).__name__ + f" ({where})")
        node = mapper(module, in_shape, out_shape, where)
        if node is not None:
            self.nodes[name] = node
        return y

    def _flatten_error(self, follower: str) -> None:
        assert self.pending is not None     # called only while a flatten is pending
        _, flat_where = self.pending
        raise NotImplementedError(
            f"to_nir: the flatten at {flat_where} orders the features of its [H, W, C] map "
            f"(h, w, c) (channels last) while NIR's Flatten orders them (c, h, w); snnjax "
            f"exports it exactly only when an Affine/Linear follows (with only neurons between), "
            f"whose weight columns it permutes; here it is followed by {follower}")

    @staticmethod
    def _check_mode(module: Any, where: str, ctx: str) -> None:
        if isinstance(module, N.NonSpikingBaseNode):
            if ctx != _SEQ:
                raise ValueError(f"to_nir: {where} integrates over time and must receive the "
                                 f"[T, B, *] sequence, not one step or a folded batch")
            return
        is_neuron = isinstance(module, MemoryModule)
        if is_neuron and ctx == _FOLD:
            raise ValueError(f"to_nir: {where} is a neuron inside a SeqToANNContainer, where time "
                             f"is folded into the batch; put neurons outside it (step_mode='m') "
                             f"or in a MultiStepContainer (step_mode='s')")
        mode = getattr(module, "step_mode", None)
        if mode is None or (isinstance(module, L.Linear)):   # Linear: the same in both modes
            return
        want = "m" if ctx == _SEQ else "s"
        if mode != want:
            got = ("the whole [T, B, *] sequence" if ctx == _SEQ
                   else "one step [B, *]" if ctx == _STEP else "a folded [T*B, *] batch")
            raise ValueError(f"to_nir: {where} has step_mode={mode!r} but receives {got}; it "
                             f"needs step_mode={want!r} there (functional.set_step_mode, or a "
                             f"layer.SeqToANNContainer / MultiStepContainer)")

    def _mapper(self, module: Any, where: str) -> Callable:
        kind = type(module)
        table = {N.IFNode: self.map_if, N.LIFNode: self.map_lif,
                 N.ParametricLIFNode: self.map_lif, N.CUBALIFNode: self.map_cuba,
                 N.NonSpikingLIFNode: self.map_li, N.NonSpikingIFNode: self.map_i,
                 L.AvgPool2d: self.map_pool, L.Flatten: self.map_flatten}
        if kind in table:
            return table[kind]
        if isinstance(module, nnx.Linear):
            return self.map_linear
        if isinstance(module, nnx.Conv):
            return self.map_conv
        if isinstance(module, (N.PSN, N.MaskedPSN, N.SlidingPSN)):
            raise NotImplementedError(
                f"to_nir: {where} is a Parallel Spiking Neuron ({kind.__name__}): its output "
                f"mixes the inputs of all time steps through a learned matrix, which no NIR "
                f"neuron (an ODE in time) expresses")
        if isinstance(module, L.MaxPool2d):
            raise NotImplementedError(f"to_nir: {where}: NIR has no max pooling node (only "
                                      f"SumPool2d and AvgPool2d); use layer.AvgPool2d")
        if isinstance(module, (L.BatchNorm2d, nnx.BatchNorm)):
            raise NotImplementedError(f"to_nir: {where}: NIR has no batch norm node; fold it "
                                      f"into the preceding convolution's weight and bias first")
        hint = (" (the __call__ of a custom module cannot be read: write the model as an "
                "nnx.Sequential of supported layers)" if isinstance(module, nnx.Module) else "")
        raise NotImplementedError(f"to_nir: {where} has no NIR equivalent{hint}; supported: "
                                  f"{', '.join(_EXPORTED)}")

    # -- layers ---------------------------------------------------------------------------------

    def map_linear(self, m: nnx.Linear, in_shape: tuple, out_shape: tuple, where: str) -> Any:
        if len(in_shape) != 1:
            raise NotImplementedError(f"to_nir: {where} acts on the last axis of per-sample "
                                      f"inputs {in_shape}; NIR's Affine maps vectors: flatten "
                                      f"first (layer.Flatten)")
        kernel = np.asarray(m.kernel.get_value())          # (in, out)
        weight = kernel.T
        if self.pending is not None:                        # (h, w, c) rows -> NIR (c, h, w)
            (h, w, c), _ = self.pending
            weight = kernel.reshape(h, w, c, -1).transpose(3, 2, 0, 1).reshape(kernel.shape[1], -1)
            self.pending = None
        weight = np.ascontiguousarray(weight)
        if m.bias is None or m.bias.get_value() is None:
            return self.nir.Linear(weight=weight)
        return self.nir.Affine(weight=weight, bias=np.asarray(m.bias.get_value()))

    def map_conv(self, m: nnx.Conv, in_shape: tuple, out_shape: tuple, where: str) -> Any:
        if len(m.kernel_size) != 2 or len(in_shape) != 3:
            raise NotImplementedError(f"to_nir: {where}: only 2-D convolutions of [H, W, C] "
                                      f"maps are exported (kernel {m.kernel_size}, input "
                                      f"{in_shape})")
        if m.feature_group_count != 1:
            raise NotImplementedError(f"to_nir: {where}: grouped convolution (groups="
                                      f"{m.feature_group_count}); NIR's Conv2d type inference "
                                      f"assumes groups=1")
        if isinstance(m, L.Conv2d) and m.padding_mode != "zeros":
            raise NotImplementedError(f"to_nir: {where}: padding_mode={m.padding_mode!r}; NIR "
                                      f"convolutions are zero-padded")
        if _pair_of(m.input_dilation or 1) != (1, 1) or m.mask is not None:
            raise NotImplementedError(f"to_nir: {where}: input dilation and kernel masks have no "
                                      f"NIR equivalent")
        strides = _pair_of(m.strides or 1)
        dilation = _pair_of(m.kernel_dilation or 1)
        padding = _conv_padding(m, in_shape[:2], strides, dilation, where)
        kernel = np.asarray(m.kernel.get_value())           # [kh, kw, C_in, C_out]
        weight = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))
        bias = (np.asarray(m.bias.get_value()) if m.bias is not None and
                m.bias.get_value() is not None else np.zeros(weight.shape[0], weight.dtype))
        return self.nir.Conv2d(input_shape=tuple(in_shape[:2]), weight=weight, stride=strides,
                               padding=padding, dilation=dilation, groups=1, bias=bias)

    def map_pool(self, m: L.AvgPool2d, in_shape: tuple, out_shape: tuple, where: str) -> Any:
        if m.ceil_mode:
            raise NotImplementedError(f"to_nir: {where}: ceil_mode=True has no NIR equivalent")
        args = dict(kernel_size=np.array(m.kernel_size), stride=np.array(m.stride),
                    padding=np.array(m.padding))
        if m.divisor_override == 1:
            node = self.nir.SumPool2d(**args)
        elif m.divisor_override is None and (m.count_include_pad or not any(m.padding)):
            node = self.nir.AvgPool2d(**args)
        else:
            raise NotImplementedError(
                f"to_nir: {where}: AvgPool2d(count_include_pad={m.count_include_pad}, "
                f"divisor_override={m.divisor_override}, padding={m.padding}) has no NIR "
                f"equivalent (NIR: the window mean over the zero-padded input, or the sum)")
        nir_in, nir_out = _nir_shape(in_shape, where), _nir_shape(out_shape, where)
        node.input_type = {"input": np.array(nir_in)}
        node.output_type = {"output": np.array(nir_out)}
        return node

    def map_flatten(self, m: L.Flatten, in_shape: tuple, out_shape: tuple, where: str) -> Any:
        nd = len(in_shape) + 1                               # one step [B, *] with its batch
        start = m.start_dim + nd if m.start_dim < 0 else m.start_dim
        end = m.end_dim + nd if m.end_dim < 0 else m.end_dim
        if (start, end) != (1, nd - 1) and len(in_shape) > 1:
            raise NotImplementedError(f"to_nir: {where}: Flatten(start_dim={m.start_dim}, "
                                      f"end_dim={m.end_dim}) flattens part of a sample; only "
                                      f"the whole sample (start_dim=1, end_dim=-1) is exported")
        nir_in = _nir_shape(in_shape, where)
        if len(in_shape) == 3:
            if self.pending is not None:
                self._flatten_error(f"another flatten ({where})")
            self.pending = (tuple(in_shape), where)
        return self.nir.Flatten(input_type={"input": np.array(nir_in)}, start_dim=0, end_dim=-1)

    # -- neurons --------------------------------------------------------------------------------

    def _full(self, shape: tuple, value: float) -> np.ndarray:
        return np.full(shape, float(value), dtype=np.float64)

    @staticmethod
    def _hard_reset(m: Any, where: str) -> float:
        if m.v_reset is None:
            raise NotImplementedError(
                f"to_nir: {where} uses the soft reset (v_reset=None: V = H - v_threshold after a "
                f"spike); NIR neurons only reset to a value (v_reset), so a soft reset cannot be "
                f"expressed; use a hard reset (a number for v_reset)")
        return float(m.v_reset)

    def map_if(self, m: N.IFNode, in_shape: tuple, out_shape: tuple, where: str) -> Any:
        v_reset, shape = self._hard_reset(m, where), _nir_shape(in_shape, where)
        return self.nir.IF(r=self._full(shape, 1.0 / self.dt),
                           v_threshold=self._full(shape, m.v_threshold),
                           v_reset=self._full(shape, v_reset))

    def map_lif(self, m: Any, in_shape: tuple, out_shape: tuple, where: str) -> Any:
        v_reset, shape = self._hard_reset(m, where), _nir_shape(in_shape, where)
        tau = float(np.asarray(m.tau))          # PLIF: 1 / sigmoid(w), its current value
        return self.nir.LIF(tau=self._full(shape, tau * self.dt),
                            r=self._full(shape, 1.0 if m.decay_input else tau),
                            v_leak=self._full(shape, v_reset),
                            v_threshold=self._full(shape, m.v_threshold),
                            v_reset=self._full(shape, v_reset))

    def map_cuba(self, m: N.CUBALIFNode, in_shape: tuple, out_shape: tuple, where: str) -> Any:
        v_reset, shape = self._hard_reset(m, where), _nir_shape(in_shape, where)
        for name in ("c_decay", "v_decay"):
            if getattr(m, name) >= 1.0:
                raise NotImplementedError(f"to_nir: {where}: {name}=1 (no decay) needs an "
                                          f"infinite NIR time constant; it must be in [0, 1)")
        tau_syn, tau_mem = self.dt / (1.0 - m.c_decay), self.dt / (1.0 - m.v_decay)
        return self.nir.CubaLIF(tau_syn=self._full(shape, tau_syn),
                                tau_mem=self._full(shape, tau_mem),
                                r=self._full(shape, tau_mem / self.dt),
                                v_leak=self._full(shape, 0.0),
                                v_threshold=self._full(shape, m.v_threshold),
                                v_reset=self._full(shape, v_reset),
                                w_in=self._full(shape, tau_syn / self.dt))

    def _decode_none(self, m: Any, where: str, node: str) -> None:
        if m.decode is not None:
            raise NotImplementedError(
                f"to_nir: {where} has decode={m.decode!r} (a reduction over time); NIR's {node} "
                f"outputs its membrane at every step; use decode=None")

    def map_li(self, m: N.NonSpikingLIFNode, in_shape: tuple, out_shape: tuple, where: str) -> Any:
        self._decode_none(m, where, "LI")
        shape = _nir_shape(in_shape, where)
        return self.nir.LI(tau=self._full(shape, m.tau * self.dt), r=self._full(shape, 1.0),
                           v_leak=self._full(shape, 0.0))

    def map_i(self, m: N.NonSpikingIFNode, in_shape: tuple, out_shape: tuple, where: str) -> Any:
        self._decode_none(m, where, "I")
        return self.nir.I(r=self._full(_nir_shape(in_shape, where), 1.0 / self.dt))


def _where(path: tuple, module: Any) -> str:
    if isinstance(module, nnx.Module):
        label = type(module).__name__
    else:   # a plain function (nnx.relu, a lambda, ...)
        label = f"function {getattr(module, '__name__', None) or repr(module)}"
    return f"module {'.'.join(path) or '<model>'!r} ({label})"


def _conv_padding(m: nnx.Conv, hw: tuple, strides: tuple, dilation: tuple, where: str) -> Any:
    pad = m.padding
    if isinstance(pad, str):
        if pad.upper() not in ("SAME", "VALID"):
            raise NotImplementedError(f"to_nir: {where}: padding={pad!r} has no NIR equivalent")
        kernel = tuple((k - 1) * d + 1 for k, d in zip(m.kernel_size, dilation))
        pairs = jax.lax.padtype_to_pads(hw, kernel, strides, pad.upper())
    elif isinstance(pad, int):
        pairs = [(pad, pad)] * 2
    else:
        pairs = [(p, p) if isinstance(p, int) else tuple(p) for p in pad]
    pairs = [tuple(int(v) for v in p) for p in pairs]
    if all(lo == hi for lo, hi in pairs):
        return (pairs[0][0], pairs[1][0])
    if isinstance(pad, str) and pad.upper() == "SAME" and strides == (1, 1):
        return "same"
    raise NotImplementedError(f"to_nir: {where}: asymmetric padding {pairs}; NIR pads "
                              f"symmetrically (or 'same' with stride 1)")


def _abstract_call(module: Any, x: jax.ShapeDtypeStruct, where: str) -> jax.ShapeDtypeStruct:
    """The module's output shape on ``x``, from an abstract call on a copy (``module`` and its
    state are left as they are; a copied neuron starts from its initial state)."""
    graphdef, state = nnx.split(module)

    def forward(state: Any, x: Any) -> Any:
        copy = nnx.merge(graphdef, state)
        if callable(getattr(copy, "reset", None)):
            copy.reset()
        return copy(x)

    try:
        return jax.eval_shape(forward, state, x)
    except Exception as err:   # any failure of the module on this shape, with its context
        raise ValueError(f"to_nir: {where} cannot take an input of shape {tuple(x.shape)}: "
                         f"{type(err).__name__}: {err}") from err


def to_nir(model: nnx.Module, sample_input: Any, dt: float = 1e-4) -> "nir_package.NIRGraph":
    """Export a feed-forward snnjax model as a NIR graph (mapping in the module docstring).

    The model is an ``nnx.Sequential`` (nested ones too), a ``layer.SeqToANNContainer`` /
    ``layer.MultiStepContainer``, or one supported layer or neuron, mapping ``[T, B, *]`` to
    ``[T, B, *]`` (neurons with ``step_mode='m'``, or ``'s'`` inside a ``MultiStepContainer``).
    Shapes come from an abstract pass (``jax.eval_shape``) on copies of the modules: nothing is
    computed and the model and its state are left unchanged. Nodes are named by their path in
    the model (``"0"``, ``"1_0"``, ...), with ``"input"`` and ``"output"``; the graph's metadata
    records ``dt`` and ``"forward_euler"`` (informative only).

    Args:
      model: the snnjax model.
      sample_input: the model's input sequence ``[T, B, *]`` (an array or a
        ``jax.ShapeDtypeStruct``; only its shape and dtype are used), e.g. ``[T, B, H, W, C]``.
      dt: the time step in seconds that turns the discrete updates into NIR's time constants.

    Returns:
      A ``nir.NIRGraph``: ``Input`` of the per-sample shape in NIR's layout (``(C, H, W)``),
      one node per module, ``Output``, chained by edges.

    Raises:
      NotImplementedError: a module or setting NIR cannot express (soft reset, PSN, max
        pooling, ...), naming the module.
      ValueError: a non-positive ``dt``, an input that is not ``[T, B, *]``, a module that
        cannot take its input or has the wrong ``step_mode``.
    """
    dt = _check_dt("to_nir", dt)
    nir = _nir()
    if not isinstance(model, nnx.Module):
        raise TypeError(f"to_nir: model must be a flax.nnx.Module, got {type(model).__name__}")
    shape = tuple(np.shape(sample_input))
    if len(shape) < 3:
        raise ValueError(f"to_nir: sample_input must be the input sequence [T, B, *] (at least "
                         f"3 axes), got shape {shape}")
    dtype = getattr(sample_input, "dtype", None)
    if dtype is None:                      # a nested list (np.dtype is falsy: test for None)
        dtype = np.asarray(sample_input).dtype
    x = jax.ShapeDtypeStruct(shape, dtype)
    exporter = _Exporter(nir, dt)
    y = exporter.walk(model, x, (), _SEQ)
    if exporter.pending is not None:
        exporter._flatten_error("the graph's output")
    in_type = np.array(_nir_shape(shape[2:], "the model input"))
    out_type = np.array(_nir_shape(tuple(y.shape[2:]), "the model output"))
    names = list(exporter.nodes)
    nodes = {"input": nir.Input(input_type=in_type), **exporter.nodes,
             "output": nir.Output(output_type=out_type)}
    chain = ["input"] + names + ["output"]
    edges = list(zip(chain[:-1], chain[1:]))
    return nir.NIRGraph(nodes=nodes, edges=edges,
                        metadata={"dt": dt, "discretization": "forward_euler",
                                  "exporter": "snnjax"})


# --- import ------------------------------------------------------------------------------------

def _chain(nir: Any, graph: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """The nodes between the graph's Input and Output, in order (nested graphs spliced in)."""
    nodes, edges = graph.nodes, [tuple(e) for e in graph.edges]
    inputs = [k for k, n in nodes.items() if isinstance(n, nir.Input)]
    outputs = [k for k, n in nodes.items() if isinstance(n, nir.Output)]
    label = f"subgraph {prefix[:-1]!r}" if prefix else "the graph"
    if len(inputs) != 1 or len(outputs) != 1:
        raise NotImplementedError(f"from_nir: {label} has Input nodes {inputs} and Output nodes "
                                  f"{outputs}; snnjax imports graphs with exactly one of each")
    succ: dict[str, list[str]] = {k: [] for k in nodes}
    pred: dict[str, list[str]] = {k: [] for k in nodes}
    for a, b in edges:
        for end in (a, b):
            if end not in nodes:
                raise ValueError(f"from_nir: edge ({a!r}, {b!r}) of {label} names the unknown "
                                 f"node {prefix}{end}")
        succ[a].append(b)
        pred[b].append(a)
    back = _back_edge(nodes, succ)
    if back is not None:
        raise NotImplementedError(
            f"from_nir: recurrent edge {prefix}{back[0]!r} -> {prefix}{back[1]!r} in {label}: "
            f"the graph has a cycle (recurrence), which snnjax's feed-forward chain of layers "
            f"cannot express")
    order, cur = [], inputs[0]
    while cur != outputs[0]:
        nxt = succ[cur]
        if len(nxt) != 1:
            what = "no outgoing edge" if not nxt else f"{len(nxt)} outgoing edges {nxt}"
            raise NotImplementedError(f"from_nir: node {prefix}{cur!r} has {what}; snnjax "
                                      f"imports chains (one edge into and out of every node)")
        cur = nxt[0]
        if len(pred[cur]) != 1:
            raise NotImplementedError(f"from_nir: node {prefix}{cur!r} has {len(pred[cur])} "
                                      f"incoming edges {pred[cur]}; snnjax imports chains")
        if cur != outputs[0]:
            order.append(cur)
    rest = set(nodes) - set(order) - {inputs[0], outputs[0]}
    if rest:
        raise NotImplementedError(f"from_nir: nodes {sorted(prefix + r for r in rest)} of "
                                  f"{label} are not on the path from Input to Output")
    out: list[tuple[str, Any]] = [(prefix + "<input>", nodes[inputs[0]])] if not prefix else []
    for name in order:
        node = nodes[name]
        if isinstance(node, nir.NIRGraph):
            out.extend(_chain(nir, node, f"{prefix}{name}."))
        else:
            out.append((prefix + name, node))
    if not prefix:
        out.append((prefix + "<output>", nodes[outputs[0]]))
    return out


def _back_edge(nodes: dict, succ: dict) -> tuple[str, str] | None:
    """An edge closing a cycle (depth-first search), or ``None``."""
    color = {k: 0 for k in nodes}                # 0 new, 1 on the stack, 2 done
    for root in nodes:
        if color[root]:
            continue
        stack = [(root, iter(succ[root]))]
        color[root] = 1
        while stack:
            node, children = stack[-1]
            for child in children:
                if color[child] == 1:
                    return node, child
                if color[child] == 0:
                    color[child] = 1
                    stack.append((child, iter(succ[child])))
                    break
            else:
                color[node] = 2
                stack.pop()
    return None


class _Importer:
    """Turns the chain into modules, tracking the NIR shape and a pending flatten order."""

    def __init__(self, nir: Any, dt: float):
        self.nir, self.dt = nir, dt
        self.shape: tuple = ()
        self.pending: tuple[tuple, str] | None = None    # (C, H, W) and the flatten's name
        self.items: list[tuple[str, Any]] = []           # ('layer' | 'neuron', module)

    def fail_shape(self, name: str, node: Any, expected: Any) -> None:
        raise ValueError(f"from_nir: node {name!r} ({type(node).__name__}) expects input shape "
                         f"{tuple(np.asarray(expected).tolist())} but receives "
                         f"{self.shape}: the graph's shapes do not chain")

    def add(self, name: str, node: Any) -> None:
        nir = self.nir
        table = {nir.Affine: self.affine, nir.Linear: self.affine, nir.Conv2d: self.conv,
                 nir.AvgPool2d: self.pool, nir.SumPool2d: self.pool, nir.Flatten: self.flatten,
                 nir.IF: self.if_, nir.LIF: self.lif, nir.CubaLIF: self.cuba, nir.LI: self.li,
                 nir.I: self.i}
        handler = table.get(type(node))
        if handler is None:
            raise NotImplementedError(f"from_nir: node {name!r} is a NIR {type(node).__name__}, "
                                      f"which snnjax cannot map; supported: "
                                      f"{', '.join(_IMPORTED)}")
        is_neuron = type(node) in (nir.IF, nir.LIF, nir.CubaLIF, nir.LI, nir.I)
        if self.pending is not None and not (
                is_neuron or type(node) in (nir.Affine, nir.Linear, nir.Flatten)):
            self.flatten_error(f"node {name!r} ({type(node).__name__})")
        try:
            module = handler(name, node)
        except (ValueError, TypeError) as err:
            if str(err).startswith("from_nir"):
                raise
            raise type(err)(f"from_nir: node {name!r} ({type(node).__name__}): {err}") from err
        if module is not None:
            self.items.append(("neuron" if is_neuron else "layer", module))

    def flatten_error(self, follower: str) -> None:
        assert self.pending is not None     # called only while a flatten is pending
        raise NotImplementedError(
            f"from_nir: the Flatten node {self.pending[1]!r} orders features (c, h, w) while "
            f"snnjax's channels-last Flatten orders them (h, w, c); snnjax imports it exactly "
            f"only when an Affine/Linear follows (with only neurons between), whose weight "
            f"columns it permutes; here it is followed by {follower}")

    # -- layers ---------------------------------------------------------------------------------

    @staticmethod
    def _set(param: nnx.Param, value: np.ndarray) -> None:
        param.set_value(jnp.asarray(value, dtype=param.get_value().dtype))

    def affine(self, name: str, node: Any) -> nnx.Module:
        w = np.asarray(node.weight)
        if w.ndim != 2:
            raise NotImplementedError(f"from_nir: node {name!r}: weight of shape {w.shape}; only "
                                      f"2-D (out, in) weights are imported")
        n_out, n_in = w.shape
        if self.shape != (n_in,):
            self.fail_shape(name, node, (n_in,))
        kernel = w.T
        if self.pending is not None:             # NIR (c, h, w) columns -> snnjax (h, w, c) rows
            (c, h, wd), _ = self.pending
            kernel = w.reshape(n_out, c, h, wd).transpose(2, 3, 1, 0).reshape(n_in, n_out)
            self.pending = None
        has_bias = isinstance(node, self.nir.Affine)
        module = L.Linear(n_in, n_out, bias=has_bias, rngs=nnx.Rngs(0),
                          kernel_init=nnx.initializers.zeros, bias_init=nnx.initializers.zeros)
        self._set(module.kernel, kernel)
        if has_bias:
            self._set(module.bias, np.broadcast_to(np.asarray(node.bias), (n_out,)))  # pyright: ignore[reportArgumentType] (use_bias=True: a Param)
        self.shape = (n_out,)
        return module

    def conv(self, name: str, node: Any) -> nnx.Module:
        w = np.asarray(node.weight)
        if w.ndim != 4:
            raise ValueError(f"from_nir: node {name!r}: Conv2d weight must be (C_out, C_in, kh, "
                             f"kw), got shape {w.shape}")
        if int(np.asarray(node.groups)) != 1:
            raise NotImplementedError(f"from_nir: node {name!r}: grouped convolution (groups="
                                      f"{node.groups}) is not imported")
        c_out, c_in, kh, kw = w.shape
        if len(self.shape) != 3 or self.shape[0] != c_in:
            self.fail_shape(name, node, (c_in, "H", "W") if len(self.shape) != 3
                            else (c_in,) + self.shape[1:])
        if node.input_shape is not None and tuple(np.asarray(node.input_shape).tolist()) != \
                self.shape[1:]:
            self.fail_shape(name, node, (c_in,) + tuple(np.asarray(node.input_shape).tolist()))
        stride, dilation = _pair_of(node.stride), _pair_of(node.dilation)
        pad = node.padding
        if isinstance(pad, (str, bytes)):
            pad = pad.decode() if isinstance(pad, bytes) else pad
            padding: Any = pad
            pads = (0, 0) if pad == "valid" else None
        else:
            padding = pads = _pair_of(pad)
        module = L.Conv2d(c_in, c_out, (kh, kw), stride=stride, padding=padding,
                          dilation=dilation, bias=True, rngs=nnx.Rngs(0),
                          kernel_init=nnx.initializers.zeros, bias_init=nnx.initializers.zeros)
        self._set(module.kernel, w.transpose(2, 3, 1, 0))
        bias = np.zeros(c_out) if node.bias is None else np.asarray(node.bias)
        self._set(module.bias, np.broadcast_to(bias, (c_out,)))  # pyright: ignore[reportArgumentType] (use_bias=True: a Param)
        h, wd = self.shape[1:]
        if pads is None:                          # 'same' (stride 1)
            self.shape = (c_out, h, wd)
        else:
            size = [(n + 2 * p - d * (k - 1) - 1) // s + 1
                    for n, p, d, k, s in zip((h, wd), pads, dilation, (kh, kw), stride)]
            self.shape = (c_out, *size)
        return module

    def pool(self, name: str, node: Any) -> nnx.Module:
        if len(self.shape) != 3:
            self.fail_shape(name, node, ("C", "H", "W"))
        k, s, p = _pair_of(node.kernel_size), _pair_of(node.stride), _pair_of(node.padding)
        divisor = 1 if isinstance(node, self.nir.SumPool2d) else None
        module = L.AvgPool2d(k, s, p, divisor_override=divisor)
        c, h, w = self.shape
        self.shape = (c, *[(n + 2 * pp - kk) // ss + 1 for n, pp, kk, ss in zip((h, w), p, k, s)])
        return module

    def flatten(self, name: str, node: Any) -> nnx.Module | None:
        declared = node.input_type.get("input") if node.input_type else None
        if declared is not None and tuple(np.asarray(declared).tolist()) != self.shape:
            self.fail_shape(name, node, declared)
        nd = len(self.shape)
        start = node.start_dim + nd if node.start_dim < 0 else node.start_dim
        end = node.end_dim + nd if node.end_dim < 0 else node.end_dim
        if nd > 1 and (start, end) != (0, nd - 1):
            raise NotImplementedError(f"from_nir: node {name!r}: Flatten(start_dim="
                                      f"{node.start_dim}, end_dim={node.end_dim}) of a "
                                      f"{self.shape} sample flattens only part of it; snnjax "
                                      f"imports whole-sample flattens")
        if nd == 1:
            return None                           # already a vector: the identity
        if nd != 3:
            raise NotImplementedError(f"from_nir: node {name!r}: Flatten of a {self.shape} "
                                      f"sample; snnjax imports (C, H, W) maps and vectors")
        self.pending = (self.shape, name)
        self.shape = (int(np.prod(self.shape)),)
        return L.Flatten(step_mode="s")

    # -- neurons --------------------------------------------------------------------------------

    def _value(self, name: str, node: Any, field: str) -> float:
        a = np.asarray(getattr(node, field), dtype=np.float64)
        if a.shape not in (self.shape, ()) and a.size != 1:
            self.fail_shape(name, node, a.shape)
        if a.size == 0 or not np.all(a == a.reshape(-1)[0]):
            raise NotImplementedError(f"from_nir: node {name!r} ({type(node).__name__}): "
                                      f"{field} takes different values per neuron; snnjax "
                                      f"neurons take one value per layer")
        return float(a.reshape(-1)[0])

    def _expect(self, name: str, node: Any, field: str, value: float, want: dict) -> str:
        """The key of ``want`` (label -> expected value) that ``value`` matches."""
        for label, target in want.items():
            if math.isclose(value, target, rel_tol=_RTOL, abs_tol=1e-12):
                return label
        options = ", ".join(f"{target:.6g} ({label})" for label, target in want.items())
        raise NotImplementedError(
            f"from_nir: node {name!r} ({type(node).__name__}) has {field}={value:.6g}; under "
            f"forward Euler with dt={self.dt:g} snnjax can express {options} only")

    def if_(self, name: str, node: Any) -> nnx.Module:
        r = self._value(name, node, "r")
        self._expect(name, node, "r", r, {"1/dt": 1.0 / self.dt})
        return N.IFNode(v_threshold=self._value(name, node, "v_threshold"),
                        v_reset=self._value(name, node, "v_reset"), step_mode="m")

    def lif(self, name: str, node: Any) -> nnx.Module:
        tau = self._value(name, node, "tau") / self.dt
        r = self._value(name, node, "r")
        kind = self._expect(name, node, "r", r, {"decay_input=True": 1.0,
                                                 "decay_input=False: tau/dt": tau})
        v_leak, v_reset = self._value(name, node, "v_leak"), self._value(name, node, "v_reset")
        self._expect(name, node, "v_leak", v_leak, {"v_reset": v_reset})
        return N.LIFNode(tau=tau, decay_input=kind == "decay_input=True",
                         v_threshold=self._value(name, node, "v_threshold"), v_reset=v_reset,
                         step_mode="m")

    def cuba(self, name: str, node: Any) -> nnx.Module:
        tau_syn, tau_mem = (self._value(name, node, "tau_syn"),
                            self._value(name, node, "tau_mem"))
        self._expect(name, node, "w_in", self._value(name, node, "w_in"),
                     {"tau_syn/dt": tau_syn / self.dt})
        self._expect(name, node, "r", self._value(name, node, "r"),
                     {"tau_mem/dt": tau_mem / self.dt})
        self._expect(name, node, "v_leak", self._value(name, node, "v_leak"), {"0": 0.0})
        return N.CUBALIFNode(c_decay=1.0 - self.dt / tau_syn, v_decay=1.0 - self.dt / tau_mem,
                             v_threshold=self._value(name, node, "v_threshold"),
                             v_reset=self._value(name, node, "v_reset"), step_mode="m")

    def li(self, name: str, node: Any) -> nnx.Module:
        self._expect(name, node, "r", self._value(name, node, "r"), {"1": 1.0})
        self._expect(name, node, "v_leak", self._value(name, node, "v_leak"), {"0": 0.0})
        return N.NonSpikingLIFNode(tau=self._value(name, node, "tau") / self.dt)

    def i(self, name: str, node: Any) -> nnx.Module:
        self._expect(name, node, "r", self._value(name, node, "r"), {"1/dt": 1.0 / self.dt})
        return N.NonSpikingIFNode()


def from_nir(graph: "nir_package.NIRGraph | str | os.PathLike", dt: float = 1e-4
             ) -> nnx.Sequential:
    """Build a multi-step snnjax model from a NIR graph (mapping in the module docstring).

    The graph must be a chain from its ``Input`` to its ``Output`` (nested ``NIRGraph`` chains
    are spliced in). Stateless nodes become ``snnjax.layer`` layers, consecutive ones grouped
    in a ``layer.SeqToANNContainer``; neuron nodes become neurons with ``step_mode='m'``
    (``IFNode``, ``LIFNode``, ``CUBALIFNode``, ``NonSpikingLIFNode``, ``NonSpikingIFNode``;
    default surrogates), so the returned ``nnx.Sequential`` maps ``[T, B, *] -> [T, B, *]``
    with channels last: a NIR ``(C, H, W)`` input is fed as ``[T, B, H, W, C]``.

    Args:
      graph: a ``nir.NIRGraph``, or the path of a NIR file (read with ``nir.read``).
      dt: the time step in seconds the graph's time constants are read with.

    Returns:
      ``nnx.Sequential`` of the modules, in graph order.

    Raises:
      NotImplementedError: a node or configuration snnjax cannot map (the node is named):
        unknown node types, recurrent edges, branches, per-neuron parameter values, NIR
        parameters outside the forward-Euler mapping.
      ValueError: a non-positive ``dt``, shapes that do not chain (node and shapes named),
        parameters that snnjax's neurons reject (e.g. ``v_reset >= v_threshold``).
    """
    dt = _check_dt("from_nir", dt)
    nir = _nir()
    if isinstance(graph, (str, os.PathLike)):
        graph = nir.read(graph)
    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(f"from_nir: graph must be a nir.NIRGraph or a file path, got "
                        f"{type(graph).__name__}")
    chain = _chain(nir, graph)
    importer = _Importer(nir, dt)
    in_type = chain[0][1].input_type.get("input")
    if in_type is None:
        raise ValueError("from_nir: the graph's Input node has no shape")
    importer.shape = tuple(int(v) for v in np.asarray(in_type).reshape(-1))
    for name, node in chain[1:-1]:
        importer.add(name, node)
    if importer.pending is not None:
        importer.flatten_error("the graph's Output")
    out_type = chain[-1][1].output_type.get("output")
    if out_type is not None and tuple(int(v) for v in np.asarray(out_type).reshape(-1)) != \
            importer.shape:
        importer.fail_shape("output", chain[-1][1], out_type)
    modules: list[Any] = []
    group: list[Any] = []
    for kind, module in importer.items:
        if kind == "layer":
            group.append(module)
            continue
        if group:
            modules.append(L.SeqToANNContainer(*group))
            group = []
        modules.append(module)
    if group:
        modules.append(L.SeqToANNContainer(*group))
    return nnx.Sequential(*modules)
