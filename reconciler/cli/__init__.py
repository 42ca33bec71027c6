"""The command line: arguments -> engine -> views. One module per command under
``commands/``, each exposing ``add_parser(subparsers)`` and ``run(args) -> int``."""
