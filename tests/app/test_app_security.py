"""What the web app exposes, against a real server on 127.0.0.1: forged Host / Origin headers
are refused (DNS rebinding), typed paths are off, Gradio's files live in a private folder that
goes away with the server (SIGTERM included) and a session's files go when its tab closes, runs
of two sessions go side by side, and a stopped run leaves no truncated overlay or zip.

Every request is bounded (timeouts) and goes to the loopback interface only.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

gr = pytest.importorskip("gradio")
pytest.importorskip("gradio_client")

import surgsam.app.server as server_mod  # noqa: E402
from surgsam.app.guard import HostGuard, HostPolicy, split_host  # noqa: E402
from surgsam.app.server import AppConfig, serve  # noqa: E402

RUN_ARGS = ("demo", "", 0, "efp", 3, "", "(default)", 0)  # model, checkpoint, size, memory, 3 frames, referring
M_IN = ("demo", "", 0, "efp", False)  # model inputs of the prompt handlers (no preview)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(
    port: int, path: str, host: str, origin: str | None = None, method: str = "GET", body: bytes | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    headers = {"Host": host}
    if origin is not None:
        headers["Origin"] = origin
    if body is not None:
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _wait(cond, what: str, timeout: float = 60.0) -> None:
    """Wait for the server to reach a state (a bound on a hang, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _modes(root: Path) -> set[tuple[str, str]]:
    """(kind, octal mode) of everything under ``root``."""
    return {("dir" if p.is_dir() else "file", oct(p.stat().st_mode & 0o777)) for p in root.rglob("*")}


# ------------------------------------------------------------------------------- host policy
@pytest.mark.parametrize(
    "value,expected",
    [
        ("127.0.0.1:7893", ("127.0.0.1", 7893)),
        ("LocalHost:80", ("localhost", 80)),
        ("[::1]:7893", ("::1", 7893)),
        ("example.org", ("example.org", None)),
        ("::1", ("::1", None)),
        ("a:b", None),
        ("a:0", None),
        ("a:99999", None),
        ("", None),
        ("[::1", None),
        ("[zz]:1", None),
        ("evil.example@127.0.0.1:80", None),
        ("a b", None),
    ],
)
def test_split_host(value, expected):
    assert split_host(value) == expected


def test_host_policy():
    p = HostPolicy.for_server("127.0.0.1", 7893, ["lab-pc", "proxy.example:443"])
    for ok in ("127.0.0.1:7893", "localhost:7893", "[::1]:7893", "lab-pc", "lab-pc:7893", "proxy.example:443"):
        assert p.allows(ok), ok
    for bad in (
        "evil.example:7893",
        "127.0.0.1:7894",
        "127.0.0.1",
        "localhost.:7893",
        "lab-pc:22",
        "proxy.example",
        "127.0.0.2:7893",
        None,
        "",
    ):
        assert not p.allows(bad), bad
    assert p.allows_origin("http://127.0.0.1:7893") and p.allows_origin("https://proxy.example:443")
    for bad in ("http://evil.example:7893", "null", "file://", "http://127.0.0.1:7893/x", "ftp://127.0.0.1:7893"):
        assert not p.allows_origin(bad), bad
    wild = HostPolicy.for_server("0.0.0.0", 80, [])
    assert wild.allows("localhost") and wild.allows("127.0.0.1:80") and not wild.allows("0.0.0.0:80")
    assert HostPolicy.for_server("192.168.1.5", 7860).allows("192.168.1.5:7860")
    with pytest.raises(ValueError, match="not a host name"):
        HostPolicy.for_server("127.0.0.1", 7860, ["http://x/"])


def test_guard_refuses_duplicate_host_headers_and_websockets():
    import asyncio

    sent, reached = [], []

    async def app(scope, receive, send):
        reached.append(scope["type"])

    async def send(msg):
        sent.append(msg)

    guard = HostGuard(app, HostPolicy.for_server("127.0.0.1", 7860))
    ok = [(b"host", b"127.0.0.1:7860")]
    asyncio.run(guard({"type": "http", "headers": ok}, None, send))
    asyncio.run(guard({"type": "http", "headers": ok + [(b"host", b"evil.example:7860")]}, None, send))
    asyncio.run(guard({"type": "websocket", "headers": [(b"host", b"evil.example:7860")]}, None, send))
    asyncio.run(guard({"type": "lifespan"}, None, send))
    assert reached == ["http", "lifespan"]
    assert sent[0]["status"] == 403 and sent[2] == {"type": "websocket.close", "code": 1008}


# ------------------------------------------------------------------------------- a real server
@pytest.fixture(scope="module")
def app_server():
    """``serve()`` in this process on a free port of 127.0.0.1 (so tests can reach its handlers)."""
    port = _free_port()
    demo = serve(AppConfig(port=port), block=False)
    try:
        yield port, demo
    finally:
        demo.surgsam_stop()
    assert not Path(demo.surgsam_dir).exists()


def _client(port: int):
    from gradio_client import Client

    return Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)


