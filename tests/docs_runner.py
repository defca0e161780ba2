"""Runs, or only parses, the command and code examples of the markdown files (markdown_blocks).

Used by ``tests/test_docs_examples.py``: in its own process it runs one markdown file's
runnable blocks (``python tests/docs_runner.py JOB.json``: each block in a fresh sandbox
folder, in order, torch imported once); in the test process it parses the commands of
``parsed only`` blocks.

A bash block is read as a small subset of bash: backslash-newline joins lines, ``#`` starts a
comment, ``NAME=value`` lines set variables that ``$NAME`` / ``${NAME}`` expand, and
``setsid`` / ``nohup`` prefixes, redirections and a trailing ``&`` are dropped (only allowed in
blocks that are not run). A command is

* ``surgsam ARGS`` or ``python -m MODULE ARGS``: the real entry point, run in this process
  (``surgsam`` is ``python -m surgsam``: ``surgsam.cli.run``, the console script's function);
* ``python SCRIPT.py ARGS`` (a path relative to the repository, e.g. ``benchmarks/``);
* ``torchrun [OPTIONS] -m MODULE ARGS`` and ``make TARGET``: parsed only (the module's parser;
  ``make -n``);
* ``cd``, ``mkdir -p``, ``cp``, ``tail``: done here.

Anything else (``pip``, ...) can only sit in a ``not run in tests`` block.

Parsing a command runs its program until its own (outermost) ``ArgumentParser.parse_args`` or
``parse_known_args`` call returns, then stops it: unknown flags and bad values fail exactly as
they would for a user, and nothing else of the program runs.

Running a command first applies :data:`SMALLER` and the other substitutions of
:func:`substitute` (the documented values take minutes to hours; these take seconds).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]

#: (command, flag) -> the largest value the test uses ("*": any command; a smaller number is
#: kept). The command is the ``surgsam`` subcommand, the module of ``python -m``, or the
#: script's file name.
SMALLER: dict[tuple[str, str], str] = {
    ("synth", "--videos"): "2",
    ("synth", "--valid"): "1",
    ("synth", "--frames"): "4",
    ("synth", "--workers"): "1",
    ("bench", "--frames"): "4",
    ("bench", "--warmup"): "1",
    ("train", "--steps"): "2",
    ("*", "--threads"): "1",
}
#: command -> flags added when the command does not give them (their defaults take minutes).
APPENDED: dict[str, tuple[str, str]] = {"synth": ("--frames", "4"), "train": ("--steps", "2")}
#: Dataset folders the docs read (any argument of any command but ``synth``, which makes
#: them), when the block has not made them itself -> which of the test's tiny synthetic
#: datasets stands in (``train`` for ``surgsam train``, whatever the folder).
DATASETS: dict[str, str] = {
    "data/synth-nano": "train",
    "data/synth-heldout": "eval",
    "data/synth-heldout-b": "eval",
    "data/synth": "eval",
    "data/EndoVis18": "train",
    "data/Ref-Endovis18": "eval",
    "data/Ref-EndoVis17": "train",
}
#: Official weight files (Meta's, SurgSAM2's, ReSurgSAM2's): cannot be downloaded here. A
#: command given one runs with random weights of the same preset (``--checkpoint`` dropped,
#: ``--untrained`` added where the command has it) at 128 px instead of 512.
OFFICIAL = re.compile(r"^sam2(\.1)?_hiera_\w+?(_endo1[78]|_ref1[78])?\.(pt|pth)$")
OFFICIAL_IMAGE_SIZE = ("512", "128")
#: Python examples: ``steps=N`` -> 2, and the dataset paths above as string literals.
PY_STEPS = (re.compile(r"\bsteps=\d+"), "steps=2")


@dataclass(frozen=True)
class Command:
    """One command of a block: ``argv`` after expansion, ``text`` as written (one line),
    ``background`` when it ended with ``&``, ``redirected`` when it had redirections."""

    argv: tuple[str, ...]
    text: str
    background: bool = False
    redirected: bool = False


_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
_ASSIGN = re.compile(r"^([A-Za-z_]\w*)=(.*)$")
_REDIRECT = re.compile(r"^\d*(>>?|<)(&\d+)?$")


def shell_commands(code: str, lang: str = "bash") -> list[Command]:
    """The commands of a bash / sh / console block (see the module docstring)."""
    if lang == "console":  # only the "$ " lines are commands, the rest is their output
        code = "\n".join(s[2:] for s in code.split("\n") if s.startswith("$ "))
    env: dict[str, str] = {}

    def expand(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        if name not in env:
            raise ValueError(f"${name} is used before the block sets it")
        return env[name]

    out = []
    for line in code.replace("\\\n", "").split("\n"):
        words = shlex.split(_VAR.sub(expand, line), comments=True)
        if not words:
            continue
        if len(words) == 1 and (m := _ASSIGN.match(words[0])):
            env[m.group(1)] = m.group(2)
            continue
        background = words[-1] == "&"
        words = words[:-1] if background else words
        while words and words[0] in ("setsid", "nohup"):
            words = words[1:]
        kept: list[str] = []
        redirected, skip = False, False
        for w in words:
            if skip:
                skip = False
            elif _REDIRECT.match(w):
                redirected = True
                skip = not w.endswith(("&1", "&2"))  # "> FILE": drop FILE too
            else:
                kept.append(w)
        out.append(Command(tuple(kept), " ".join(line.split()), background, redirected))
    return out


# ------------------------------------------------------------------------------------ programs
Kind = Literal["module", "script", "torchrun", "make", "shell"]


@dataclass(frozen=True)
class Program:
    """What a command runs: ``kind``, ``target`` (the module, the script path, the make
    target, the shell command), ``args`` and the ``key`` that :data:`SMALLER` is looked up by."""

    kind: Kind
    target: str
    args: tuple[str, ...]
    key: str


def program(argv: tuple[str, ...]) -> Program:
    """What ``argv`` runs; ValueError for a command the test can neither run nor parse."""
    head, rest = argv[0], argv[1:]
    if head == "surgsam":
        return Program("module", "surgsam", rest, rest[0] if rest else "")
    if head in ("python", "python3") and rest[:1] == ("-m",) and len(rest) > 1:
        return Program("module", rest[1], rest[2:], rest[1])
    if head in ("python", "python3") and rest and rest[0].endswith(".py"):
        return Program("script", rest[0], rest[1:], Path(rest[0]).name)
    if head == "torchrun" and "-m" in rest:
        i = rest.index("-m")
        mod, args = rest[i + 1], rest[i + 2 :]
        return Program("torchrun", mod, args, args[0] if mod == "surgsam" and args else mod)
    if head == "make" and len(rest) == 1:
        return Program("make", rest[0], (), "make")
    if head in ("cd", "mkdir", "cp", "tail"):
        return Program("shell", head, rest, head)
    raise ValueError(
        f"not a command this test knows how to run or parse: {' '.join(argv)!r}; "
        "mark the block <!-- example: not run in tests: REASON -->"
    )


def command_line(prog: Program) -> str:
    """A module or script program as the shell command line that runs it."""
    head = ("python", prog.target) if prog.kind == "script" else ("python", "-m", prog.target)
    return shlex.join((("surgsam",) if prog.target == "surgsam" else head) + prog.args)


class _Parsed(BaseException):  # not an Exception: no handler of the program may swallow it
    def __init__(self, namespace: argparse.Namespace):
        self.namespace = namespace


@contextlib.contextmanager
def _argv(argv: list[str]) -> Iterator[None]:
    old = sys.argv
    sys.argv = argv
    try:
        yield
    finally:
        sys.argv = old


def _exec_python(prog: Program) -> int:
    """Runs a module / script program in this process as ``python -m`` / ``python`` would;
    returns its exit status."""
    try:
        if prog.kind == "script":
            path = Path(prog.target)
            if not path.is_absolute() and not path.exists():
                path = ROOT / path  # benchmarks/..., as run from the repository root
            with _argv([str(path), *prog.args]):
                sys.path.insert(0, str(path.parent))
                try:
                    runpy.run_path(str(path), run_name="__main__")
                finally:
                    sys.path.remove(str(path.parent))
        else:
            with _argv([prog.target, *prog.args]):
                runpy.run_module(prog.target, run_name="__main__", alter_sys=True)
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)
        return 1
    return 0


def parse(prog: Program) -> argparse.Namespace:
    """The namespace the program's own parser makes of its arguments; AssertionError with
    the parser's message when it rejects them."""
    if prog.kind == "make":
        r = subprocess.run(["make", "-n", "-C", str(ROOT), prog.target], capture_output=True, text=True)
        assert r.returncode == 0, f"make -n {prog.target}: {r.stderr.strip()}"
        return argparse.Namespace()
    if prog.kind == "shell":
        return argparse.Namespace()
    orig_args, orig_known = argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args
    depth = [0]  # the program's own call is the outermost one (subparsers call parse_known_args inside)

    def parse_args(self, args=None, namespace=None):
        depth[0] += 1
        try:
            ns = orig_args(self, args, namespace)
        finally:
            depth[0] -= 1
        if depth[0] == 0:
            raise _Parsed(ns)
        return ns

    def parse_known_args(self, args=None, namespace=None):
        depth[0] += 1
        try:
            ns, unknown = orig_known(self, args, namespace)
        finally:
            depth[0] -= 1
        if depth[0] == 0:
            if unknown:
                self.error(f"unrecognized arguments: {' '.join(unknown)}")
            raise _Parsed(ns)
        return ns, unknown

    err = io.StringIO()
    kind = "module" if prog.kind == "torchrun" else prog.kind
    try:
        with (
            mock.patch.object(argparse.ArgumentParser, "parse_args", parse_args),
            mock.patch.object(argparse.ArgumentParser, "parse_known_args", parse_known_args),
            contextlib.redirect_stderr(err),
        ):
            rc = _exec_python(Program(kind, prog.target, prog.args, prog.key))
    except _Parsed as p:
        return p.namespace
    raise AssertionError(f"exit status {rc} before its arguments were parsed: {err.getvalue().strip()[-2000:]}")


