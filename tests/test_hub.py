"""Checkpoint table and downloader (``surgsam.hub``), against a local HTTP server only."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import os
import re
import socket
import threading
import time

import pytest

from surgsam import hub
from surgsam.cli import main
from surgsam.modeling import list_presets

PAYLOAD = os.urandom(300_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    """/file: the payload; /short: announces more bytes than it sends; anything else: 404."""

    def do_GET(self):  # noqa: N802 (http.server API)
        if self.path == "/file.pt":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            for i in range(0, len(PAYLOAD), 65536):
                self.wfile.write(PAYLOAD[i : i + 65536])
        elif self.path == "/short.pt":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[:1000])
        else:
            self.send_error(404, "not here")

    def log_message(self, *args):  # keep test output quiet
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # clients that hang up early are expected
        pass


@pytest.fixture(scope="module")
def server():
    httpd = _QuietServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------- the table
def test_table_is_consistent():
    presets = set(list_presets())
    names = [e.name for e in hub.list_checkpoints()]
    assert len(names) == len(set(names))
    assert {f"sam2{v}_hiera_{s}" for v in ("", ".1") for s in ("tiny", "small", "base_plus", "large")} <= set(names)
    for e in hub.list_checkpoints():
        assert e.preset in presets, e
        assert e.image_size in (512, 1024)
        assert e.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", e.sha256), e
        assert e.filename.startswith(e.name)
        if e.manual:
            assert e.url.startswith("https://drive.google.com/") and e.sha256 is None
        else:
            assert e.url.startswith("https://dl.fbaipublicfiles.com/segment_anything_2/")
            assert e.url.endswith("/" + e.filename)
            assert ("/092824/" in e.url) == e.name.startswith("sam2.1")
    assert hub.get_checkpoint_info("sam2_hiera_s_endo18").image_size == 512
    assert hub.get_checkpoint_info("sam2.1_hiera_small.pt").name == "sam2.1_hiera_small"
    with pytest.raises(KeyError, match="unknown checkpoint"):
        hub.get_checkpoint_info("sam3")


# ---------------------------------------------------------------------- downloading
def test_download_verified(server, tmp_path, capsys):
    dest = hub.download_url(f"{server}/file.pt", tmp_path / "sub" / "file.pt", sha256=SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert sorted(p.name for p in dest.parent.iterdir()) == ["file.pt"]  # no .part left behind
    assert "sha256 verified" in capsys.readouterr().err


def test_download_unverified_says_so(server, tmp_path, capsys):
    dest = hub.download_url(f"{server}/file.pt", tmp_path / "file.pt", sha256=None, progress=False)
    assert dest.read_bytes() == PAYLOAD
    err = capsys.readouterr().err
    assert "UNVERIFIED" in err and SHA in err


def test_checksum_mismatch(server, tmp_path):
    with pytest.raises(hub.ChecksumError, match="sha256 mismatch"):
        hub.download_url(f"{server}/file.pt", tmp_path / "file.pt", sha256="0" * 64, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_size_announced_differs(server, tmp_path):
    with pytest.raises(hub.ChecksumError, match="recorded size"):
        hub.download_url(f"{server}/file.pt", tmp_path / "file.pt", sha256=SHA, expected_size=123, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_truncated_transfer(server, tmp_path):
    with pytest.raises(hub.DownloadError):
        hub.download_url(f"{server}/short.pt", tmp_path / "short.pt", timeout=2, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_http_error(server, tmp_path):
    with pytest.raises(hub.DownloadError, match="HTTP 404"):
        hub.download_url(f"{server}/missing.pt", tmp_path / "missing.pt", progress=False)


def test_unreachable_fails_fast(tmp_path):
    url = f"http://127.0.0.1:{_unused_port()}/sam2.1_hiera_tiny.pt"
    t = time.perf_counter()
    with pytest.raises(hub.DownloadError) as e:
        hub.download_url(url, tmp_path / "x.pt", progress=False)
    assert time.perf_counter() - t < 5
    msg = str(e.value)
    assert url in msg and "offline" in msg and str(tmp_path / "x.pt") in msg


def test_silent_server_times_out(tmp_path):
    """A host that accepts the connection but never answers: bounded by the timeout."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)  # never accept()ed: connect succeeds, no response ever comes
        url = f"http://127.0.0.1:{s.getsockname()[1]}/x.pt"
        t = time.perf_counter()
        with pytest.raises(hub.DownloadError, match="could not reach"):
            hub.download_url(url, tmp_path / "x.pt", timeout=0.5, progress=False)
        assert time.perf_counter() - t < 5


