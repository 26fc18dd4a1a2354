"""Errors are values with a location; the CLI turns each kind into a message and exit code."""

from __future__ import annotations


class OcishimError(Exception):
    """Base class. `exit_code` is what the CLI returns for this kind of failure."""

    exit_code = 1

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where
        self.message = message


class ProfileError(OcishimError):
    """Bad input: the profile or config; `where` is a JSON path such as linux.seccomp.syscalls[3].action."""

    exit_code = 2


class UsageError(OcishimError):
    """Bad command-line input (an unknown arch, a malformed number)."""

    exit_code = 2


class BpfError(OcishimError):
    """A program that cannot be decoded or run; `where` is an instruction index or a file."""

    exit_code = 2


class CompileError(OcishimError):
    """libseccomp refused the profile; `where` names the field that caused it."""

    exit_code = 2


class SystemFailure(OcishimError):
    """The host could not do what was asked (kernel feature, runtime, file system)."""

    exit_code = 1
