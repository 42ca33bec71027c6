"""The error tree. Every failure the user can cause or meet is one of these.

    ReconcilerError                 anything the CLI turns into a message and exit code 1
    ├── SpecError                   the specs are wrong: carries the diagnostics (file:line:col)
    ├── PlanRefused                 a saved plan no longer matches the specs or the actual state
    ├── LockHeld                    another apply holds the environment's lock (names the holder)
    ├── Aborted                     the user declined the confirmation
    ├── BehaviourError              a model's samples could not be run (server, environment, script)
    └── ProviderError               a backend call failed; the message says what to do
        ├── PermanentProviderError  retrying will not help (bad credentials, refused content)
        └── TransientProviderError  retry later (throttled, unavailable); carries retry_after

SDK exceptions never cross a provider boundary: providers wrap them (``raise ... from exc``)
so the engine and the CLI depend only on this module. Anything else that escapes is a bug,
reported by the CLI with exit code 3.
"""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.model.diagnostics import Diagnostic


class ReconcilerError(Exception):
    """Base class: an expected failure with a message meant for the user."""


class SpecError(ReconcilerError):
    """The specs are invalid. ``diagnostics`` lists every problem found, in file order."""

    def __init__(self, diagnostics: Sequence[Diagnostic]):
        self.diagnostics = tuple(diagnostics)
        count = len(self.diagnostics)
        super().__init__(f"{count} problem{'s' if count != 1 else ''} in the specs")


class PlanRefused(ReconcilerError):
    """A saved plan cannot be applied as it is: re-plan."""


class LockHeld(ReconcilerError):
    """Another run holds the environment's lock."""


class Aborted(ReconcilerError):
    """The user did not confirm."""


class BehaviourError(ReconcilerError):
    """Running an image's samples failed: its environment could not be built, the scoring server
    did not start or answer, or the user's script raised. ``detail`` holds the user's traceback
    (their frames only) or the last lines of the server's log, when there are any."""

    def __init__(self, message: str, detail: str = ""):
        self.detail = detail
        super().__init__(message)


class ProviderError(ReconcilerError):
    """A backend call failed. ``resource`` names what was being read or changed, if known."""

    def __init__(self, message: str, *, resource: str | None = None):
        self.resource = resource
        self.message = message
        super().__init__(f"{resource}: {message}" if resource else message)

    def with_context(self, context: str) -> ProviderError:
        """The same error (type, resource, ``retry_after``) with ``[context]`` added to its message."""
        copy = type(self).__new__(type(self))
        copy.__dict__.update(self.__dict__)
        copy.message = f"{self.message} [{context}]"
        copy.args = (f"{self.resource}: {copy.message}" if self.resource else copy.message,)
        return copy


class PermanentProviderError(ProviderError):
    """Retrying the same call will fail again: fix the input, credentials or permissions."""


class TransientProviderError(ProviderError):
    """The backend is busy or unreachable; the same call may succeed later."""

    def __init__(self, message: str, *, resource: str | None = None, retry_after: float | None = None):
        self.retry_after = retry_after
        super().__init__(message, resource=resource)