@pytest.fixture
def local_entry(server, monkeypatch):
    """A table entry that points at the local server."""
    e = dataclasses.replace(
        hub.CHECKPOINTS["sam2.1_hiera_tiny"],
        name="local_test",
        filename="local_test.pt",
        url=f"{server}/file.pt",
        sha256=SHA,
        size=len(PAYLOAD),
    )
    monkeypatch.setitem(hub.CHECKPOINTS, "local_test", e)
    return e


def test_download_by_name_and_reuse(local_entry, tmp_path, capsys):
    path = hub.download("local_test", tmp_path, progress=False)
    assert path == tmp_path / "local_test.pt" and path.read_bytes() == PAYLOAD
    capsys.readouterr()
    assert hub.download("local_test", tmp_path, progress=False) == path
    assert "already exists and its sha256 matches" in capsys.readouterr().err
    path.write_bytes(b"corrupt")
    with pytest.raises(hub.ChecksumError, match="exists but its sha256"):
        hub.download("local_test", tmp_path, progress=False)
    assert hub.download("local_test", tmp_path, force=True, progress=False).read_bytes() == PAYLOAD


def test_cli_download(local_entry, tmp_path, capsys):
    assert main(["download", "local_test", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert str(tmp_path / "local_test.pt") in out.out and "build_model('sam2.1_hiera_tiny'" in out.err


def test_cli_download_offline_is_fast(monkeypatch, tmp_path, capsys):
    e = dataclasses.replace(hub.CHECKPOINTS["sam2.1_hiera_tiny"], url=f"http://127.0.0.1:{_unused_port()}/t.pt")
    monkeypatch.setitem(hub.CHECKPOINTS, "sam2.1_hiera_tiny", e)
    t = time.perf_counter()
    assert main(["download", "sam2.1_hiera_tiny", "--dir", str(tmp_path)]) == 1
    assert time.perf_counter() - t < 5
    err = capsys.readouterr().err
    assert "offline" in err and e.url in err and e.sha256 in err


def test_google_drive_entries_are_manual(tmp_path, capsys):
    with pytest.raises(hub.ManualDownloadRequired) as e:
        hub.download("sam2_hiera_s_endo18", tmp_path)
    msg = str(e.value)
    assert "102AsbwpntPfUV96ANO2AWe7L6feskYnM" in msg and str(tmp_path / "sam2_hiera_s_endo18.pth") in msg
    assert "image_size=512" in msg
    assert main(["download", "sam2.1_hiera_s_ref17", "--dir", str(tmp_path)]) == 3
    assert "12pbQhWdKFNPAYk9IC33CVNbeBded7_wI" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    placed = tmp_path / "sam2_hiera_s_endo18.pth"  # fetched by hand: then it is simply found
    placed.write_bytes(b"weights")
    assert hub.download("sam2_hiera_s_endo18", tmp_path) == placed
    assert "not verified" in capsys.readouterr().err


def test_cli_list_and_unknown(capsys):
    assert main(["download", "--list"]) == 0
    out = capsys.readouterr().out
    for e in hub.list_checkpoints():
        assert e.name in out
    assert "Google Drive (by hand)" in out and "unverified" in out
    assert main(["download", "nope"]) == 2
    assert "unknown checkpoint" in capsys.readouterr().err


def test_cli_list_names_the_bundled_models_and_download_points_to_them(capsys):
    """Issue 18: `download --list` showed only the downloadable files, not the embedded models."""
    from surgsam.modeling.embedded import EMBEDDED_MODELS, embedded_path

    assert main(["download", "--list"]) == 0
    out = capsys.readouterr().out
    assert "bundled with surgsam (no download" in out
    for m in EMBEDDED_MODELS.values():
        line = next(x for x in out.splitlines() if x.strip().startswith(m.name + " "))
        assert f"({embedded_path(m.name).stat().st_size / 1e6:.1f} MB, bundled)" in line and m.summary in line
    # asking to download one fetches nothing: it prints the bundled file and how to use it
    assert main(["download", "surgsam-nano-synth"]) == 0
    cap = capsys.readouterr()
    assert cap.out.strip() == str(embedded_path("surgsam-nano-synth"))
    assert "bundled" in cap.err and "--checkpoint surgsam-nano-synth" in cap.err
