"""64-bit mode end to end: training, evaluation and attacks with ``jax_enable_x64``.

x64 is process-global, so the run happens in a fresh subprocess; the other tests never see it.
Parameters follow the mode: every parameter leaf is float64 there, float32 in this (32-bit) process.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flowclass as fc
from flowclass.bijectors import ActNorm, InvertibleConv1x1, LogitTransform


def param_dtypes(x_dtype=np.float32) -> dict[str, list[str]]:
    """The dtypes of every variable leaf of the models whose parameters must follow the mode: a trained
    tabular flow, a trained FNN, a tabular flow with bfloat16 conditioners, and a small image flow with every
    parametrised image layer (ActNorm, 1x1 conv, conv and gated-conv conditioners) on ``x_dtype`` pixels."""

    def dtypes(tree):
        return sorted({str(leaf.dtype) for leaf in jax.tree.leaves(tree)})

    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 2)).astype(x_dtype)
    y = (np.arange(32) % 2).astype(np.int32)
    flow = fc.tabular_realnvp(2, 2, num_couplings=2, hidden=(8,), means=((-2.0, 0.0), (2.0, 0.0)))
    flow_state = fc.create_train_state(flow, jax.random.key(0), x, optax.adam(1e-2), fc.flow_nll)
    flow_state, _ = fc.train_step(flow_state, (x, y))
    fnn_state = fc.create_train_state(fc.FNN(2, hidden=(8,)), jax.random.key(0), x, optax.adam(1e-2),
                                      fc.cross_entropy)
    fnn_state, _ = fc.train_step(fnn_state, (x, y))
    bf16 = fc.tabular_realnvp(2, 2, num_couplings=2, hidden=(8,), dtype=jnp.bfloat16)
    image = fc.FlowClassifier(fc.Chain([
        LogitTransform(), ActNorm(), InvertibleConv1x1(),
        fc.AffineCoupling(fc.ConvNet((4,)), mask_type="checkerboard", parity=0),
        fc.AffineCoupling(fc.GatedConvNet(4, num_blocks=1), mask_type="checkerboard", parity=1),
    ]), fc.ClassGaussians(2, (4, 4, 1)), input_shape=(4, 4, 1))
    pixels = jnp.asarray(rng.uniform(0.1, 0.9, size=(2, 4, 4, 1)), x_dtype)
    return {
        "flow_params": dtypes(flow_state.params), "flow_variables": dtypes(flow_state.variables),
        "flow_opt_state": dtypes([leaf for leaf in jax.tree.leaves(flow_state.opt_state)
                                  if jnp.issubdtype(leaf.dtype, jnp.floating)]),
        "fnn_params": dtypes(fnn_state.params),
        "bf16_flow_params": dtypes(jax.eval_shape(bf16.init, jax.random.key(0), x[:1])["params"]),
        "image_params": dtypes(jax.eval_shape(image.init, jax.random.key(0), pixels)["params"]),
    }


SCRIPT = textwrap.dedent(
    """
    import functools, json
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp, numpy as np, optax
    import flowclass as fc
    from flowclass import attacks, robustness
    from flowclass.data import moons_splits, train_val_split
    from tests.test_x64 import param_dtypes

    (x, y), _ = moons_splits(0.1, n_samples=600, n_train=500)
    x = x.astype(np.float64)
    train, val = train_val_split(x, y, val_fraction=0.2, seed=0)
    means = ((-2.0, 0.0), (2.0, 0.0))
    model = fc.tabular_realnvp(2, 2, num_couplings=2, hidden=(16,), means=means)
    state = fc.create_train_state(model, jax.random.key(0), x[:64], optax.adam(3e-3), fc.flow_nll)
    state, aux = fc.train_step(state, (x[:64], y[:64]))
    traced = []  # the epoch runner traces the loss once in 64-bit mode too (the loop index's dtype)
    counting = lambda apply_fn, variables, xb, yb: traced.append(1) or fc.flow_nll(apply_fn, variables, xb, yb)
    counted = fc.create_train_state(model, jax.random.key(0), x[:64], optax.adam(3e-3), counting)
    traced.clear()
    fc.EpochRunner(counted, train, batch_size=50)
    runner_loss_traces = len(traced)
    result = fc.fit(state, train, val, key=jax.random.key(1), progress=False,
                    config=fc.TrainConfig(epochs=2, batch_size=50, checkpoint_every_s=0.0))
    metrics = fc.evaluate(result.state, *val)
    variables = result.state.variables
    apply = result.state.apply_fn
    log_lik = apply(variables, val[0][:8], method="class_log_likelihoods")
    z, log_det = apply(variables, val[0][:8], method="encode")
    # float64 closed form: log N(z; mu_k, I) + log|det|
    mu = np.asarray(means, np.float64)
    z64, log_det64 = np.asarray(z, np.float64), np.asarray(log_det, np.float64)
    exact = -0.5 * ((z64[:, None, :] - mu[None]) ** 2).sum(-1) - np.log(2 * np.pi) + log_det64[:, None]
    logits_fn = functools.partial(apply, variables)
    pgd = attacks.pgd_trajectories(logits_fn, val[0][:5], val[1][:5], eps=0.3, step_size=0.1, steps=3)
    robust = robustness.pgd_robust_accuracy(logits_fn, val[0][:16], val[1][:16], eps=0.3, steps=3,
                                            key=jax.random.key(2), bounds=(-4.0, 4.0))
    print(json.dumps({
        "x64": bool(jax.config.jax_enable_x64),
        "runner_loss_traces": runner_loss_traces,
        "step_loss": str(aux["loss"].dtype),
        "history_val_loss": [float(v) for v in result.history["val_loss"]],
        "history_dtype": str(result.history["val_loss"].dtype),
        "epochs_run": result.epochs_run,
        "eval_loss": metrics["loss"], "eval_accuracy": metrics["accuracy"],
        "log_lik_dtype": str(log_lik.dtype), "z_dtype": str(z.dtype), "log_det_dtype": str(log_det.dtype),
        "means_dtype": str(apply(variables, method="class_means").dtype),
        "log_lik_max_abs_err": float(np.max(np.abs(np.asarray(log_lik) - exact))),
        "logits_dtype": str(fc.predict_logits(apply, variables, val[0][:4]).dtype),
        "pgd_inputs_dtype": str(pgd.inputs.dtype), "pgd_probs_dtype": str(pgd.probs.dtype),
        "pgd_finite": bool(np.all(np.isfinite(pgd.inputs)) and np.all(np.isfinite(pgd.probs))),
        "robust_adversarial_dtype": str(robust.adversarial.dtype),
        "robust_finite": bool(np.all(np.isfinite(robust.adversarial)) and np.all(np.isfinite(robust.margin))),
        "params_finite": all(bool(np.all(np.isfinite(leaf))) for leaf in jax.tree.leaves(result.state.params)),
        "fit_params_dtypes": sorted({str(leaf.dtype) for leaf in jax.tree.leaves(result.state.params)}),
        "param_dtypes": param_dtypes(np.float64),
    }))
    """
)


@pytest.fixture(scope="module")
def x64_run():
    env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests.test_x64 importable
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600,
                          cwd=root)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_fit_and_evaluate_run_in_64_bit_mode(x64_run):
    assert x64_run["x64"] and x64_run["epochs_run"] == 2
    assert x64_run["runner_loss_traces"] == 1  # one trace of the step per epoch runner, as in 32-bit mode
    assert x64_run["step_loss"] == "float64" and x64_run["history_dtype"] == "float64"
    assert x64_run["params_finite"]
    losses = x64_run["history_val_loss"]
    assert all(map(float.__eq__, losses, losses)) and losses[-1] < losses[0]  # finite, and it learns
    assert x64_run["eval_loss"] == pytest.approx(min(losses), rel=1e-12)  # the selected epoch, re-evaluated
    assert 0.5 < x64_run["eval_accuracy"] <= 1.0


def test_log_densities_are_float64_and_match_the_closed_form(x64_run):
    for name in ("log_lik_dtype", "z_dtype", "log_det_dtype", "logits_dtype"):
        assert x64_run[name] == "float64", name
    # float64 means give the closed form to rounding; float32 means (distributions.py) would be ~1e-6 off
    tolerance = 1e-10 if x64_run["means_dtype"] == "float64" else 1e-5
    assert x64_run["log_lik_max_abs_err"] < tolerance


def test_attacks_run_in_64_bit_mode(x64_run):
    assert x64_run["pgd_inputs_dtype"] == "float64" and x64_run["pgd_probs_dtype"] == "float64"
    assert x64_run["pgd_finite"]
    assert x64_run["robust_adversarial_dtype"] == "float64" and x64_run["robust_finite"]


def test_parameters_are_float64_in_64_bit_mode(x64_run):
    """Flax's Dense/Conv/LayerNorm default to float32 parameters; ours follow the mode (nets.default_param_dtype)."""
    assert x64_run["fit_params_dtypes"] == ["float64"]
    dtypes = x64_run["param_dtypes"]
    assert len(dtypes) == 6 and dtypes == dict.fromkeys(dtypes, ["float64"]), dtypes


def test_parameters_are_float32_without_64_bit_mode():
    assert not jax.config.jax_enable_x64
    dtypes = param_dtypes()
    assert len(dtypes) == 6 and dtypes == dict.fromkeys(dtypes, ["float32"]), dtypes
