"""Online training through time with OTTT / SLTT neurons: memory independent of T.

    python examples/online_training.py [--neuron ottt|sltt] [--T 8] [--T-big 64] [--steps 150]
    python examples/online_training.py --small          # CI-sized: a few seconds

Task: a static input (a noisy cluster sample, 32 features, 4 classes) is presented for T time
steps (as in the OTTT paper's static-image setting) to Linear -> spiking neuron -> Linear readout,
with a cross-entropy loss at every time step, ``L = sum_t CE(readout_t, y) / T``.

Online training (what these neurons are for). In training mode an OTTT/SLTT neuron detaches its
membrane between steps, so step ``t``'s loss only depends on step ``t``'s computation given the
(gradient-free) carried state. The gradient of ``L`` is therefore the sum of per-step
gradients, computed *inside* a ``lax.scan`` and accumulated in its carry:

    carry = (neuron state, presynaptic traces, grad_sum)
    for t: (loss_t, carry'), g_t = value_and_grad(step_loss)(params, carry, x); grad_sum += g_t

Nothing is differentiated through the scan, so XLA keeps no per-step residuals: memory does not
grow with T. OTTT additionally feeds the next weight layer its spike for the value and its
presynaptic trace for the weight gradient (``dL/dW = sum_t trace_t^T g_t``); SLTT uses the spike.

The script (1) checks that the online gradient equals ``jax.grad`` of the same loss through the
scan (same mathematics, memory grows with T), (2) prints XLA's compiled memory analysis of one
training step for two values of T, online vs. BPTT (``jax.grad`` through a scan of ordinary
``LIFNode`` neurons), and (3) trains online with SGD and prints the accuracy.
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from snnjax import neuron

D_IN, N_CLASSES = 32, 4


# --- the network, written with the pure neuron API ---------------------------------------------

def init_params(key: jax.Array, hidden: int) -> dict:
    k1, k2 = jax.random.split(key)
    return {"w1": jax.random.normal(k1, (D_IN, hidden)) * (2.0 / D_IN) ** 0.5,
            "b1": jnp.zeros(hidden),
            "w2": jax.random.normal(k2, (hidden, N_CLASSES)) * (1.0 / hidden) ** 0.5,
            "b2": jnp.zeros(N_CLASSES)}


def linear_with_trace(w: jax.Array, b: jax.Array, s: jax.Array, trace: jax.Array) -> jax.Array:
    """Value ``s @ w + b``; gradient w.r.t. ``w`` from the trace (``trace^T g``), w.r.t. ``s``
    through ``w`` (``g w^T``): OTTT's "replace value, keep gradient" weight layer."""
    sg = jax.lax.stop_gradient
    return (sg(s @ w) - sg(trace) @ sg(w)) + sg(trace) @ w + (s - sg(s)) @ sg(w) + b


def cross_entropy(logits: jax.Array, y: jax.Array) -> jax.Array:
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))


def make_online_step_loss(node, kind: str, T: int):
    """``step_loss(params, carry, x, y) -> (loss_t, carry')`` for one time step."""
    decay = 1.0 - 1.0 / node.tau  # the presynaptic input trace decays like the neuron's trace

    def step_loss(params, carry, x, y):
        state, in_trace = carry
        if kind == "ottt":
            in_trace = jax.lax.stop_gradient(decay * in_trace + x)
            state, (s, trace) = node.step(state, linear_with_trace(params["w1"], params["b1"], x,
                                                                   in_trace))
            logits = linear_with_trace(params["w2"], params["b2"], s, trace)
        else:  # sltt: plain layers, the neuron detaches its membrane
            state, s = node.step(state, x @ params["w1"] + params["b1"])
            logits = s @ params["w2"] + params["b2"]
        return cross_entropy(logits, y) / T, (state, in_trace)

    return step_loss


def initial_carry(node, x: jax.Array, hidden: int):
    return node.init_state(jnp.zeros((x.shape[0], hidden), x.dtype)), jnp.zeros_like(x)


def online_grad(params, x, y, *, node, kind: str, T: int):
    """Online: per-step gradients accumulated in the carry of a ``lax.scan`` (O(1) in T)."""
    step_loss = make_online_step_loss(node, kind, T)
    hidden = params["b1"].shape[0]

    def body(c, _):
        carry, g_sum, l_sum = c
        (loss, carry), g = jax.value_and_grad(step_loss, has_aux=True)(params, carry, x, y)
        return (carry, jax.tree_util.tree_map(jnp.add, g_sum, g), l_sum + loss), None

    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    (_, grads, loss), _ = jax.lax.scan(body, (initial_carry(node, x, hidden), zeros, 0.0), None,
                                       length=T)
    return loss, grads


def through_scan_grad(params, x, y, *, node, kind: str, T: int):
    """``jax.grad`` of the same per-step loss through the scan (same value, memory grows)."""
    step_loss = make_online_step_loss(node, kind, T)
    hidden = params["b1"].shape[0]

    def total(params):
        def body(carry, _):
            loss, carry = step_loss(params, carry, x, y)
            return carry, loss
        _, losses = jax.lax.scan(body, initial_carry(node, x, hidden), None, length=T)
        return losses.sum()

    return jax.value_and_grad(total)(params)


def bptt_grad(params, x, y, *, node, T: int):
    """Ordinary BPTT: ``jax.grad`` through a multi-step run of LIF neurons."""
    def total(params):
        h = jnp.broadcast_to(x @ params["w1"] + params["b1"], (T, x.shape[0], params["b1"].shape[0]))
        _, s = node.multi_step(node.init_state(h[0]), h)
        logits = s @ params["w2"] + params["b2"]
        return jax.vmap(cross_entropy, in_axes=(0, None))(logits, y).sum() / T

    return jax.value_and_grad(total)(params)


