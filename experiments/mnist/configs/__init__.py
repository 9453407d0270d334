"""The MNIST experiment's configs: ``get_config()`` of each module is a :class:`flowclass.RunConfig`;
one module per row of ``experiments/mnist/README.md``."""
