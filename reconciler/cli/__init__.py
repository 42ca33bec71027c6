"""The command line: arguments -> engine -> views. One module per command under
``commands/``, each exposing ``add_parser(subparsers)`` and ``run(args) -> int``."""

from reconciler.cli import codecache

# Before any value class is created: their compiled methods come from the previous run (codecache.py).
codecache.install()
