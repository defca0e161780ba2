"""Fenced code blocks of the project's markdown (README.md, docs/**/*.md) and the note above each.

A command or code example (a block tagged ``bash``, ``sh``, ``console`` or ``python``) is run by
the tests unless the nearest non-blank line above its opening fence says otherwise::

    <!-- example: parsed only in tests: REASON -->   every command's arguments go through the
                                                     real parser, nothing runs
    <!-- example: not run in tests: REASON -->       nothing is executed
    <!-- example: run in tests: NOTE -->             run (NOTE says how, e.g. random weights)

Output, listings and tables are tagged ``text`` (or a data format, :data:`OTHER_LANGS`); a block
without a tag, or with another one, is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parents[1]

#: Tags of blocks that are examples to run, and of blocks that are not (output, listings, data
#: formats); any other tag is an error, so that a command block cannot escape under a new tag.
EXAMPLE_LANGS = ("bash", "sh", "console", "python")
OTHER_LANGS = ("text", "json", "yaml", "toml")
Mode = Literal["run", "parse", "skip"]
_NOTES: dict[str, Mode] = {"run in tests": "run", "parsed only in tests": "parse", "not run in tests": "skip"}
_FENCE = re.compile(r"^```(\S*)\s*$")
_NOTE = re.compile(r"^<!--\s*example:\s*(.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced block: ``path`` relative to the repository, ``line`` of its opening fence
    (1-based), ``lang`` its tag ("" if none), ``code`` its text, ``mode`` and ``reason`` from
    the ``<!-- example: ... -->`` note above it (``run`` and "" without one)."""

    path: str
    line: int
    lang: str
    code: str
    mode: Mode
    reason: str

    @property
    def name(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def is_example(self) -> bool:
        return self.lang in EXAMPLE_LANGS


def markdown_files(root: Path = ROOT) -> list[Path]:
    """README.md and every markdown file under docs/."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def _note(lines: list[str], fence: int, where: str) -> tuple[Mode, str]:
    above = next((s.strip() for s in reversed(lines[:fence]) if s.strip()), "")
    m = _NOTE.match(above)
    if m is None:
        return "run", ""
    kind, _, reason = m.group(1).partition(":")
    if kind.strip() not in _NOTES or not reason.strip():
        raise ValueError(f"{where}: malformed note {above!r}; expected <!-- example: {' | '.join(_NOTES)}: REASON -->")
    return _NOTES[kind.strip()], reason.strip()


def fenced_blocks(path: Path, root: Path = ROOT) -> list[Block]:
    """The fenced blocks of one markdown file, in order (an unclosed fence is an error)."""
    lines = path.read_text().split("\n")
    rel = path.relative_to(root).as_posix()
    blocks, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].rstrip() == "```"), None)
        if end is None:
            raise ValueError(f"{rel}:{i + 1}: unclosed code fence")
        mode, reason = _note(lines, i, f"{rel}:{i + 1}")
        code = "\n".join(lines[i + 1 : end]) + "\n"
        blocks.append(Block(rel, i + 1, m.group(1), code, mode, reason))
        i = end + 1
    return blocks


def all_blocks(root: Path = ROOT) -> list[Block]:
    return [b for p in markdown_files(root) for b in fenced_blocks(p, root)]
