"""Data-parallel training on 8 virtual CPU devices equals single-device training.

The device count is fixed when jax initialises, and the rest of the suite runs on one
device, so the comparison runs in a fresh interpreter (this file, run as a script) with
``XLA_FLAGS=--xla_force_host_platform_device_count=8``; the test asserts on its JSON output.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

import flowclass as fc
from flowclass.bijectors import ActNorm, AffineCoupling, Chain, FactorOut, InvertibleConv1x1, LogitTransform, Squeeze
from flowclass.nets import ConvNet, GatedConvNet

DEVICES = 8
TOLERANCE = 1e-5


def _compare() -> dict:
    """Trains each model twice with :func:`flowclass.fit` from the same state and key, on a
    1-device mesh and on an 8-device mesh; returns the largest parameter difference of each."""
    assert jax.device_count() == DEVICES, jax.devices()
    rng = np.random.default_rng(0)
    x_moons, y_moons = fc.data.make_moons(512, noise=0.1, random_state=0)
    x_images = rng.uniform(0.01, 0.99, (128, 8, 8, 1)).astype(np.float32)
    y_images = rng.integers(0, 3, 128).astype(np.int32)
    tiny_image_flow = fc.FlowClassifier(
        Chain([
            LogitTransform(),
            AffineCoupling(GatedConvNet(features=4, num_blocks=1), mask_type="checkerboard"),
            Squeeze(),
            ActNorm(),
            InvertibleConv1x1(),
            FactorOut(AffineCoupling(ConvNet((8,)), mask_type="channel", parity=1)),
        ]),
        fc.ClassGaussians(3, (4, 4, 4)),
        input_shape=(8, 8, 1),
    )
    cases = {
        "tabular": (fc.tabular_realnvp(2, 2, num_couplings=4, hidden=(32, 32), means=((-4, 0), (4, 0))),
                    x_moons, y_moons, 64),
        "image": (tiny_image_flow, x_images, y_images, 32),
    }
    report = {}
    for name, (model, x, y, batch_size) in cases.items():
        loss_fn = fc.make_flow_loss(cross_entropy_weight=1.0, nll_unit="bits_per_dim")
        params = {}
        for devices in (1, DEVICES):
            state = fc.create_train_state(model, jax.random.key(0), x[:64], optax.adam(1e-3), loss_fn)
            initial = [np.asarray(leaf) for leaf in jax.tree.leaves(state.params)]
            result = fc.fit(state, (x, y), (x[:64], y[:64]), key=jax.random.key(1),
                            mesh=fc.sharding.data_mesh(jax.devices()[:devices]), progress=False,
                            config=fc.TrainConfig(epochs=2, batch_size=batch_size))
            leaves = jax.tree.leaves(result.last_state.params)
            assert len(leaves[0].sharding.device_set) == devices
            assert int(result.last_state.step) == 2 * (len(x) // batch_size)
            params[devices] = [np.asarray(leaf) for leaf in leaves]
        report[name] = {
            "max_abs_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(params[1], params[DEVICES], strict=True)),
            "max_abs_change": max(float(np.max(np.abs(a - b))) for a, b in zip(params[1], initial, strict=True)),
        }
    return report


@pytest.mark.slow
def test_sharded_training_equals_single_device_training():
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={DEVICES}"
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    run = subprocess.run([sys.executable, str(Path(__file__))], env=env, capture_output=True, text=True,
                         timeout=300, cwd=Path(__file__).parent)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    for name, row in report.items():
        assert row["max_abs_diff"] < TOLERANCE, (name, row)
        assert row["max_abs_change"] > 100 * TOLERANCE, (name, row)  # training moved the parameters


if __name__ == "__main__":
    print(json.dumps(_compare()))
