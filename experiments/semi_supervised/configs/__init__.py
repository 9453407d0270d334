"""The semi-supervised experiment's configs: ``get_config()`` of each module is an
:class:`~experiments.semi_supervised.train.ExperimentConfig`; one module per row of
``experiments/semi_supervised/README.md``."""
