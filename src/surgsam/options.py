"""Command-line options shared by several subcommands (torch-free until a value is parsed)."""

from __future__ import annotations

import argparse


def memory_policy_name(value: str) -> str:
    """argparse ``type`` of ``--memory``: a registered policy name or ``module:Class``, checked
    against :mod:`surgsam.memory.registry` when parsed (``--help`` does not load torch)."""
    from .memory.registry import lookup_policy

    try:
        lookup_policy(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return value


def add_memory_argument(
    p: argparse.ArgumentParser | argparse._ArgumentGroup, default: str | None = "efp", help: str = ""
) -> None:
    """``--memory``: fifo (SAM 2), efp (SurgSAM2), dlm (ReSurgSAM2), any registered policy or
    ``module:Class`` (see :mod:`surgsam.memory.registry`)."""
    text = (
        "memory policy: fifo (SAM 2), efp (SurgSAM2 pruning), dlm (ReSurgSAM2 long-term), another registered "
        "name, or module:Class for a policy of your own"
    )
    tail = f" (default: {default})" if default is not None else ""
    p.add_argument(
        "--memory",
        default=default,
        type=memory_policy_name,
        metavar="POLICY",
        help=f"{text}{'; ' + help if help else ''}{tail}",
    )


def add_layout_argument(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--layout``: how a dataset folder is read (:data:`surgsam.data.LAYOUTS`; auto recognises it)."""
    from .data import LAYOUTS

    p.add_argument(
        "--layout",
        default="auto",
        choices=LAYOUTS,
        help="dataset layout: auto (default: Meta/ means Ref-EndoVis, instrument_dataset_* / seq_*/left_frames "
        "raw EndoVis 2017 / 2018, else JPEGImages+Annotations VOS), or force vos, ref-endovis, endovis17-raw, "
        "endovis18-raw (e.g. --layout vos for a DAVIS folder that also holds a Meta/ folder)",
    )
