"""Named variants (perturbations, scorers, normalisers, aggregators), registered like fairseq's.

A :class:`Registry` is a dict of name -> object with a ``register(name)`` decorator that refuses
duplicates and a ``get(name)`` whose error lists the choices.
"""
from typing import Callable, Dict, Generic, TypeVar

from .errors import OptionError

T = TypeVar("T")


class Registry(Dict[str, T], Generic[T]):
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable[[T], T]:
        def wrap(obj: T) -> T:
            if name in self:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self[name] = obj
            return obj

        return wrap

    def register_class(self, name: str) -> Callable[[T], T]:
        """``register(name)`` for a class that also learns its name (``cls.name``)."""
        def wrap(cls: T) -> T:
            cls.name = name
            return self.register(name)(cls)

        return wrap

    def get(self, name: str) -> T:  # type: ignore[override]
        try:
            return self[name]
        except KeyError:
            raise OptionError(f"unknown {self.kind} {name!r}; choose from {sorted(self)}") from None
