"""The OCI `linux.seccomp` object as frozen values (runtime-spec config-linux.md)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ArgCond:
    """One `args[]` entry: compare syscall argument `index` with `value` by `op`.

    For SCMP_CMP_MASKED_EQ, `value` is the mask and `value_two` what the masked
    argument must equal; the other operators ignore `value_two`.
    """

    index: int
    value: int
    value_two: int
    op: str  # an OPERATORS key, e.g. "SCMP_CMP_EQ"


@dataclass(frozen=True)
class Rule:
    """One `syscalls[]` entry. `path` is its JSON path, for error messages."""

    names: tuple[str, ...]
    action: str  # an ACTIONS key, e.g. "SCMP_ACT_ERRNO"
    errno_ret: int | None = None
    args: tuple[ArgCond, ...] = ()
    path: str = ""


@dataclass(frozen=True)
class Profile:
    """A validated seccomp profile in OCI form. `path` is the JSON path of the object."""

    default_action: str
    default_errno_ret: int | None = None
    architectures: tuple[str, ...] = ()  # OCI names, e.g. "SCMP_ARCH_X86_64"
    flags: tuple[str, ...] = ()  # FILTER_FLAGS keys
    listener_path: str | None = None
    listener_metadata: str | None = None
    syscalls: tuple[Rule, ...] = ()
    path: str = ""

    def field_path(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def names(self) -> tuple[str, ...]:
        """Every syscall name any rule lists, in first-seen order, without duplicates."""
        seen: dict[str, None] = {}
        for rule in self.syscalls:
            for name in rule.names:
                seen.setdefault(name, None)
        return tuple(seen)
