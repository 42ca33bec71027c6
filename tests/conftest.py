"""Shared fixtures: a throwaway repository with a valid environment, built from the sample."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from reconciler.model.plan import Change
from reconciler.model.specs import EnvironmentSpec
from reconciler.providers.apply import Executor
from reconciler.providers.base import Provider, SilentProgress

REPO = Path(__file__).resolve().parents[1]

# Every response the Azure emulator gives, in any test, is checked against the published REST definitions.
pytest_plugins = ["tests.azure_emulator.contract_plugin"]

# azureml-core's REST clients repeat throttled and failed requests themselves, waiting 32 s after a 429 and
# 2-10 s after a 5xx (no supported setting turns those repeats off; see docs/azure.md). The waits are read
# from the environment when azureml is first imported, so they are scaled down here, as
# RECONCILER_RETRY_SCALE scales the provider's own.
for _variable in ("AZUREML_DEFAULT_BACKOFF", "AZUREML_DEFAULT_500_BACKOFF", "AZUREML_DEFAULT_503_BACKOFF"):
    os.environ.setdefault(_variable, "0")


BEHAVIOUR_MARKER = "  # Behaviour: "


def copy_sample(destination: Path, environment: str = "local", *, behaviour: bool = False) -> Path:
    """Copy environments/<environment> and models/ into ``destination`` (a fake repository
    with its own .git) and return the environment folder.

    Without ``behaviour`` the Image specs lose their samples and gates (the block from
    ``BEHAVIOUR_MARKER`` on): every plan of a new image version would otherwise start Azure ML's
    inference server twice, and only tests/behaviour/ is about that."""
    (destination / ".git").mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "models", destination / "models", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "environments" / environment, destination / "environments" / environment,
                    dirs_exist_ok=True)
    images = destination / "environments" / environment / "images.yaml"
    if not behaviour and images.is_file() and BEHAVIOUR_MARKER in (text := images.read_text()):
        images.write_text(text[: text.index(BEHAVIOUR_MARKER)])
    return destination / "environments" / environment


@pytest.fixture
def sample_env(tmp_path: Path) -> Path:
    return copy_sample(tmp_path)


def apply_change(provider: Provider, change: Change, environment: EnvironmentSpec) -> None:
    """One change through the apply path, as the engine runs it (without the lock)."""
    Executor(environment, provider.adapters(), SilentProgress()).apply(change)
