"""``reconciler gc [ENV_DIR] [--keep-venvs N] [--keep-results N]``: prune the behaviour caches now.

The same least-recently-used pruning ``plan``, ``apply`` and ``test`` run on their own after they ran
samples (``reconciler.behaviour.gc``), on demand and with other limits: ``--keep-venvs 0 --keep-results 0``
empties both caches, as ``pre-commit clean`` would.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from reconciler.cli import exit_codes


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (0 or more)")
    return int(text)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from reconciler.behaviour import gc

    parser = subparsers.add_parser(
        "gc", help="prune the behaviour caches (scoring virtualenvs, sample results)",
        description="Keep the scoring virtualenvs (one per conda file, in $RECONCILER_VENV_CACHE or "
                    "~/.cache/edge-reconciler/venvs) and the sample results of ENV_DIR (.reconciler/<env>/behaviour) "
                    "used last, and remove the others. plan, apply and test do this on their own after running "
                    f"samples, with the defaults ({gc.KEEP_VENVS} virtualenvs, {gc.KEEP_RESULTS} results; "
                    f"${gc.KEEP_VENVS_VARIABLE}, ${gc.KEEP_RESULTS_VARIABLE}). Without ENV_DIR only the "
                    "virtualenvs are pruned.",
    )
    parser.add_argument("environment", type=Path, metavar="ENV_DIR", nargs="?",
                        help="an environments/<name> folder whose sample results are pruned too")
    parser.add_argument("--keep-venvs", type=_count, metavar="N", help="virtualenvs to keep (0: remove all)")
    parser.add_argument("--keep-results", type=_count, metavar="N", help="sample results to keep (0: remove all)")
    parser.set_defaults(run=run)


def _size(count: int, size: int, what: str) -> str:
    return f"{count} {what}{'' if count == 1 else 's'} ({size / 1e6:.1f} MB)"


def run(args: argparse.Namespace) -> int:
    from reconciler.behaviour import gc
    from reconciler.behaviour.service import CACHE_FOLDER
    from reconciler.behaviour.venv import cache_root

    keep_venvs = args.keep_venvs if args.keep_venvs is not None else gc.limit(gc.KEEP_VENVS_VARIABLE, gc.KEEP_VENVS)
    keep_results = args.keep_results if args.keep_results is not None else gc.limit(
        gc.KEEP_RESULTS_VARIABLE, gc.KEEP_RESULTS)
    venvs, venv_bytes = gc.prune_venvs(cache_root(), keep_venvs)
    line = f"Removed {_size(venvs, venv_bytes, 'virtualenv')} from {cache_root()}"
    if args.environment is not None:
        from reconciler.engine import cache_directory
        from reconciler.spec.loader import load_environment

        folder = cache_directory(load_environment(args.environment)) / CACHE_FOLDER
        results, result_bytes = gc.prune_results(folder, keep_results)
        line += f", and {_size(results, result_bytes, 'sample result')} from {folder}"
    print(line + ".")
    return exit_codes.OK