# ---------------------------------------------------------------------------- substitutions
def _flag_value(args: list[str], flag: str) -> int | None:
    """Index of ``flag``'s value in ``args`` (``--flag V``), or None."""
    for i, a in enumerate(args[:-1]):
        if a == flag:
            return i + 1
    return None


def in_sandbox(args: tuple[str, ...]) -> list[str]:
    """Absolute folders the docs write to, moved into the sandbox: ``/work`` (the project
    machine's data and runs: ``/work/x`` -> ``x``) and ``/tmp`` (``/tmp/x`` -> ``tmp/x``)."""

    def move(a: str) -> str:
        if a == "/work" or a.startswith("/work/"):
            return a[len("/work/") :] or "."
        return a[1:] if a == "/tmp" or a.startswith("/tmp/") else a

    return [move(a) for a in args]


def substitute(prog: Program, cwd: Path, datasets: dict[str, Path]) -> tuple[Program, bool]:
    """The program with the test's substitutions: :data:`SMALLER` values, :data:`APPENDED`
    flags, ``/work`` and ``/tmp`` paths moved into the sandbox (:func:`in_sandbox`), the
    :data:`DATASETS` stand-ins, official weights dropped (:data:`OFFICIAL`); and whether
    weights were dropped (``cwd``: the sandbox, where a block may have made a dataset)."""
    args = in_sandbox(prog.args)
    for i, a in enumerate(args[:-1]):
        cap = SMALLER.get((prog.key, a), SMALLER.get(("*", a)))
        if cap is not None:
            args[i + 1] = str(min(int(args[i + 1]), int(cap))) if args[i + 1].isdigit() else cap
    if prog.key in APPENDED and APPENDED[prog.key][0] not in args:
        args += APPENDED[prog.key]
    for i, a in enumerate(args):
        name = a.rstrip("/")
        if prog.key != "synth" and name in DATASETS and not (cwd / name).exists():
            args[i] = str(datasets["train" if prog.key == "train" else DATASETS[name]])
    dropped = False
    i = _flag_value(args, "--checkpoint")
    if i is not None and OFFICIAL.match(Path(args[i]).name) and not (cwd / args[i]).exists():
        del args[i - 1 : i + 1]
        dropped = True
        j = _flag_value(args, "--image-size")
        if j is not None and args[j] == OFFICIAL_IMAGE_SIZE[0]:
            args[j] = OFFICIAL_IMAGE_SIZE[1]
    return Program(prog.kind, prog.target, tuple(args), prog.key), dropped


