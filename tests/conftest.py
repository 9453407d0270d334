import jax
import pytest


@pytest.fixture(autouse=True, scope="module")
def _fresh_jax_caches():
    """JAX's compilation caches are emptied after each test module.

    The suite compiles thousands of functions in one process; every cached CPU executable holds
    a few hundred memory maps, and past Linux's ``vm.max_map_count`` (65,530) XLA's compiler
    crashes with a segfault. No module relies on another's compiled functions.
    """
    yield
    jax.clear_caches()
