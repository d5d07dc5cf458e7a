"""The ``segtune`` command (``pip install .``): the dashboard and every ``python -m core`` sub-command."""
