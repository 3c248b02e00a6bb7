"""The project's exceptions. Each carries the exit code the CLI uses.

Backends convert library errors into these at their edge; the CLI turns them
into a one-line message (or a JSON error document) and the exit code.
"""

from __future__ import annotations

from impctl.model.codes import ExitCode


class ImpctlError(Exception):
    exit_code: ExitCode = ExitCode.FAILURE
    kind: str = "error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class ValidationError(ImpctlError):
    """Bad input: a NIC, an identifier, an option value. `path` is the JSON path."""

    exit_code = ExitCode.BAD_INPUT
    kind = "invalid_input"

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}" if path else reason)


class StateError(ImpctlError):
    exit_code = ExitCode.STATE_ERROR
    kind = "state_error"


class ConfigError(ImpctlError):
    exit_code = ExitCode.STATE_ERROR
    kind = "config_error"


class PermissionDenied(ImpctlError):
    exit_code = ExitCode.NOT_PERMITTED
    kind = "permission_denied"


class ServiceUnavailable(ImpctlError):
    exit_code = ExitCode.SERVICE_UNAVAILABLE
    kind = "service_unavailable"


class NoSuchInterface(ImpctlError):
    exit_code = ExitCode.NO_SUCH_INTERFACE
    kind = "no_such_interface"


class OperationTimeout(ImpctlError):
    exit_code = ExitCode.TIMEOUT
    kind = "timeout"


class LabError(ImpctlError):
    exit_code = ExitCode.LAB_ERROR
    kind = "lab_error"
