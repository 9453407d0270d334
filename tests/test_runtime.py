"""flowclass.runtime: host-device flags and the tcmalloc restart of scripts."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from flowclass import runtime

SCRIPT = "import flowclass.runtime as r; r.restart_with_tcmalloc(); print(r.tcmalloc_loaded())"


def test_use_host_devices_adds_the_flag_once_and_keeps_other_flags(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    runtime.use_host_devices(4)
    assert os.environ["XLA_FLAGS"] == ("--xla_cpu_enable_fast_math=false "
                                       "--xla_force_host_platform_device_count=4")
    runtime.use_host_devices(8)  # a count already chosen (by the user or a launcher) is kept
    assert os.environ["XLA_FLAGS"].count("device_count") == 1
    with pytest.raises(ValueError, match="positive number of devices"):
        runtime.use_host_devices(0)


AVX512_CPUINFO = "processor : 0\nflags : fpu sse2 avx2 avx512f avx512vl\n"
VERSIONED = [f for f in runtime.FLAG_JAXLIB if runtime.jaxlib_knows(f)]  # the newer options this jaxlib knows


def test_use_fast_codegen_adds_each_option_once_and_keeps_the_users_choices(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_prefer_vector_width=256")
    added = runtime.use_fast_codegen(cpuinfo=AVX512_CPUINFO)
    assert added == [*runtime.REASSOCIATION_FLAGS, runtime.OPTIMIZATION_LEVEL_FLAG, *VERSIONED]  # user width stays
    assert os.environ["XLA_FLAGS"].split() == ["--xla_cpu_prefer_vector_width=256", *added]
    assert runtime.use_fast_codegen(cpuinfo=AVX512_CPUINFO) == []
    monkeypatch.setenv("XLA_FLAGS", "")
    assert runtime.use_fast_codegen(cpuinfo=AVX512_CPUINFO)[-1] == runtime.WIDE_VECTORS_FLAG
    monkeypatch.setenv("XLA_FLAGS", "")
    no_avx512 = "flags : fpu sse2 avx2\nmodel name : avx512f-less\n"
    assert runtime.use_fast_codegen(cpuinfo=no_avx512) == [*runtime.REASSOCIATION_FLAGS,
                                                            runtime.OPTIMIZATION_LEVEL_FLAG, *VERSIONED]


def test_versioned_flags_only_go_to_a_jaxlib_that_knows_them():
    convolution, scheduler = runtime.EIGEN_CONVOLUTION_FLAG, runtime.SCHEDULER_FLAG
    for version, known in [("0.4.30", set()), ("0.8.1", set()), ("0.8.2", {convolution}), ("0.9.1", {convolution}),
                           ("0.9.2rc1", {convolution, scheduler}), ("0.10.2.dev20261101", {convolution, scheduler}),
                           ("1.0.0", {convolution, scheduler}), ("unknown", set())]:
        assert {f for f in (convolution, scheduler) if runtime.jaxlib_knows(f, version)} == known, version
        assert set(runtime.fast_codegen_flags("flags : avx2", jaxlib_version=version)) == {
            *runtime.REASSOCIATION_FLAGS, runtime.OPTIMIZATION_LEVEL_FLAG, *known}, version
    assert runtime.jaxlib_knows(runtime.WIDE_VECTORS_FLAG, "0.4.30")  # an option every release knows


CONVOLUTION_SCRIPT = """
import json, jax, jax.numpy as jnp
x = jax.random.normal(jax.random.key(0), (8, 14, 14, 16))
w = 0.1 * jax.random.normal(jax.random.key(1), (3, 3, 16, 32))
def loss(x, w):
    y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.sum(jnp.tanh(y))
