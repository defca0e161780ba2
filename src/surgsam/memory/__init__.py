"""Memory banks and the policies that bound them: fifo (SAM 2), efp (SurgSAM2), dlm (ReSurgSAM2)."""

from __future__ import annotations

from .bank import MemoryBank, MemoryEntry, Selection, position_cosine
from .dlm import DLMPolicy
from .efp import EFPPolicy
from .policy import FifoPolicy, MemoryPolicy

POLICIES = {"fifo": FifoPolicy, "efp": EFPPolicy, "dlm": DLMPolicy}


def make_policy(spec: str | MemoryPolicy, num_maskmem: int = 7, max_obj_ptrs: int = 16) -> MemoryPolicy:
    """A policy from its name (``"fifo" | "efp" | "dlm"``) or a policy object (checked
    against the model's ``num_maskmem`` / ``max_obj_ptrs``)."""
    if isinstance(spec, str):
        if spec not in POLICIES:
            raise ValueError(f"unknown memory policy {spec!r}; choose one of {sorted(POLICIES)}")
        return POLICIES[spec](num_maskmem=num_maskmem, max_obj_ptrs=max_obj_ptrs)
    if not isinstance(spec, MemoryPolicy):
        raise TypeError(f"memory must be a policy name or a MemoryPolicy, got {type(spec).__name__}")
    if spec.num_maskmem != num_maskmem or spec.max_obj_ptrs > max_obj_ptrs:
        raise ValueError(
            f"policy built for num_maskmem={spec.num_maskmem}, max_obj_ptrs={spec.max_obj_ptrs}; "
            f"the model has num_maskmem={num_maskmem}, max_obj_ptrs={max_obj_ptrs}"
        )
    return spec


__all__ = [
    "MemoryBank", "MemoryEntry", "Selection", "position_cosine", "MemoryPolicy", "FifoPolicy",
    "EFPPolicy", "DLMPolicy", "POLICIES", "make_policy",
]