def test_forged_host_and_origin_are_refused(app_server):
    port, _ = app_server
    good, evil = f"127.0.0.1:{port}", f"evil.example:{port}"
    assert _request(port, "/", good)[0] == 200
    assert _request(port, "/config", f"localhost:{port}", origin=f"http://localhost:{port}")[0] == 200
    body = b'{"data": ["/etc/hostname", null], "fn_index": 0, "session_hash": "x"}'
    for path, method, data in (
        ("/", "GET", None),
        ("/config", "GET", None),
        ("/gradio_api/info", "GET", None),
        ("/gradio_api/queue/join", "POST", body),
        ("/gradio_api/file=/etc/hostname", "GET", None),
    ):
        status, text = _request(port, path, evil, origin=f"http://{evil}", method=method, body=data)
        assert status == 403 and b"not this server" in text, (path, status, text[:200])
    # the right Host with a foreign Origin (a cross-site request), or no usable Host at all
    assert _request(port, "/config", good, origin=f"http://{evil}")[0] == 403
    assert _request(port, "/config", good, origin="null")[0] == 403
    assert _request(port, "/config", f"127.0.0.1:{port + 1}")[0] == 403


def test_typed_paths_are_off(app_server):
    import json

    port, _ = app_server
    cfg = json.loads(_request(port, "/config", f"127.0.0.1:{port}")[1])
    comps = {c.get("props", {}).get("elem_id"): c for c in cfg["components"]}
    assert comps["path"]["props"]["visible"] is False and comps["open-path"]["props"]["visible"] is False
    names = {d.get("api_name") for d in cfg["dependencies"]}
    assert "open_path" not in names and "open_upload" in names  # no endpoint to call
    client = _client(port)
    with pytest.raises(Exception):
        client.predict("/etc/hostname", api_name="/open_path")