grads = jax.jit(jax.grad(loss, (0, 1)))
hlo = grads.lower(x, w).compile().as_text()
print(json.dumps({"ynn": "ynn_fusion" in hlo, "grads": [g.ravel()[::97].tolist() for g in grads(x, w)]}))
"""


def test_fast_codegen_keeps_convolution_gradients_off_ynnpack_with_the_same_numbers():
    """With :func:`runtime.fast_codegen_flags` XLA's process starts (a value its jaxlib does not know
    would abort it), compiles no convolution to a YNNPACK fusion, and its convolution gradients
    agree with XLA's defaults to float32 rounding."""
    results = {}
    for name, flags in [("default", ""), ("fast", " ".join(runtime.fast_codegen_flags()))]:
        env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
        out = subprocess.run([sys.executable, "-c", CONVOLUTION_SCRIPT], env=env, capture_output=True, text=True,
                             timeout=180)
        assert out.returncode == 0, out.stderr[-2000:]
        results[name] = json.loads(out.stdout.splitlines()[-1])
    if runtime.jaxlib_knows(runtime.EIGEN_CONVOLUTION_FLAG):
        assert not results["fast"]["ynn"]
    if (runtime.jaxlib_release() or (0, 0, 0)) >= (0, 10, 0):  # jaxlib 0.10 names its YNNPACK fusions so
        assert results["default"]["ynn"], "XLA's defaults no longer use YNNPACK here: the flag may be moot"
    for default, fast in zip(results["default"]["grads"], results["fast"]["grads"], strict=True):
        # each kernel-gradient entry sums 1,568 float32 terms, in another order: rounding of ~1e-5 of the largest
        np.testing.assert_allclose(fast, default, rtol=1e-4, atol=2e-5 * np.abs(default).max())


def test_fast_codegen_keeps_nan_and_inf_semantics(tmp_path):
    """The reassociation flags must not turn NaN checks or overflow into something else."""
    script = ("import jax.numpy as jnp, numpy as np\n"
              "x = jnp.array([np.nan, np.inf, -1.0, 1e30])\n"
              "print(bool(jnp.isnan(jnp.sum(x))), bool(jnp.isinf(jnp.exp(x[3]))), bool(jnp.isnan(jnp.log(x[2]))))")
    env = {**os.environ, "XLA_FLAGS": " ".join(runtime.fast_codegen_flags()), "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True", "True", "True"]


QUICK_SCRIPT = """
import jax, numpy as np
import flowclass as fc
model = fc.image_realnvp("fast", input_shape=(8, 8, 1))
x = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype(np.float32)
# the same initialisation in both processes (compiled quickly either way), so only the flags of
# the log-likelihood's program differ
init = jax.jit(model.init).lower(jax.random.key(0), x).compile(fc.runtime.quick_compile_options())
variables = init(jax.random.key(0), x)
ll = jax.jit(lambda v, x: model.apply(v, x, method="class_log_likelihoods"))(variables, x)
print(*np.asarray(ll).ravel().tolist())
"""


def test_quick_compile_flags_reach_xla_and_keep_the_numbers():
    """The image flow's per-class log-likelihoods with LLVM's optimisation skipped equal the
    default build's to float32 rounding; an unknown option proves XLA reads the variable."""
    outs = {}
    for name, flags in (("default", ""), ("quick", " ".join(runtime.QUICK_COMPILE_FLAGS)),
                        ("unknown", "--xla_no_such_option=1")):
        env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
        outs[name] = subprocess.run([sys.executable, "-c", QUICK_SCRIPT], env=env, capture_output=True, text=True,
                                    timeout=300)
    assert outs["unknown"].returncode != 0 and "xla_no_such_option" in outs["unknown"].stderr
    default, quick = (np.array(outs[k].stdout.split(), float) for k in ("default", "quick"))
    assert outs["quick"].returncode == 0 and default.shape == quick.shape == (40,), outs["quick"].stderr[-2000:]
    np.testing.assert_allclose(quick, default, rtol=1e-5, atol=1e-3)


def test_find_tcmalloc_searches_the_given_directories(tmp_path):
    assert runtime.find_tcmalloc([str(tmp_path)]) is None
    (tmp_path / "libtcmalloc_minimal.so.4").write_bytes(b"")
    found = runtime.find_tcmalloc([str(tmp_path / "missing"), str(tmp_path)])
    assert found == str(tmp_path / "libtcmalloc_minimal.so.4")


