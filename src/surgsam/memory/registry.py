"""The one place that names memory policies: ``register_policy`` adds one, ``make_policy``
builds one by name, and every command line offers :func:`policy_names` as its choices.

A policy of your own is one file plus one registration::

    from surgsam.memory import FifoPolicy, register_policy

    @dataclass
    class KeepEveryOther(FifoPolicy):
        name: str = "every-other"
        ...

    register_policy("every-other", KeepEveryOther)   # then: surgsam segment ... --memory every-other

From the command line, ``--memory my_policies:KeepEveryOther`` imports ``my_policies`` (a module
on the Python path, e.g. ``my_policies.py`` in the working folder) and uses that factory.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable

from .policy import MemoryPolicy

#: ``factory(num_maskmem=..., max_obj_ptrs=...) -> MemoryPolicy`` by name.
PolicyFactory = Callable[..., MemoryPolicy]
_REGISTRY: dict[str, PolicyFactory] = {}
_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


def register_policy(name: str, factory: PolicyFactory, *, replace: bool = False) -> None:
    """Make ``name`` (lower case, digits, ``-`` / ``_``) build ``factory(num_maskmem=,
    max_obj_ptrs=)``; an existing name is refused unless ``replace``."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"a policy name is lower case letters, digits, '-' or '_', got {name!r}")
    if not callable(factory):
        raise TypeError(f"factory must be callable, got {type(factory).__name__}")
    if name in _REGISTRY and not replace:
        raise ValueError(f"memory policy {name!r} is already registered (pass replace=True to override it)")
    _REGISTRY[name] = factory


def unregister_policy(name: str) -> None:
    """Remove a registered policy (tests, plug-ins being unloaded)."""
    _REGISTRY.pop(name, None)


def policy_names() -> tuple[str, ...]:
    """The registered names, in registration order (``fifo``, ``efp``, ``dlm`` first)."""
    return tuple(_REGISTRY)


def lookup_policy(name: str) -> PolicyFactory:
    """The factory of a registered ``name``, or of ``"module:attr"`` (imported)."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"cannot load memory policy {name!r}: {e}") from None
        if not callable(factory):
            raise ValueError(f"memory policy {name!r} is not a class or function")
        return factory
    raise ValueError(
        f"unknown memory policy {name!r}; choose one of {', '.join(_REGISTRY)} "
        "(or module:Class for a policy of your own)"
    )


def make_policy(spec: str | MemoryPolicy, num_maskmem: int = 7, max_obj_ptrs: int = 16) -> MemoryPolicy:
    """A policy from its registered name (or ``"module:attr"``) or a policy object (checked
    against the model's ``num_maskmem`` / ``max_obj_ptrs``)."""
    if isinstance(spec, str):
        spec = lookup_policy(spec)(num_maskmem=num_maskmem, max_obj_ptrs=max_obj_ptrs)
    if not isinstance(spec, MemoryPolicy):
        raise TypeError(f"memory must be a policy name or a MemoryPolicy, got {type(spec).__name__}")
    if spec.num_maskmem != num_maskmem or spec.max_obj_ptrs > max_obj_ptrs:
        raise ValueError(
            f"policy built for num_maskmem={spec.num_maskmem}, max_obj_ptrs={spec.max_obj_ptrs}; "
            f"the model has num_maskmem={num_maskmem}, max_obj_ptrs={max_obj_ptrs}"
        )
    return spec