# --- data, memory report, training -------------------------------------------------------------

def make_data(key: jax.Array, n: int, centers: jax.Array) -> tuple[jax.Array, jax.Array]:
    ky, kx = jax.random.split(key)
    y = jax.random.randint(ky, (n,), 0, N_CLASSES)
    return centers[y] + jax.random.normal(kx, (n, D_IN)), y


def compiled_bytes(fn, *args) -> tuple[int, int]:
    """(temporary, argument) bytes of the compiled ``fn`` (XLA's memory analysis)."""
    ma = jax.jit(fn).lower(*args).compile().memory_analysis()
    return int(ma.temp_size_in_bytes), int(ma.argument_size_in_bytes)


def memory_report(params, x, y, *, node, lif, kind: str, Ts: tuple[int, int]) -> dict:
    rows = {}
    print(f"\ncompiled memory of one gradient computation (batch {x.shape[0]}, "
          f"hidden {params['b1'].shape[0]})")
    print(f"{'method':<34}{'T':>5}{'temp bytes':>14}{'argument bytes':>16}")
    for name, fn in [(f"online ({kind}, grads inside scan)",
                      lambda T: lambda p, x, y: online_grad(p, x, y, node=node, kind=kind, T=T)),
                     ("BPTT (LIFNode, grad through scan)",
                      lambda T: lambda p, x, y: bptt_grad(p, x, y, node=lif, T=T))]:
        for T in Ts:
            temp, arg = compiled_bytes(fn(T), params, x, y)
            rows[(name.split()[0], T)] = temp
            print(f"{name:<34}{T:>5}{temp:>14,}{arg:>16,}")
    on = [rows[("online", T)] for T in Ts]
    bp = [rows[("BPTT", T)] for T in Ts]
    print(f"online temp memory T={Ts[1]} / T={Ts[0]}: {on[1] / on[0]:.2f}x;  "
          f"BPTT: {bp[1] / bp[0]:.2f}x")
    return {"online": on, "bptt": bp}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--neuron", choices=["ottt", "sltt"], default="ottt")
    ap.add_argument("--T", type=int, default=8, help="time steps for training and the report")
    ap.add_argument("--T-big", type=int, default=64, help="second T of the memory report")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=150, help="SGD steps")
    ap.add_argument("--lr", type=float, default=0.5)
    ap.add_argument("--small", action="store_true",
                    help="CI-sized defaults (T 4 and 32, hidden 64, batch 32, 30 steps)")
    if ap.parse_known_args(argv)[0].small:  # explicit options still win over these defaults
        ap.set_defaults(T=4, T_big=32, hidden=64, batch=32, steps=30)
    args = ap.parse_args(argv)

    key = jax.random.PRNGKey(0)
    kc, kp, kt, kv = jax.random.split(key, 4)
    centers = 0.6 * jax.random.normal(kc, (N_CLASSES, D_IN))
    params = init_params(kp, args.hidden)
    node = (neuron.OTTTLIFNode(tau=2.0) if args.neuron == "ottt"
            else neuron.SLTTLIFNode(tau=2.0))  # training mode (deterministic=False)
    # BPTT baseline with the same dynamics as the online neuron, gradients through time
    lif = neuron.LIFNode(tau=2.0, decay_input=node.decay_input, v_reset=node.v_reset,
                         detach_reset=True)
    x, y = make_data(kt, args.batch, centers)

    # (1) the online gradient is exactly the gradient of the same loss through the scan
    lo, go = jax.jit(lambda p: online_grad(p, x, y, node=node, kind=args.neuron, T=args.T))(params)
    ls, gs = jax.jit(lambda p: through_scan_grad(p, x, y, node=node, kind=args.neuron,
                                                 T=args.T))(params)
    err = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree_util.tree_leaves(go),
                                                             jax.tree_util.tree_leaves(gs)))
    print(f"online vs grad-through-scan: loss {float(lo):.6f} vs {float(ls):.6f}, "
          f"max |grad difference| {err:.2e}")

    # (2) memory for two values of T
    mem = memory_report(params, x, y, node=node, lif=lif, kind=args.neuron,
                        Ts=(args.T, args.T_big))

    # (3) online training with SGD
    @jax.jit
    def train_step(params, x, y):
        loss, g = online_grad(params, x, y, node=node, kind=args.neuron, T=args.T)
        return jax.tree_util.tree_map(lambda p, g: p - args.lr * g, params, g), loss

    def accuracy(params, x, y):
        h = jnp.broadcast_to(x @ params["w1"] + params["b1"], (args.T,) + (x.shape[0], args.hidden))
        eval_node = node.__class__(tau=2.0, deterministic=True)  # eval: hard step, no detach
        _, out = eval_node.multi_step(eval_node.init_state(h[0]), h)
        return float(jnp.mean(jnp.argmax((out @ params["w2"]).sum(0), -1) == y))

    xv, yv = make_data(kv, 512, centers)
    acc0 = accuracy(params, xv, yv)
    t0, loss = time.time(), jnp.nan
    for i in range(args.steps):
        xb, yb = make_data(jax.random.fold_in(kt, i), args.batch, centers)
        params, loss = train_step(params, xb, yb)
    acc = accuracy(params, xv, yv)
    print(f"\nonline training ({args.neuron}, T={args.T}): {args.steps} SGD steps in "
          f"{time.time() - t0:.1f}s, final loss {float(loss):.4f}, "
          f"validation accuracy {acc0:.3f} -> {acc:.3f}")
    return {"grad_error": err, "memory": mem, "accuracy_before": acc0, "accuracy": acc,
            "loss": float(loss)}


if __name__ == "__main__":
    main()