def test_private_folder_session_files_and_side_by_side_runs(app_server, monkeypatch):
    port, demo = app_server
    root = Path(demo.surgsam_dir)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert Path(os.environ["GRADIO_TEMP_DIR"]).parent == root  # Gradio's cache is inside it
    monkeypatch.setenv("GRADIO_HEARTBEAT_INTERVAL", "0.3")  # a closed tab is noticed within a beat

    gate, started, finished = threading.Event(), [], []

    class GatedJob(server_mod.SegmentationJob):
        """The first run waits at its start until the test opens the gate."""

        def frames(self):
            first = not started
            started.append(self)
            try:
                if first:
                    assert gate.wait(120)
                yield from super().frames()
            finally:
                finished.append(self)

    monkeypatch.setattr(server_mod, "SegmentationJob", GatedJob)
    a, b = _client(port), _client(port)
    for c in (a, b):
        c.predict(api_name="/open_demo")
        assert "object 1: box" in c.predict("40,40,200,200", 0, 1, *M_IN, api_name="/typed_box")[-1]
    run_a = a.submit(*RUN_ARGS, api_name="/run")
    _wait(lambda: len(started) == 1, "the first run to start")
    # the second session's run goes through while the first one is still held
    out_b = b.submit(*RUN_ARGS, api_name="/run").result(timeout=180)
    assert out_b[-1].startswith("done: 3 frames") and len(finished) == 1 and not run_a.done()
    gate.set()
    out_a = run_a.result(timeout=180)
    assert out_a[-1].startswith("done: 3 frames")

    sessions = root / "gradio" / "sessions"
    assert len(list(sessions.iterdir())) == 2
    modes = _modes(root)
    assert modes and {m for kind, m in modes if kind == "dir"} == {"0o700"}
    assert {m for kind, m in modes if kind == "file"} == {"0o600"}, modes

    # closing a tab (its heartbeat stream ends) removes that session's files at once
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    conn.request("GET", f"/gradio_api/heartbeat/{a.session_hash}", headers={"Host": f"127.0.0.1:{port}"})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read1(64).startswith(b"data:")
    conn.close()
    _wait(lambda: len(list(sessions.iterdir())) == 1, "the closed session's folder to go")


def test_a_cancelled_run_leaves_no_partial_output(app_server, monkeypatch):
    """Stop (the page cancels the event) or a closed tab: the run ends within a frame and its
    partial overlay and masks are removed."""
    import gradio.routes

    port, demo = app_server
    gate, started, finished = threading.Event(), [], []

    class GatedJob(server_mod.SegmentationJob):
        """Holds after its first frame until the cancellation reaches the server."""

        def frames(self):
            started.append(self)
            try:
                for i, stat_ in enumerate(super().frames()):
                    yield stat_
                    if i == 0:
                        assert gate.wait(120)
            finally:
                finished.append(self)

    real_cancel = gradio.routes.cancel_tasks

    async def cancel_tasks(task_ids):
        gate.set()  # the run's thread goes on to its next yield, where Gradio stops it
        return await real_cancel(task_ids)

    monkeypatch.setattr(server_mod, "SegmentationJob", GatedJob)
    monkeypatch.setattr(gradio.routes, "cancel_tasks", cancel_tasks)
    c = _client(port)
    c.predict(api_name="/open_demo")
    c.predict("40,40,200,200", 0, 1, *M_IN, api_name="/typed_box")
    job = c.submit(*RUN_ARGS[:4], 0, *RUN_ARGS[5:], api_name="/run")  # all 30 frames
    _wait(lambda: started, "the run to start")
    out = started[0].out_dir
    # the job makes its folder when it writes its first frame: poll for the folder, then the file
    _wait(lambda: out.is_dir() and any(p.name.endswith(".part.mp4") for p in out.iterdir()), "the first frame")
    job.cancel()
    _wait(lambda: finished, "the cancelled run to wind up")
    assert started[0].result is None
    assert not out.exists() or list(out.iterdir()) == []  # no overlay, no zip, no partial file


@pytest.mark.slow
def test_sigterm_removes_the_private_folder(tmp_path):
    """``surgsam app`` in a subprocess: SIGTERM stops it cleanly and its folder is gone."""
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False", "TMPDIR": str(tmp_path)}
    env.pop("GRADIO_TEMP_DIR", None)
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "surgsam", "app", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def up() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return _request(port, "/", f"127.0.0.1:{port}")[0] == 200
            except OSError:
                return False

        _wait(up, "surgsam app to answer", timeout=180)
        folders = [p for p in tmp_path.iterdir() if p.name.startswith("surgsam-app-")]
        assert len(folders) == 1 and stat.S_IMODE(folders[0].stat().st_mode) == 0o700
        _wait(lambda: str(folders[0]) in log.read_text(), "the start-up message naming it")
        assert _request(port, "/", f"evil.example:{port}")[0] == 403
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert not folders[0].exists(), log.read_text()
