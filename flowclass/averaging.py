"""Parameter averaging: an exponential moving average (EMA) of the parameters, kept in the optimiser state.

After step ``t`` with parameters ``θ_t``, :func:`params_ema` keeps

    m_t = d · m_{t−1} + (1 − d) · θ_t,    w_t = d · w_{t−1} + (1 − d),    m_0 = w_0 = 0,

and the averaged parameters are ``θ̄_t = m_t / w_t`` (``w_t = 1 − dᵗ`` removes the bias of the zero
start, as in Adam). Living in ``opt_state``, the average is checkpointed, sharded and donated
with the rest of the train state; :func:`flowclass.fit` validates, selects and returns the
averaged parameters whenever the optimiser has one.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from flowclass._validation import check_real


class EmaState(NamedTuple):
    """``ema`` = ``m_t``, the running sum of the parameters; ``weight`` = ``w_t = 1 − dᵗ``.

    Example:
      >>> import jax.numpy as jnp
      >>> state = params_ema(0.9).init({"w": jnp.ones(3)})
      >>> state.ema["w"].tolist(), float(state.weight)
      ([0.0, 0.0, 0.0], 0.0)
    """

    ema: Any
    weight: jnp.ndarray


def params_ema(decay: float) -> optax.GradientTransformation:
    """An optax transformation that leaves the updates alone and averages the parameters they lead to.

    Put it last in an ``optax.chain`` (it averages ``params + updates``, so it must see the final
    updates); ``decay`` ``d`` in ``[0, 1)`` sets the horizon, about ``1 / (1 − d)`` steps.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> tx = optax.chain(optax.sgd(1.0), params_ema(0.5))
      >>> params = {"w": jnp.zeros(())}
      >>> opt_state = tx.init(params)
      >>> for grad in (-2.0, -2.0):  # θ: 0 → 2 → 4
      ...     updates, opt_state = tx.update({"w": jnp.asarray(grad)}, opt_state, params)
      ...     params = optax.apply_updates(params, updates)
      >>> float(params["w"]), round(float(averaged_params(opt_state)["w"]), 4)  # (0.25·2 + 0.5·4) / 0.75
      (4.0, 3.3333)
    """
    try:
        decay = check_real(decay, "decay", minimum=0.0, maximum=1.0, open_max=True)
    except ValueError:
        raise ValueError(f"decay must be in [0, 1) (a finite number); got {decay!r}.") from None

    def init(params: Any) -> EmaState:
        return EmaState(ema=jax.tree.map(jnp.zeros_like, params), weight=jnp.zeros((), jnp.float32))

    def update(updates: Any, state: EmaState, params: Any = None) -> tuple[Any, EmaState]:
        if params is None:
            raise ValueError("params_ema needs the parameters: call tx.update(grads, opt_state, params).")
        new_params = optax.apply_updates(params, updates)
        ema = jax.tree.map(lambda m, p: decay * m + (1.0 - decay) * p, state.ema, new_params)
        return updates, EmaState(ema=ema, weight=decay * state.weight + (1.0 - decay))

    return optax.GradientTransformation(init, update)


def find_ema(opt_state: Any) -> EmaState | None:
    """The :class:`EmaState` inside an optimiser state (e.g. of an ``optax.chain``), or ``None``.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> find_ema(optax.adam(1e-3).init(jnp.zeros(2))) is None
      True
      >>> type(find_ema(optax.chain(optax.adam(1e-3), params_ema(0.9)).init(jnp.zeros(2)))).__name__
      'EmaState'
    """
    is_ema = lambda node: isinstance(node, EmaState)  # noqa: E731
    found = [node for node in jax.tree.leaves(opt_state, is_leaf=is_ema) if is_ema(node)]
    return found[0] if found else None


def averaged_params(opt_state: Any) -> Any:
    """The averaged parameters ``m_t / w_t`` held in ``opt_state``; before the first step, the zeros
    of ``m_0`` (there is nothing to average yet).

    Raises ``ValueError`` when the optimiser has no :func:`params_ema`.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> tx = optax.chain(optax.sgd(0.1), params_ema(0.9))
      >>> params = {"w": jnp.ones(2)}
      >>> updates, opt_state = tx.update({"w": jnp.ones(2)}, tx.init(params), params)
      >>> [round(float(w), 4) for w in averaged_params(opt_state)["w"]]  # one step: the new parameters
      [0.9, 0.9]
    """
    state = find_ema(opt_state)
    if state is None:
        raise ValueError("opt_state keeps no parameter average: add flowclass.params_ema(decay) "
                         "at the end of the optimiser's optax.chain.")
    scale = jnp.where(state.weight > 0, 1.0 / jnp.maximum(state.weight, 1e-30), 0.0)
    return jax.tree.map(lambda m: (m * scale).astype(m.dtype), state.ema)
