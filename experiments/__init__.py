"""Experiments: each a package run as ``python -m experiments.<name>.main --config NAME --workdir DIR``."""
