"""Official checkpoints: where they live, what they are, and a small verified downloader.

``surgsam download --list`` prints the table (and the models bundled with the package, which
need no download); ``surgsam download NAME [--dir DIR]`` fetches one
file over HTTPS (Meta's files) or explains how to fetch it by hand (the surgical fine-tunes,
which are published as Google Drive links).

Downloads stream to ``<file>.part``, are checked against the recorded SHA-256 when one is known,
then renamed into place. Checksums are recorded only where a public source lists them (see the
comment on each entry); the others are reported as unverified.
On a machine without network access the download fails within seconds and says where to put
a file copied from elsewhere.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

CONNECT_TIMEOUT_S = 10.0
CHUNK = 1 << 20

_META_V2 = "https://dl.fbaipublicfiles.com/segment_anything_2/072824/"
_META_V21 = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
_SURGSAM2_DRIVE = "https://drive.google.com/file/d/102AsbwpntPfUV96ANO2AWe7L6feskYnM/view?usp=sharing"
_RESURGSAM2_DRIVE = "https://drive.google.com/file/d/12pbQhWdKFNPAYk9IC33CVNbeBded7_wI/view?usp=sharing"


@dataclass(frozen=True)
class CheckpointInfo:
    """One downloadable checkpoint.

    name: what ``surgsam download`` calls it (the file name without extension).
    preset / image_size: the ``build_model`` arguments the file belongs to.
    sha256 / size: expected digest and byte count, or None where no public source lists them.
    manual: True when the file must be fetched by hand from ``url`` (Google Drive).
    """

    name: str
    filename: str
    url: str
    preset: str
    image_size: int
    sha256: str | None = None
    size: int | None = None
    manual: bool = False
    note: str = ""

    @property
    def verified(self) -> bool:
        return self.sha256 is not None


# Checksums: the Git-LFS SHA-256 of the same file names on the Hugging Face Hub. The hub
# copies are assumed to be byte-identical to the dl.fbaipublicfiles.com files (the sizes
# agree and several independent mirrors list the same digests); a mismatch is reported as
# such, and `--no-verify` skips the check.
_ENTRIES = [
    # huggingface.co/facebook/sam2-hiera-tiny, commit a8e4b46 "Upload sam2_hiera_tiny.pt" (LFS oid + size)
    CheckpointInfo(
        "sam2_hiera_tiny",
        "sam2_hiera_tiny.pt",
        _META_V2 + "sam2_hiera_tiny.pt",
        "sam2_hiera_tiny",
        1024,
        "65b50056e05bcb13694174f51bb6da89c894b57b75ccdf0ba6352c597c5d1125",
        155906050,
    ),
    # huggingface.co/facebook/sam2-hiera-small/blob/refs%2Fpr%2F1/sam2_hiera_small.pt (LFS details; also
    # the fffiloni/SAM2-Image-Predictor space copy); exact byte size not listed there
    CheckpointInfo(
        "sam2_hiera_small",
        "sam2_hiera_small.pt",
        _META_V2 + "sam2_hiera_small.pt",
        "sam2_hiera_small",
        1024,
        "95949964d4e548409021d47b22712d5f1abf2564cc0c3c765ba599a24ac7dce3",
        None,
    ),
    # huggingface.co/facebook/sam2-hiera-base-plus (blob 2869890, LFS details) and merve/sam2-hiera-base-plus
    # commit 838f027 (LFS oid + size)
    CheckpointInfo(
        "sam2_hiera_base_plus",
        "sam2_hiera_base_plus.pt",
        _META_V2 + "sam2_hiera_base_plus.pt",
        "sam2_hiera_base_plus",
        1024,
        "d0bb7f236400a49669ffdd1be617959a8b1d1065081789d7bbff88eded3a8071",
        323493298,
    ),
    # huggingface.co/merve/sam2-hiera-large (HF staff upload; LFS details) and the identical LFS oid + size
    # in the sahirp/text_2_segment_any_vid and supersolar/florence-sam-tencent space commits
    CheckpointInfo(
        "sam2_hiera_large",
        "sam2_hiera_large.pt",
        _META_V2 + "sam2_hiera_large.pt",
        "sam2_hiera_large",
        1024,
        "7442e4e9b732a508f80e141e7c2913437a3610ee0c77381a66658c3a445df87b",
        897952466,
    ),
    # huggingface.co/camenduru/sam2-1-hiera commit cdd35a4 (LFS oid + size of all four 2.1 files) and
    # Promethe-us/sam2 commit d105770 (same oid + size)
    CheckpointInfo(
        "sam2.1_hiera_tiny",
        "sam2.1_hiera_tiny.pt",
        _META_V21 + "sam2.1_hiera_tiny.pt",
        "sam2.1_hiera_tiny",
        1024,
        "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69",
        156008466,
    ),
    # huggingface.co/facebook/sam2.1-hiera-small/blob/main/sam2.1_hiera_small.pt (LFS details);
    # size from camenduru/sam2-1-hiera commit cdd35a4
    CheckpointInfo(
        "sam2.1_hiera_small",
        "sam2.1_hiera_small.pt",
        _META_V21 + "sam2.1_hiera_small.pt",
        "sam2.1_hiera_small",
        1024,
        "6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38",
        184416285,
    ),
    # camenduru/sam2-1-hiera commit cdd35a4 and Promethe-us/sam2 commit d105770 (LFS oid + size)
    CheckpointInfo(
        "sam2.1_hiera_base_plus",
        "sam2.1_hiera_base_plus.pt",
        _META_V21 + "sam2.1_hiera_base_plus.pt",
        "sam2.1_hiera_base_plus",
        1024,
        "a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5",
        323606802,
    ),
    # camenduru/sam2-1-hiera commit cdd35a4; same oid + size in tictag-io-demo/sam2.1-hiera-large and the
    # wondervictor/Mask-Adapter space
    CheckpointInfo(
        "sam2.1_hiera_large",
        "sam2.1_hiera_large.pt",
        _META_V21 + "sam2.1_hiera_large.pt",
        "sam2.1_hiera_large",
        1024,
        "2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318",
        898083611,
    ),
    # Surgical fine-tunes: Google Drive links from the authors' READMEs; no published checksums.
    CheckpointInfo(
        "sam2_hiera_s_endo18",
        "sam2_hiera_s_endo18.pth",
        _SURGSAM2_DRIVE,
        "sam2_hiera_small",
        512,
        manual=True,
        note="Surgical SAM 2 (EndoVis18 fine-tune of SAM 2 Hiera-S at 512 px)",
    ),
    CheckpointInfo(
        "sam2.1_hiera_s_ref17",
        "sam2.1_hiera_s_ref17.pth",
        _RESURGSAM2_DRIVE,
        "sam2.1_hiera_small",
        512,
        manual=True,
        note="ReSurgSAM2 Ref-EndoVis17, inside the authors' checkpoint archive; "
        "needs the referring modules (extra keys) to load",
    ),
    CheckpointInfo(
        "sam2.1_hiera_s_ref18",
        "sam2.1_hiera_s_ref18.pth",
        _RESURGSAM2_DRIVE,
        "sam2.1_hiera_small",
        512,
        manual=True,
        note="ReSurgSAM2 Ref-EndoVis18, inside the authors' checkpoint archive; "
        "needs the referring modules (extra keys) to load",
    ),
]
CHECKPOINTS: dict[str, CheckpointInfo] = {e.name: e for e in _ENTRIES}


class DownloadError(RuntimeError):
    """A download that could not be completed (network, HTTP, truncated transfer)."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not have the recorded SHA-256."""


