"""Process-level set-up: host devices, the allocator and compiler options, which have to be
chosen before XLA starts, and the on-disk cache of compiled programs (:func:`use_compilation_cache`).

Three settings make flowclass's image flows fast on a multi-core CPU (measured on a 2-core
machine, ``benchmarks/``):

* **Host devices.** ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` splits the CPU
  into ``N`` XLA devices; :func:`flowclass.fit` then shards each batch over them. With earlier
  jaxlib releases XLA's CPU convolutions alone used about 1.3 of 2 cores and two devices won;
  with jaxlib 0.10.2 one device ran the default MNIST flow faster (:data:`DEFAULT_HOST_DEVICES`).
* **tcmalloc.** XLA's CPU runtime allocates each step's temporaries afresh (1.9 GB for the
  multiscale MNIST flow at batch 128). glibc's ``malloc`` hands blocks that large back to the
  kernel on ``free`` and page-faults them in again on the next step; with tcmalloc preloaded
  the multiscale flow's train step ran 1.5× faster (sharded over 2 devices: 103 → 159 images/s).
  Colab and Cloud TPU VMs preload tcmalloc already; on Debian/Ubuntu,
  ``apt install libtcmalloc-minimal4``.
* **Compiler options** (:func:`use_fast_codegen`). XLA's own convolutions instead of YNNPACK's,
  which recent jaxlib releases use for CPU convolutions (:data:`EIGEN_CONVOLUTION_FLAG`: the
  ``'fast'`` flow's train step in 134 instead of 249 ms with jaxlib 0.10.2 on a 2-core AVX-512
  CPU), and LLVM's optimisation level 1 (:data:`OPTIMIZATION_LEVEL_FLAG`: 10-15 % quicker
  compilation at the same speed). Three more made the multiscale MNIST flow's sharded train
  step faster on the 2-core AMD Zen 4 development machine and left the ``'fast'`` flow's about
  the same: 512-bit vectors on CPUs with AVX-512 (:data:`WIDE_VECTORS_FLAG`, 164 → 169
  images/s), floating-point reassociation and FMA contraction, i.e. XLA's fast math with NaN,
  infinity, division and library-function semantics all kept (:data:`REASSOCIATION_FLAGS`;
  log-likelihoods agree with the default to ~1e-6 relative), and XLA's concurrency-optimised
  scheduler (+1.6 %; in jaxlib 0.10.2 XLA's default scheduler behaves as that one, and
  :data:`SCHEDULER_FLAG` now chooses the memory-optimised one, which runs small steps faster).

The allocator can only be chosen when a process starts (``LD_PRELOAD``), so scripts call
:func:`restart_with_tcmalloc` first thing; in a notebook, start Jupyter with
``LD_PRELOAD=$(python -c 'import flowclass.runtime as r; print(r.find_tcmalloc())')``.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Sequence

#: Set to ``system`` to keep glibc's allocator in :func:`restart_with_tcmalloc`.
ALLOCATOR_ENV = "FLOWCLASS_MALLOC"

_LIBRARY_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
                 "/usr/local/lib")
_LIBRARY_NAMES = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4")


def use_host_devices(count: int) -> None:
    """Splits the CPU into ``count`` XLA devices (unless ``XLA_FLAGS`` already sets a count),
    so that batches shard over its cores.

    Call it before JAX starts computing; on TPU/GPU it only affects the host platform.

    Example:
      >>> import os
      >>> saved = os.environ.pop("XLA_FLAGS", None)
      >>> use_host_devices(2)
      >>> os.environ["XLA_FLAGS"]
      '--xla_force_host_platform_device_count=2'
      >>> _ = os.environ.pop("XLA_FLAGS") if saved is None else os.environ.update(XLA_FLAGS=saved)
    """
    if count < 1:
        raise ValueError(f"count must be a positive number of devices; got {count}.")
    if count > 1:
        _add_xla_flags([f"--xla_force_host_platform_device_count={count}"])


#: The experiments' default number of XLA host devices: one. With jaxlib 0.10.2 and XLA's own
#: convolutions (:data:`EIGEN_CONVOLUTION_FLAG`) the default (``fast``) MNIST flow's step ran
#: faster on one device than sharded over two: 895 against 700 and 727 against 600 images/s in two
#: runs (2-core AVX-512 CPU; with YNNPACK's convolutions two devices had won, 599 against 514).
#: The multi-scale flow still gained from two (100 → 106, 83 → 94): pass ``--host-devices 2``.
DEFAULT_HOST_DEVICES = 1


def configure_cpu(argv: Sequence[str]) -> list[str]:
    """The CPU set-up of the image experiments, from their command line: takes ``--host-devices N``
    (default :data:`DEFAULT_HOST_DEVICES`) out of ``argv``, splits the CPU into that many devices
    (:func:`use_host_devices`) and sets the fast XLA CPU code generation (:func:`use_fast_codegen`).
    Call it before JAX starts computing. Returns the other arguments.

    Raises:
      SystemExit: ``--host-devices`` is not a positive integer (with a usage message).

    Example:
      >>> import os
      >>> saved = os.environ.pop("XLA_FLAGS", None)
      >>> configure_cpu(["--host-devices", "1", "--config", "cnn"])
      ['--config', 'cnn']
      >>> _ = os.environ.pop("XLA_FLAGS", None) if saved is None else os.environ.update(XLA_FLAGS=saved)
    """
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--host-devices", type=int, default=DEFAULT_HOST_DEVICES)
    known, rest = parser.parse_known_args(list(argv))
    if known.host_devices < 1:
        parser.error(f"--host-devices must be >= 1; got {known.host_devices}")
    use_host_devices(known.host_devices)
    use_fast_codegen()
    return rest


def xla_option(flag: str) -> str:
    """The option a ``--name=value`` XLA flag sets: ``'--name'``.

    Example:
      >>> xla_option("--xla_cpu_prefer_vector_width=512")
      '--xla_cpu_prefer_vector_width'
    """
    return flag.split("=", 1)[0]


def _add_xla_flags(flags: Sequence[str]) -> list[str]:
    """Appends to ``XLA_FLAGS`` the ``flags`` whose option it does not set yet; returns those."""
    current = os.environ.get("XLA_FLAGS", "")
    present = {xla_option(flag) for flag in current.split()}
    added = [flag for flag in flags if xla_option(flag) not in present]
    if added:
        os.environ["XLA_FLAGS"] = " ".join([current, *added]).strip()
    return added


def default_cache_dir() -> Path:
    """The directory for cached results: ``$FLOWCLASS_CACHE`` when set (and not empty), else
    ``~/.cache/flowclass``. Nothing is created here.

    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"FLOWCLASS_CACHE": "/tmp/flowclass-cache"}):
    ...     print(default_cache_dir())
    /tmp/flowclass-cache
    """
    configured = os.environ.get("FLOWCLASS_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "flowclass"


#: The environment variable of JAX's persistent compilation cache (empty: no cache).
COMPILATION_CACHE_ENV = "JAX_COMPILATION_CACHE_DIR"


def use_compilation_cache(directory: str | os.PathLike | None = None) -> Path | None:
    """Keeps compiled XLA programs on disk between processes (JAX's persistent compilation cache),
    so that a second run of the same model and batch shape skips XLA's compilation: the ``fast``
    MNIST flow's train step took 0.6 s (tracing, then loading) instead of 2.7 s in a new process
    (2026-12-02), its ``create_train_state`` 1.5 s instead of 2.3-2.4 s (2-core AVX-512 CPU). JAX
    keys each program by its computation, compiler options, jaxlib version and device, so a cached
    program is used only where it was compiled for the same thing; only programs that took at
    least JAX's ``jax_persistent_cache_min_compile_time_secs`` (1 s by default) are written.

    ``directory`` defaults to ``default_cache_dir() / "jax"``. The user's choice stays: when
    ``$JAX_COMPILATION_CACHE_DIR`` is set (an empty value turns the cache off) or JAX's
    ``jax_compilation_cache_dir`` is already configured, nothing changes and that choice is
    returned (``None`` when it is off). The experiment scripts call this (``--no-compile-cache``
    turns it off).

    Returns:
      The cache directory in use, or ``None`` when the user turned the cache off.

    Example:
      >>> import os, tempfile
      >>> from unittest import mock
      >>> with mock.patch.dict(os.environ, {COMPILATION_CACHE_ENV: ""}):
      ...     print(use_compilation_cache(tempfile.mkdtemp()))  # the user's empty value: off
      None
    """
    import jax

    if COMPILATION_CACHE_ENV in os.environ:
        chosen = os.environ[COMPILATION_CACHE_ENV]
        return Path(chosen) if chosen else None
    configured = getattr(jax.config, "jax_compilation_cache_dir", None)  # set in code, e.g. by a notebook
    if configured:
        return Path(configured)
    path = Path(directory).expanduser() if directory is not None else default_cache_dir() / "jax"
    jax.config.update("jax_compilation_cache_dir", str(path))
    return path


#: 512-bit vectors in XLA's generated CPU code (used on CPUs with AVX-512 only).
WIDE_VECTORS_FLAG = "--xla_cpu_prefer_vector_width=512"
#: XLA's CPU scheduler that orders a program's work to keep few buffers alive. In jaxlib 0.10.2
#: XLA's default scheduler behaves as the concurrency-optimised one, and its runtime then runs
#: independent work as concurrent tasks, which cost small programs time: a moons-flow train step
#: returning its six scalar metrics took 960-990 µs against 824-837 µs for the same step returning
#: one array, and 836 µs under this scheduler (batch 128, 2-core AVX-512 CPU); the image flows'
#: steps ran as fast or faster (the ``fast`` MNIST flow 872 against 844 images/s, the CNN 7,769
#: against 7,495, the multi-scale flow 93-97 either way). Before, this constant was
#: ``--xla_cpu_enable_concurrency_optimized_scheduler=true``, which jaxlib 0.10.2 lists as
#: deprecated. Releases before 0.9.2 get no scheduler option
#: (``--xla_cpu_scheduler_type`` appears in 0.9.1, whose values were not tried).
SCHEDULER_FLAG = "--xla_cpu_scheduler_type=CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"
#: XLA's own (Eigen) CPU convolutions instead of YNNPACK's. From jaxlib 0.9.2 on, XLA hands its
#: CPU convolutions' kernel gradients to YNNPACK, and from 0.10 the forward convolutions too;
#: YNNPACK's ran the ``fast`` MNIST flow's train step at half the speed (batch 128, 2-core
#: AVX-512 CPU, jaxlib 0.10.2: 249 ms instead of 134 ms per step; a 3 × 3, 64 → 64 kernel
#: gradient at 14 × 14: 58 ms instead of 16 ms; 45 ms instead of 15 ms with jaxlib 0.9.2).
EIGEN_CONVOLUTION_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
#: LLVM's optimisation level 1 for XLA's CPU code instead of the default 3: the train steps compiled
#: 10-15 % faster and ran as fast (2-core AVX-512 CPU, jaxlib 0.10.2, one process each: the
#: ``fast`` MNIST flow 4.0 s against 4.6-4.8 s to compile, 176-177 ms against 176-187 ms per step;
#: the multi-scale flow 7.8 s against 8.7 s, 1,731 against 1,718 ms; the moons flow 116k examples/s
#: either way).
OPTIMIZATION_LEVEL_FLAG = "--xla_backend_optimization_level=1"
#: The first jaxlib release whose XLA knows each of :func:`fast_codegen_flags`'s newer options
#: (release tuples): XLA aborts the process on an option or value it does not know, so
#: :func:`fast_codegen_flags` leaves them out for older releases (:func:`jaxlib_knows`).
FLAG_JAXLIB = {SCHEDULER_FLAG: (0, 9, 2), EIGEN_CONVOLUTION_FLAG: (0, 8, 2)}
#: XLA's fast math without its unsafe parts: reassociation and FMA contraction only.
REASSOCIATION_FLAGS = (
    "--xla_cpu_enable_fast_math=true",
    "--xla_cpu_fast_math_honor_nans=true",
    "--xla_cpu_fast_math_honor_infs=true",
    "--xla_cpu_fast_math_honor_division=true",
    "--xla_cpu_fast_math_honor_functions=true",
)


#: XLA CPU options that trade run speed for compile speed (:func:`use_quick_compile`): LLVM's
#: optimisation level 0, none of its expensive passes, and XLA's elemental fusion emitters instead
#: of its newer MLIR ones (which compile a program's fusions through more passes).
QUICK_COMPILE_FLAGS = ("--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true",
                       "--xla_cpu_use_fusion_emitters=false")


def has_avx512(cpuinfo: str | None = None) -> bool:
    """Whether the CPU has AVX-512 (``avx512f`` in ``/proc/cpuinfo``, or in ``cpuinfo`` when given).

    Example:
      >>> has_avx512("flags : fpu sse2 avx2"), has_avx512("flags : fpu avx2 avx512f avx512vl")
      (False, True)
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    return any(line.startswith("flags") and "avx512f" in line.split() for line in cpuinfo.splitlines())


def jaxlib_release(jaxlib_version: str | None = None) -> tuple[int, int, int] | None:
    """The release ``(major, minor, patch)`` of the installed jaxlib (or of ``jaxlib_version``);
    ``None`` when jaxlib is not installed or the version does not parse. Reads the installed
    version from the package metadata, without importing JAX.

    Example:
      >>> jaxlib_release("0.9.0rc1"), jaxlib_release("0.10.2.dev20261101"), jaxlib_release("unknown")
      ((0, 9, 0), (0, 10, 2), None)
    """
    if jaxlib_version is None:
        from importlib import metadata

        try:
            jaxlib_version = metadata.version("jaxlib")
        except metadata.PackageNotFoundError:
            return None
    release = re.match(r"(\d+)\.(\d+)\.(\d+)", jaxlib_version)
    return None if release is None else (int(release[1]), int(release[2]), int(release[3]))


def jaxlib_knows(flag: str, jaxlib_version: str | None = None) -> bool:
    """Whether the installed jaxlib (or ``jaxlib_version``) is a release whose XLA knows ``flag``:
    the release :data:`FLAG_JAXLIB` gives for it or a later one (any release for a flag it does
    not list); ``False`` for a listed flag when :func:`jaxlib_release` finds none.

    Example:
      >>> [jaxlib_knows(EIGEN_CONVOLUTION_FLAG, v) for v in ("0.8.1", "0.8.2rc1", "0.10.2.dev2026")]
      [False, True, True]
      >>> jaxlib_knows(SCHEDULER_FLAG, "0.9.0"), jaxlib_knows(WIDE_VECTORS_FLAG, "0.4.30")
      (False, True)
    """
    first = FLAG_JAXLIB.get(flag)
    if first is None:
        return True
    release = jaxlib_release(jaxlib_version)
    return release is not None and release >= first


def fast_codegen_flags(cpuinfo: str | None = None, jaxlib_version: str | None = None) -> tuple[str, ...]:
    """The XLA CPU flags :func:`use_fast_codegen` sets on this CPU and jaxlib:
    :data:`REASSOCIATION_FLAGS`, :data:`OPTIMIZATION_LEVEL_FLAG`, :data:`SCHEDULER_FLAG`,
    :data:`EIGEN_CONVOLUTION_FLAG` (each of the last two only where jaxlib knows it,
    :func:`jaxlib_knows`), and :data:`WIDE_VECTORS_FLAG` when the CPU has AVX-512.

    Example:
      >>> fast_codegen_flags("flags : avx2 avx512f")[-1]
      '--xla_cpu_prefer_vector_width=512'
      >>> WIDE_VECTORS_FLAG in fast_codegen_flags("flags : avx2")
      False
      >>> EIGEN_CONVOLUTION_FLAG in fast_codegen_flags(jaxlib_version="0.10.2")
      True
      >>> fast_codegen_flags("flags : avx2", jaxlib_version="0.8.1")[-1]  # no newer options: XLA would abort
      '--xla_backend_optimization_level=1'
    """
    versioned = tuple(f for f in FLAG_JAXLIB if jaxlib_knows(f, jaxlib_version))
    wide = (WIDE_VECTORS_FLAG,) if has_avx512(cpuinfo) else ()
    return REASSOCIATION_FLAGS + (OPTIMIZATION_LEVEL_FLAG,) + versioned + wide


def use_fast_codegen(cpuinfo: str | None = None) -> list[str]:
    """Adds :func:`fast_codegen_flags` to ``XLA_FLAGS``, except options ``XLA_FLAGS`` already sets;
    returns the flags added.

    Call it before JAX starts computing; it only concerns XLA's CPU backend.

    Example:
      >>> import os
      >>> saved = os.environ.pop("XLA_FLAGS", None)
      >>> os.environ["XLA_FLAGS"] = "--xla_cpu_enable_fast_math=false"
      >>> use_fast_codegen(cpuinfo="flags : avx2 avx512f")[-1]
      '--xla_cpu_prefer_vector_width=512'
      >>> "xla_cpu_enable_fast_math=true" in os.environ["XLA_FLAGS"]  # the user's choice stays
      False
      >>> use_fast_codegen(cpuinfo="flags : avx2 avx512f")  # already set
      []
      >>> _ = os.environ.pop("XLA_FLAGS") if saved is None else os.environ.update(XLA_FLAGS=saved)
    """
    return _add_xla_flags(fast_codegen_flags(cpuinfo))


def quick_compile_options() -> dict[str, str | bool]:
    """:data:`QUICK_COMPILE_FLAGS` as per-compilation options, for
    ``jax.jit(f).lower(...).compile(quick_compile_options())``: one program compiled quickly,
    the rest of the process unchanged (:func:`flowclass.create_train_state` compiles the model's
    initialisation, which runs once, this way on a CPU).

    Example:
      >>> quick_compile_options()  # doctest: +NORMALIZE_WHITESPACE
      {'xla_backend_optimization_level': '0', 'xla_llvm_disable_expensive_passes': True,
       'xla_cpu_use_fusion_emitters': False}
    """
    options: dict[str, str | bool] = {}  # the types jax.stages.Lowered.compile takes
    for flag in QUICK_COMPILE_FLAGS:
        name, value = flag.removeprefix("--").split("=")
        options[name] = value == "true" if value in ("true", "false") else value
    return options


def use_quick_compile() -> list[str]:
    """Adds :data:`QUICK_COMPILE_FLAGS` to ``XLA_FLAGS``, except options ``XLA_FLAGS`` already sets;
    returns the flags added.

    For work made of many short, distinct programs, where XLA's CPU compiler takes most of the
    time: a grid search over small data sets, quick experiments in a notebook, test suites. XLA
    still fuses and schedules as usual, but emits its fusions with the elemental emitters and
    skips LLVM's machine-code optimisation, so the compiled steps run slower. Numbers agree with
    the default build to floating-point rounding. Measured on a 2-core AVX-512 CPU, two runs each
    (``benchmarks/run.py --quick``, one device; train steps per second, compile time): the
    ``'fast'`` MNIST flow at batch 32 ran 587-605 images/s and compiled in 3.3-3.5 s with XLA's
    defaults, 337-346 images/s and 1.6-1.7 s with these flags (402-435 and 2.4 s without the
    emitter option); the moons flow at batch 128 ran 61-66k instead of 124-131k examples/s.
    flowclass's own test suite sets it (``tests/conftest.py``): nine of its modules took 134 s
    instead of 196 s with only the two LLVM options. Leave it off for long training runs. Call
    it before JAX starts computing; it only concerns XLA's CPU backend.

    Example:
      >>> import os
      >>> saved = os.environ.pop("XLA_FLAGS", None)
      >>> use_quick_compile()  # doctest: +NORMALIZE_WHITESPACE
      ['--xla_backend_optimization_level=0', '--xla_llvm_disable_expensive_passes=true',
       '--xla_cpu_use_fusion_emitters=false']
      >>> use_quick_compile()  # already set
      []
      >>> _ = os.environ.pop("XLA_FLAGS") if saved is None else os.environ.update(XLA_FLAGS=saved)
    """
    return _add_xla_flags(QUICK_COMPILE_FLAGS)


def find_tcmalloc(search_dirs: Sequence[str] = _LIBRARY_DIRS) -> str | None:
    """Path of an installed tcmalloc shared library, or ``None``.

    Example:
      >>> find_tcmalloc(search_dirs=[]) is None
      True
    """
    for directory in search_dirs:
        for name in _LIBRARY_NAMES:
            path = Path(directory) / name
            if path.is_file():
                return str(path)
    return None


def tcmalloc_loaded() -> bool:
    """Whether this process runs with tcmalloc (read from ``/proc/self/maps``; ``False`` where absent).

    Example:
      >>> isinstance(tcmalloc_loaded(), bool)
      True
    """
    try:
        return "libtcmalloc" in Path("/proc/self/maps").read_text()
    except OSError:
        return False


def restart_with_tcmalloc(argv: Sequence[str] | None = None) -> None:
    """Re-executes this Python script with tcmalloc preloaded, if it is installed and not loaded yet.

    ``argv`` are the interpreter arguments to run again (default: this script, or ``-m module``,
    with the same command-line arguments).

    Returns without doing anything when tcmalloc is already loaded, is not installed,
    ``FLOWCLASS_MALLOC=system`` is set, or there is no script (an interactive session,
    ``python -c``); otherwise it does not return (``os.execve``). Call
    it at the top of a script's ``__main__`` block, before any work whose results would be lost.

    Example:
      >>> import os
      >>> os.environ["FLOWCLASS_MALLOC"] = "system"
      >>> restart_with_tcmalloc()  # returns: asked to keep the system allocator
      >>> del os.environ["FLOWCLASS_MALLOC"]
    """
    choice = os.environ.get(ALLOCATOR_ENV, "tcmalloc")
    if choice not in ("tcmalloc", "system"):
        raise ValueError(f"{ALLOCATOR_ENV} must be 'tcmalloc' or 'system'; got {choice!r}.")
    if choice == "system" or tcmalloc_loaded():
        return
    if argv is None and (not sys.argv or sys.argv[0] in ("", "-c")):
        return  # an interactive session or ``python -c``: there is no script to run again
    library = find_tcmalloc()
    if library is None:
        return
    preload = " ".join(filter(None, [library, os.environ.get("LD_PRELOAD", "")]))
    # the child must not loop if the preload does not take effect (e.g. a sanitiser refuses it)
    env = dict(os.environ, LD_PRELOAD=preload, **{ALLOCATOR_ENV: "system"})
    if argv is None:
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)  # set when run as ``python -m name``
        argv = ["-m", spec.name, *sys.argv[1:]] if spec is not None and spec.name else list(sys.argv)
    args = [sys.executable, *argv]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, args, env)
