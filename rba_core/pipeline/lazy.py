"""``lazy_property``: a value computed on first use, then kept on the instance.

Like ``functools.cached_property`` without its class-wide lock (Python 3.10 and 3.11 hold one lock
for every instance's first access, so two frames encoded on two threads would compute their
ground products one after the other). Two threads reading the same instance at once may both
compute it; the products here are pure, so either result is the same.
"""
from __future__ import annotations

from typing import Any, Callable


def lazy_property(fn: Callable[[Any], Any]) -> property:
    name = fn.__name__

    def get(self):
        cache = self.__dict__
        if name not in cache:
            cache[name] = fn(self)
        return cache[name]

    get.__doc__ = fn.__doc__
    return property(get)