def _run(script_dir, env_update: dict, as_module: bool = False) -> subprocess.CompletedProcess:
    script = script_dir / "restart_probe.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", runtime.ALLOCATOR_ENV)}
    command = ["-m", "restart_probe"] if as_module else [str(script)]
    return subprocess.run([sys.executable, *command], env={**env, **env_update}, cwd=script_dir,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(runtime.find_tcmalloc() is None, reason="tcmalloc is not installed (libtcmalloc-minimal4)")
def test_restart_with_tcmalloc_preloads_it_unless_the_system_allocator_is_asked_for(tmp_path):
    restarted = _run(tmp_path, {})
    assert restarted.returncode == 0, restarted.stderr
    assert restarted.stdout.strip() == "True"
    kept = _run(tmp_path, {runtime.ALLOCATOR_ENV: "system"})
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout.strip() == "False"
    as_module = _run(tmp_path, {}, as_module=True)  # python -m restart_probe runs again as a module
    assert as_module.returncode == 0, as_module.stderr
    assert as_module.stdout.strip() == "True"


def test_restart_with_tcmalloc_rejects_an_unknown_allocator(monkeypatch):
    monkeypatch.setenv(runtime.ALLOCATOR_ENV, "jemalloc")
    with pytest.raises(ValueError, match="'tcmalloc' or 'system'"):
        runtime.restart_with_tcmalloc()


CACHE_SCRIPT = """
import json, sys, jax, jax.numpy as jnp
from flowclass import cli, runtime
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
if sys.argv[1] == "preset":  # a notebook chose a directory in code before
    jax.config.update("jax_compilation_cache_dir", sys.argv[2])
    used = str(runtime.use_compilation_cache(sys.argv[3]))
elif sys.argv[1] == "cli":
    cli.parse(["--workdir", sys.argv[2], *sys.argv[3:]], description=None, configs="experiments.moons.configs")
    used = jax.config.jax_compilation_cache_dir
else:
    used = runtime.use_compilation_cache(*sys.argv[2:])
    used = None if used is None else str(used)
jax.jit(lambda x: jnp.sin(x) * 3)(jnp.ones(5)).block_until_ready()
print(json.dumps({"used": used, "config": jax.config.jax_compilation_cache_dir}))
"""


def _cache_run(tmp_path, env_update: dict, *args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_COMPILATION_CACHE_DIR", "FLOWCLASS_CACHE")}
    env.update(FLOWCLASS_CACHE=str(tmp_path / "flowclass"), **env_update)
    out = subprocess.run([sys.executable, "-c", CACHE_SCRIPT, *args], env=env, capture_output=True, text=True,
                         timeout=120, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_use_compilation_cache_writes_programs_under_the_flowclass_cache_unless_the_user_chose(tmp_path):
    default = tmp_path / "flowclass" / "jax"
    got = _cache_run(tmp_path, {}, "api")
    assert got == {"used": str(default), "config": str(default)}
    assert any(default.iterdir())  # the compiled program was written there
    mine = tmp_path / "mine"
    assert _cache_run(tmp_path, {}, "api", str(mine))["used"] == str(mine) and any(mine.iterdir())
    # the user's environment wins: another directory, or an empty value (no cache)
    theirs = tmp_path / "theirs"
    assert _cache_run(tmp_path, {"JAX_COMPILATION_CACHE_DIR": str(theirs)}, "api", str(mine))["used"] == str(theirs)
    assert _cache_run(tmp_path, {"JAX_COMPILATION_CACHE_DIR": ""}, "api")["used"] is None
    preset = tmp_path / "preset"
    assert _cache_run(tmp_path, {}, "preset", str(preset), str(mine)) == {"used": str(preset), "config": str(preset)}


def test_experiment_command_line_keeps_the_cache_unless_told_not_to(tmp_path):
    assert _cache_run(tmp_path, {}, "cli", str(tmp_path / "run"))["config"] == str(tmp_path / "flowclass" / "jax")
    assert _cache_run(tmp_path, {}, "cli", str(tmp_path / "run2"), "--no-compile-cache")["config"] is None
