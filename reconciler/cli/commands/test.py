"""``reconciler test ENV_DIR [--image NAME]``: run images' samples in Azure ML's inference server."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from reconciler.cli import exit_codes


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "test", help="run the images' samples in Azure ML's inference server",
        description="For each Image with spec.samples (or the ones named): start Azure ML's inference server "
                    "(azmlinfsrv) on 127.0.0.1 with the entry script and the models laid out as in the image, "
                    "POST every sample to /score, compare with <name>.expected.json and measure latency. Exit 1 "
                    "if a sample fails or a gate (mustMatchExpected, maxLatencyP95Ms) is exceeded.",
    )
    parser.add_argument("environment", type=Path, metavar="ENV_DIR", help="an environments/<name> folder")
    parser.add_argument("--image", action="append", default=[], metavar="NAME",
                        help="an Image spec name (repeatable; default: every image with samples)")
    parser.add_argument("--python", type=Path, metavar="PATH",
                        help="run the server with this interpreter (it must have azureml-inference-server-http) "
                             "instead of a cached virtualenv made from the conda file")
    parser.set_defaults(run=run)


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM (a CI job cancelled, ``kill``) into KeyboardInterrupt while the block runs, so
    that a scoring server is stopped on the way out, as on Ctrl-C. The previous handler is restored."""

    import signal  # only for the commands that run samples

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: nothing to install
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> int:
    from reconciler.cli.progress import TerminalProgress
    from reconciler.cli.views import behaviour as behaviour_view
    from reconciler.engine import Engine

    with stop_on_sigterm(), Engine(args.environment, TerminalProgress()) as engine:
        results = engine.test(args.image, python=args.python)
    print(behaviour_view.render_test(results), end="")
    return exit_codes.ERROR if any(result.failures for result in results) else exit_codes.OK