class ManualDownloadRequired(DownloadError):
    """The file is hosted where it cannot be fetched automatically (Google Drive)."""


def list_checkpoints() -> list[CheckpointInfo]:
    return list(CHECKPOINTS.values())


def get_checkpoint_info(name: str) -> CheckpointInfo:
    key = name
    for suffix in (".pt", ".pth"):
        key = key[: -len(suffix)] if key.endswith(suffix) else key
    if key not in CHECKPOINTS:
        raise KeyError(f"unknown checkpoint {name!r}; known: {', '.join(CHECKPOINTS)}")
    return CHECKPOINTS[key]


def default_checkpoint_dir() -> Path:
    """``$SURGSAM_CHECKPOINT_DIR`` or ``~/.cache/surgsam/checkpoints``."""
    env = os.environ.get("SURGSAM_CHECKPOINT_DIR")
    return Path(env) if env else Path.home() / ".cache" / "surgsam" / "checkpoints"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def download(
    name: str,
    directory: str | Path | None = None,
    *,
    verify: bool = True,
    force: bool = False,
    timeout: float = CONNECT_TIMEOUT_S,
    progress: bool = True,
) -> Path:
    """Fetch the checkpoint ``name`` (see :data:`CHECKPOINTS`) into ``directory``; returns its path.

    An existing file is kept when it verifies (or when no checksum is known), unless ``force``.
    Raises :class:`ManualDownloadRequired` for files hosted on Google Drive, and
    :class:`DownloadError` / :class:`ChecksumError` when the transfer fails.
    """
    info = get_checkpoint_info(name)
    directory = Path(directory) if directory is not None else default_checkpoint_dir()
    dest = directory / info.filename
    if info.manual:
        if dest.is_file() and not force:
            _say(f"{dest} is in place; not verified (no published checksum).")
            return dest
        raise ManualDownloadRequired(
            f"{info.name} is published on Google Drive, which surgsam does not download automatically.\n"
            f"  1. open {info.url} in a browser and download it"
            + (" (an archive: unzip it)" if "archive" in info.note else "")
            + f"\n  2. place {info.filename} at {dest}\n"
            f"  then: build_model({info.preset!r}, image_size={info.image_size}, checkpoint={str(dest)!r})"
        )
    sha = info.sha256 if verify else None
    if dest.exists() and not force:
        if sha is None:
            _say(
                f"{dest} already exists; not verified ({'--no-verify' if info.sha256 else 'no published checksum'}). "
                f"Use --force to download again."
            )
            return dest
        if sha256_file(dest) == sha:
            _say(f"{dest} already exists and its sha256 matches.")
            return dest
        raise ChecksumError(f"{dest} exists but its sha256 does not match {sha}; delete it or use --force")
    return download_url(
        info.url, dest, sha256=sha, expected_size=info.size if verify else None, timeout=timeout, progress=progress
    )


