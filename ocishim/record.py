"""Immutable records for the modules every container start imports.

A frozen dataclass costs that start about 1 ms to define and the dataclasses module
about 5 more to import (it imports inspect, ast, dis...); a NamedTuple needs typing.
A Record is defined by listing its fields; it is compared and hashed by value, cannot
be changed, pickles, and `replace` gives a changed copy. Records made on hot paths
spell out `__init__` (a plain method sets each field faster than the generic one).

    class Point(Record):
        __slots__ = ("x", "y")
        _defaults = {"y": 0}
"""

from __future__ import annotations

try:
    from _operator import attrgetter  # the C module: operator itself is a Python import
except ImportError:  # pragma: no cover - another Python
    from operator import attrgetter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class Record:
    """Base of immutable value types: fields are `__slots__`, defaults `_defaults`."""

    __slots__: tuple[str, ...] = ()
    _defaults: dict[str, Any] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        fields = self.__slots__
        name = type(self).__name__
        if len(args) > len(fields):
            raise TypeError(f"{name}() takes {len(fields)} arguments, {len(args)} given")
        values = dict(zip(fields, args))
        for key, value in kwargs.items():
            if key not in fields:
                raise TypeError(f"{name}() has no field {key!r}")
            if key in values:
                raise TypeError(f"{name}() got {key!r} twice")
            values[key] = value
        for field in fields:
            if field in values:
                object.__setattr__(self, field, values[field])
            elif field in self._defaults:
                object.__setattr__(self, field, self._defaults[field])
            else:
                raise TypeError(f"{name}() needs {field!r}")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """`_values` for the class, from its __slots__, by a C attrgetter: records on the
        cold path are compared and hashed millions of times."""
        super().__init_subclass__(**kwargs)
        if "_values" in cls.__dict__ or not cls.__slots__:
            return
        get = attrgetter(*cls.__slots__)
        if len(cls.__slots__) == 1:
            cls._values = lambda self: (get(self),)  # type: ignore[method-assign]
        else:
            cls._values = lambda self: get(self)  # type: ignore[method-assign]

    def _values(self) -> tuple[Any, ...]:
        """The fields' values, in __slots__ order."""
        return tuple(getattr(self, field) for field in self.__slots__)

    def replace(self, **changes: Any) -> Record:
        """A copy with the fields in `changes` set to new values."""
        values = dict(zip(self.__slots__, self._values()))
        values.update(changes)
        return type(self)(**values)

    def as_dict(self) -> dict[str, Any]:
        return dict(zip(self.__slots__, self._values()))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot set {name}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot delete {name}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:  # as a frozen dataclass's: sets of them keep the same order
        return hash(self._values())

    def __repr__(self) -> str:
        inner = ", ".join(f"{f}={v!r}" for f, v in zip(self.__slots__, self._values()))
        return f"{type(self).__name__}({inner})"

    def __reduce__(self) -> tuple[Any, ...]:  # pickle and copy: through __init__
        return (type(self), self._values())