def substitute_python(code: str, datasets: dict[str, Path]) -> str:
    """A Python example with :data:`PY_STEPS` and the :data:`DATASETS` stand-ins."""
    code = PY_STEPS[0].sub(PY_STEPS[1], code)
    for name, which in DATASETS.items():
        code = code.replace(repr(name), repr(str(datasets[which]))).replace(f'"{name}"', repr(str(datasets[which])))
    return code


# -------------------------------------------------------------------------------- running
def _shell(prog: Program, cwd: Path) -> None:
    a = in_sandbox(prog.args)
    if prog.target == "cd":
        os.chdir(a[0] if a else cwd)
    elif prog.target == "mkdir":
        for p in (x for x in a if x != "-p"):
            os.makedirs(p, exist_ok="-p" in a)
    elif prog.target == "cp":
        shutil.copy(a[0], a[1])
    elif prog.target == "tail":
        n = int(a[a.index("-n") + 1]) if "-n" in a else 10
        print("".join(Path(a[-1]).read_text().splitlines(keepends=True)[-n:]), end="")


def run_command(cmd: Command, cwd: Path, datasets: dict[str, Path]) -> None:
    """Runs one command of a runnable block (after :func:`substitute`); AssertionError when
    it fails or cannot be run here."""
    assert not cmd.background, "a background command (&) cannot be run by the test: mark the block"
    prog = program(cmd.argv)
    assert prog.kind in ("module", "script", "shell"), f"{prog.kind} is only parsed by the test: mark the block"
    if prog.kind == "shell":
        _shell(prog, cwd)
        return
    prog, dropped = substitute(prog, Path.cwd(), datasets)
    ns = parse(prog)
    extra = []
    if dropped and getattr(ns, "untrained", None) is False:
        extra.append("--untrained")
    if hasattr(ns, "threads") and "--threads" not in prog.args:
        extra += ["--threads", "1"]
    prog = Program(prog.kind, prog.target, prog.args + tuple(extra), prog.key)
    print(f"$ {command_line(prog)}", flush=True)
    rc = _exec_python(prog)
    assert rc == 0, f"exit status {rc}"