def download_url(
    url: str,
    dest: str | Path,
    *,
    sha256: str | None = None,
    expected_size: int | None = None,
    timeout: float = CONNECT_TIMEOUT_S,
    progress: bool = True,
) -> Path:
    """Stream ``url`` to ``dest`` via ``dest.part``; verify ``sha256`` if given; rename into place.

    ``timeout`` bounds name resolution, connecting and every read, so an offline machine
    fails within seconds.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    _resolve_host(url, dest, timeout, sha256)
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": "surgsam"}), timeout=timeout)
    except urllib.error.HTTPError as e:
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise _offline_error(url, dest, getattr(e, "reason", e), sha256) from None
    h = hashlib.sha256()
    got = 0
    try:
        with resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if expected_size is not None and total is not None and total != expected_size:
                raise ChecksumError(
                    f"{url} announces {total} bytes but the recorded size is {expected_size}: "
                    f"not the expected file (use --no-verify to accept it anyway)"
                )
            bar = _progress_bar(total, dest.name, progress)
            try:
                with open(part, "wb") as f:
                    while True:
                        try:
                            block = resp.read(CHUNK)
                        except (socket.timeout, TimeoutError, OSError) as e:
                            raise DownloadError(f"{url}: connection lost after {got} bytes ({e})") from None
                        if not block:
                            break
                        f.write(block)
                        h.update(block)
                        got += len(block)
                        bar(len(block))
            finally:
                bar(None)
        if total is not None and got != total:
            raise DownloadError(f"{url}: transfer ended after {got} of {total} bytes")
        digest = h.hexdigest()
        if sha256 is not None and digest != sha256.lower():
            raise ChecksumError(
                f"{url}: sha256 mismatch: got {digest}, expected {sha256}. The file was removed; "
                f"retry, or use --no-verify if the upstream file has legitimately changed"
            )
        os.replace(part, dest)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    if sha256 is None:
        _say(f"saved {dest} ({got} bytes), UNVERIFIED: no checksum to compare with; its sha256 is {digest}")
    else:
        _say(f"saved {dest} ({got} bytes), sha256 verified")
    return dest


def _resolve_host(url: str, dest: Path, timeout: float, sha256: str | None = None) -> None:
    """Resolve the host within ``timeout``: ``getaddrinfo`` ignores socket timeouts and can
    hang for a long time on a machine without working DNS."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname
    if not host:
        raise DownloadError(f"not a downloadable URL: {url}")
    box: dict[str, BaseException | None] = {"err": None}

    def run() -> None:
        try:
            socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80))
        except BaseException as e:  # reported to the caller below
            box["err"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise _offline_error(url, dest, f"no answer resolving {host} within {timeout:g} s", sha256)
    if box["err"] is not None:
        raise _offline_error(url, dest, f"cannot resolve {host}: {box['err']}", sha256)


def _offline_error(url: str, dest: Path, reason: object, sha256: str | None = None) -> DownloadError:
    check = f" (expected sha256 {sha256}; running the same command again then verifies it)" if sha256 else ""
    return DownloadError(
        f"could not reach {url} ({reason}).\n"
        f"This machine seems to be offline (or the host is blocked). Download the file on a machine "
        f"with network access and copy it to {dest}{check}"
    )


def _progress_bar(total: int | None, label: str, enabled: bool):
    """A callable taking byte counts (None closes it); tqdm when available and enabled."""
    if not enabled:
        return lambda n: None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return lambda n: None
    bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label, file=sys.stderr, leave=False)

    def update(n: int | None) -> None:
        if n is None:
            bar.close()
        else:
            bar.update(n)

    return update


