"""The OCI `linux.seccomp` object as frozen values (runtime-spec config-linux.md).

Records, not dataclasses: every cold build parses a profile, and the dataclasses module
(it imports inspect, ast, dis, tokenize) and the code it generates for these classes
cost that start about 20 ms. `value.replace(field=...)` gives a changed copy.
"""

from __future__ import annotations

from ..record import Record

_set = object.__setattr__  # Records' __init__: fields set once, then immutable


class ArgCond(Record):
    """One `args[]` entry: compare syscall argument `index` with `value` by `op`.

    For SCMP_CMP_MASKED_EQ, `value` is the mask and `value_two` what the masked
    argument must equal; the other operators ignore `value_two`.
    """

    # op: an OPERATORS key, e.g. "SCMP_CMP_EQ"
    __slots__ = ("index", "value", "value_two", "op")

    def __init__(self, index: int, value: int, value_two: int, op: str) -> None:
        _set(self, "index", index)
        _set(self, "value", value)
        _set(self, "value_two", value_two)
        _set(self, "op", op)


class Rule(Record):
    """One `syscalls[]` entry. `path` is its JSON path, for error messages."""

    # action: an ACTIONS key, e.g. "SCMP_ACT_ERRNO"
    __slots__ = ("names", "action", "errno_ret", "args", "path")

    def __init__(self, names: tuple[str, ...], action: str, errno_ret: int | None = None,
                 args: tuple[ArgCond, ...] = (), path: str = "") -> None:
        _set(self, "names", names)
        _set(self, "action", action)
        _set(self, "errno_ret", errno_ret)
        _set(self, "args", args)
        _set(self, "path", path)


class Profile(Record):
    """A validated seccomp profile in OCI form. `path` is the JSON path of the object."""

    # architectures: OCI names, e.g. "SCMP_ARCH_X86_64"; flags: FILTER_FLAGS keys
    __slots__ = ("default_action", "default_errno_ret", "architectures", "flags", "listener_path",
                 "listener_metadata", "syscalls", "path")

    def __init__(self, default_action: str, default_errno_ret: int | None = None,
                 architectures: tuple[str, ...] = (), flags: tuple[str, ...] = (),
                 listener_path: str | None = None, listener_metadata: str | None = None,
                 syscalls: tuple[Rule, ...] = (), path: str = "") -> None:
        _set(self, "default_action", default_action)
        _set(self, "default_errno_ret", default_errno_ret)
        _set(self, "architectures", architectures)
        _set(self, "flags", flags)
        _set(self, "listener_path", listener_path)
        _set(self, "listener_metadata", listener_metadata)
        _set(self, "syscalls", syscalls)
        _set(self, "path", path)

    def field_path(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def names(self) -> tuple[str, ...]:
        """Every syscall name any rule lists, in first-seen order, without duplicates."""
        seen: dict[str, None] = {}
        for rule in self.syscalls:
            for name in rule.names:
                seen.setdefault(name, None)
        return tuple(seen)
