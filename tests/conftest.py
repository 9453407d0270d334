import jax
import pytest


@pytest.fixture(autouse=True, scope="module")
def _fresh_jax_caches():
    """Each test module starts and ends with JAX's compilation caches empty.

    The suite compiles thousands of functions in one process; every cached CPU executable holds
    a few hundred memory maps, and past Linux's ``vm.max_map_count`` (65,530) XLA's compiler
    crashes with a segfault. No module relies on another's compiled functions.
    """
    jax.clear_caches()
    yield
    jax.clear_caches()
