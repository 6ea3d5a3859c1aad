"""Experiment and benchmark scripts; run from the repository root as
``python -m experiments.<name> [flags]`` (no install or ``sys.path`` edits
needed: ``-m`` puts the current directory on the path, which holds
``gcjax`` and ``configs``)."""
