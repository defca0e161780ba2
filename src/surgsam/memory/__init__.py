"""Memory banks and the policies that bound them: fifo (SAM 2), efp (SurgSAM2), dlm (ReSurgSAM2)."""

from __future__ import annotations

from .bank import MemoryBank, MemoryEntry, Selection, position_cosine
from .dlm import DLMPolicy, DLMState
from .efp import EFPPolicy
from .policy import FifoPolicy, MemoryPolicy
from .registry import make_policy, policy_names, register_policy, unregister_policy

register_policy("fifo", FifoPolicy, replace=True)
register_policy("efp", EFPPolicy, replace=True)
register_policy("dlm", DLMPolicy, replace=True)

__all__ = [
    "MemoryBank",
    "MemoryEntry",
    "Selection",
    "position_cosine",
    "MemoryPolicy",
    "FifoPolicy",
    "EFPPolicy",
    "DLMPolicy",
    "DLMState",
    "make_policy",
    "policy_names",
    "register_policy",
    "unregister_policy",
]
