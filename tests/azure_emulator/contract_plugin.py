"""pytest plugin: the emulator's contract check (``contract.py``) is on for the whole test suite.

Registered by ``tests/conftest.py`` (``pytest_plugins``): a conftest in this folder would only apply
to the tests in this folder, and the Azure backend's tests live in ``tests/azure`` and ``tests/e2e``.

* ``azure_contract`` (session, autouse) hooks one ``ContractChecker`` into every emulator the run
  starts; the definitions are loaded on the first response, so runs without the emulator pay nothing.
* ``_azure_contract_per_test`` (autouse) fails the test during which a non-conforming response was
  sent, naming the operation, the status and the first schema error.
* ``AZURE_EMULATOR_CONTRACT=off`` turns the check off (to measure what it costs).
* The terminal summary reports how many responses were checked, against how many operations, what
  was not validated, and the time the check took.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator

import pytest

from .contract import ContractChecker

_CHECKER = ContractChecker()


def _observer_lists() -> list[list[Callable[..., None]]]:
    """The hook list of every copy of ``framework``: with ``--import-mode=importlib`` the tests in this
    folder import the emulator as ``azure_emulator.*`` and the others as ``tests.azure_emulator.*``."""
    return [module.response_observers for name, module in list(sys.modules.items())
            if name.endswith("azure_emulator.framework") and hasattr(module, "response_observers")]


def _hook_in() -> None:
    if os.environ.get("AZURE_EMULATOR_CONTRACT") == "off":  # to measure the check's cost, or to bisect
        return
    for observers in _observer_lists():
        if _CHECKER.observe not in observers:
            observers.append(_CHECKER.observe)


@pytest.fixture(scope="session", autouse=True)
def azure_contract() -> Iterator[ContractChecker]:
    _hook_in()
    try:
        yield _CHECKER
    finally:
        for observers in _observer_lists():
            if _CHECKER.observe in observers:
                observers.remove(_CHECKER.observe)


@pytest.fixture(autouse=True)
def _azure_contract_per_test(azure_contract: ContractChecker) -> Iterator[None]:
    _hook_in()  # a module imported since the last test
    before = len(azure_contract.violations)
    yield
    new = azure_contract.violations[before:]
    if new:
        more = f" (and {len(new) - 1} more)" if len(new) > 1 else ""
        pytest.fail(f"the Azure emulator broke the published REST definitions{more}: {new[0]}", pytrace=False)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _CHECKER.checked and not _CHECKER.unvalidated:
        return
    terminalreporter.section("Azure emulator contract")
    for line in _CHECKER.summary():
        terminalreporter.write_line(line)
    for violation in _CHECKER.violations[:20]:
        terminalreporter.write_line(f"  ✗ {violation}")