# ---------------------------------------------------------------------- CLI
def register(subparsers) -> None:
    """Add ``surgsam download``."""
    p = subparsers.add_parser(
        "download",
        help="download an official checkpoint (or show how to get it)",
        description="Download a checkpoint listed by --list; Google Drive files are explained, not fetched.",
    )
    p.add_argument("name", nargs="?", help="checkpoint name (see --list)")
    p.add_argument("--list", action="store_true", help="list the known checkpoints")
    p.add_argument("--dir", default=None, help=f"target folder (default {default_checkpoint_dir()})")
    p.add_argument("--force", action="store_true", help="download again even if the file exists")
    p.add_argument("--no-verify", action="store_true", help="skip the sha256 check")
    p.add_argument("--timeout", type=float, default=CONNECT_TIMEOUT_S, help="network timeout in seconds")
    p.set_defaults(func=_cmd_download)


def _cmd_download(args: argparse.Namespace) -> int:
    if args.list or not args.name:
        _print_table()
        _print_embedded()
        if not args.list:
            print("\nusage: surgsam download NAME [--dir DIR]", file=sys.stderr)
            return 2
        return 0
    from .modeling.embedded import EMBEDDED_MODELS, embedded_path

    if args.name in EMBEDDED_MODELS:  # nothing to fetch: say where the bundled file is
        try:
            path = embedded_path(args.name)
        except FileNotFoundError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(path)
        print(
            f"{args.name} is bundled with surgsam (no download needed): pass --checkpoint {args.name}", file=sys.stderr
        )
        return 0
    try:
        t0 = time.perf_counter()
        path = download(args.name, args.dir, verify=not args.no_verify, force=args.force, timeout=args.timeout)
    except KeyError as e:
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 2
    except ManualDownloadRequired as e:
        print(str(e), file=sys.stderr)
        return 3
    except DownloadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    info = get_checkpoint_info(args.name)
    print(path)
    print(
        f"load with: surgsam.build_model({info.preset!r}, image_size={info.image_size}, checkpoint={str(path)!r})"
        f"  [{time.perf_counter() - t0:.1f} s]",
        file=sys.stderr,
    )
    return 0


def _print_embedded() -> None:
    """The models bundled in the package (no download): name, size, what they are."""
    from .modeling.embedded import EMBEDDED_MODELS, embedded_path

    print("\nbundled with surgsam (no download; pass the name as --checkpoint):")
    for m in EMBEDDED_MODELS.values():
        try:
            size = f"{embedded_path(m.name).stat().st_size / 1e6:.1f} MB"
        except FileNotFoundError:
            size = "not in this installation"
        print(f"  {m.name}  ({size}, bundled)  {m.summary}")
        if m.card:
            print(f"    model card: {m.card}")


def _print_table() -> None:
    rows = [("name", "preset", "px", "sha256", "source")]
    for e in list_checkpoints():
        src = "Google Drive (by hand)" if e.manual else e.url
        rows.append((e.name, e.preset, str(e.image_size), e.sha256[:12] + "..." if e.sha256 else "unverified", src))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4])