def run_block(lang: str, code: str, sandbox: Path, datasets: dict[str, Path]) -> None:
    """Runs one block in ``sandbox``: a Python one in a fresh namespace, a shell one command
    by command (AssertionError naming the command that failed)."""
    os.chdir(sandbox)
    if lang == "python":
        exec(compile(substitute_python(code, datasets), "<example>", "exec"), {"__name__": "example"})
        return
    for cmd in shell_commands(code, lang):
        print(f"# {cmd.text}", flush=True)
        try:
            run_command(cmd, sandbox, datasets)
        except Exception as e:
            raise AssertionError(f"{cmd.text}\n  -> {e}") from e


def main(job_file: str) -> int:
    """Runs the blocks of a job (JSON: ``blocks`` [{name, lang, code, sandbox}], ``datasets``
    {name: path}, ``results``: where the outcome goes)."""
    import torch

    torch.set_num_threads(1)
    job = json.loads(Path(job_file).read_text())
    datasets = {k: Path(v) for k, v in job["datasets"].items()}
    results = []
    for b in job["blocks"]:
        print(f"=== {b['name']}", flush=True)
        t0, error = time.perf_counter(), None
        try:
            run_block(b["lang"], b["code"], Path(b["sandbox"]), datasets)
        except (Exception, SystemExit) as e:  # a block's failure is reported, the next block runs
            error = "".join(traceback.format_exception_only(type(e), e)).strip()
            if not isinstance(e, AssertionError):
                traceback.print_exc()
        results.append({"name": b["name"], "error": error, "seconds": round(time.perf_counter() - t0, 1)})
        print(f"=== {b['name']}: {'ok' if error is None else 'FAILED'}", flush=True)
        Path(job["results"]).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
