import os
import pathlib

# JAX's persistent compilation cache, shared by this process, pytest-xdist's workers and every
# child process a test starts (they inherit the environment): the suite compiles the same
# programs many times (each `fit` jits afresh so that its executables are freed with it; fresh
# processes reload runs), and a cached executable loads in milliseconds instead of compiling
# in seconds. Set before JAX is imported; an explicit JAX_COMPILATION_CACHE_DIR is respected.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", str(pathlib.Path(__file__).resolve().parents[1] / ".pytest_cache" / "jax")
)
# Every program, however quick to compile: each module empties JAX's in-memory caches (below),
# and loading a small program again is quicker than compiling it.
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

# The suite is mostly compilation of small, distinct programs: XLA's CPU backend compiles them
# quickly (flowclass.runtime.QUICK_COMPILE_FLAGS; measured in docs/notes/speed.md, "Compile
# time"). Child processes inherit it; an explicit option is kept.
from flowclass.runtime import use_quick_compile  # noqa: E402

use_quick_compile()

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _fresh_jax_caches():
    """JAX's in-memory compilation caches are emptied after each test module.

    The suite compiles thousands of functions in one process; every cached CPU executable holds
    a few hundred memory maps, and past Linux's ``vm.max_map_count`` (65,530) XLA's compiler
    crashes with a segfault. No module relies on another's compiled functions.
    """
    yield
    jax.clear_caches()
