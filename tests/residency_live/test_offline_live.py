"""The whole live factory works with networking restricted to loopback.

A real ``masnaa up`` process (API, portal and control loop; a two-site factory
file: ma-1 in Morocco, ke-1 in Kenya) starts with a guard installed through
``sitecustomize``: any socket connection, datagram or name lookup that is not
loopback raises and is written to a log. Over loopback the test registers
Moroccan health data, submits a job that reads it, waits for the job to run
(at the only lawful site), and checks the audit chain. The guard checks itself
at start (a connection to a documentation address must be stopped), so a
guard that silently failed to install cannot pass the test.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx

GUARD = textwrap.dedent('''
    import ipaddress, json, os, socket
    _log = os.environ["MASNAA_NETGUARD_LOG"]

    def _write(entry):
        with open(_log, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\\n")

    def _loopback(address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, bytes):
            host = host.decode()
        if host in ("localhost", "", None):
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    class NetworkBlocked(OSError):
        pass

    def _guard(name, original):
        def checked(self, address, *args):
            if self.family != socket.AF_UNIX and not _loopback(address):
                _write({"blocked": f"{name} {address!r}", "pid": os.getpid()})
                raise NetworkBlocked(f"network use outside loopback: {name} {address!r}")
            return original(self, address, *args)
        return checked

    for _name in ("connect", "connect_ex", "sendto"):
        setattr(socket.socket, _name, _guard(_name, getattr(socket.socket, _name)))
    _real_getaddrinfo = socket.getaddrinfo

    def _getaddrinfo(host, *args, **kwargs):
        if not _loopback(host):
            _write({"blocked": f"getaddrinfo {host!r}", "pid": os.getpid()})
            raise NetworkBlocked(f"name lookup outside loopback: {host!r}")
        return _real_getaddrinfo(host, *args, **kwargs)

    socket.getaddrinfo = _getaddrinfo

    # Self-check: the guard must stop a non-loopback connection (TEST-NET-1).
    _probe = socket.socket()
    try:
        _probe.connect(("192.0.2.1", 9))
    except NetworkBlocked:
        _write({"selfcheck": "blocked", "pid": os.getpid()})
    finally:
        _probe.close()
''')

FACTORY = textwrap.dedent('''
    [[sites]]
    name = "ma-1"
    country = "MA"
    currency = "MAD"

    [[sites]]
    name = "ke-1"
    country = "KE"
    currency = "KES"

    [[gpu_types]]
    name = "h100-80gb"

    [[nodes]]
    site = "ma-1"
    gpu_type = "h100-80gb"
    gpus = 8
    count = 1
    prefix = "ma-n"
    virtual = true

    [[nodes]]
    site = "ke-1"
    gpu_type = "h100-80gb"
    gpus = 8
    count = 1
    prefix = "ke-n"
    virtual = true
''')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_full_run_needs_nothing_but_loopback(tmp_path: Path) -> None:
    guard_dir = tmp_path / "guard"
    guard_dir.mkdir()
    (guard_dir / "sitecustomize.py").write_text(GUARD)
    factory = tmp_path / "factory.toml"
    factory.write_text(FACTORY)
    log = tmp_path / "net.jsonl"
    home = tmp_path / "home"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASNAA_")}
    env.update(PYTHONPATH=str(guard_dir), MASNAA_NETGUARD_LOG=str(log), MASNAA_HOME=str(home),
               NO_PROXY="*", HTTP_PROXY="", HTTPS_PROXY="")
    output = tmp_path / "up.log"
    with output.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from masnaa.cli.main import app; app()",
             "up", "--port", str(port), "--factory", str(factory)],
            env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 40
        while True:
            assert proc.poll() is None, output.read_text()
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, output.read_text()
            time.sleep(0.1)
        token = (home / "credentials.toml").read_text().split('token = "')[1].split('"')[0]
        api = httpx.Client(base_url=f"{base}/api/v1",
                           headers={"Authorization": f"Bearer {token}"}, timeout=10)
        d = api.post("/datasets", json={"name": "scans", "home_site": "ma-1",
                                        "data_class": "health", "tenant": "local"})
        assert d.status_code == 201, d.text
        j = api.post("/jobs", json={"command": ["true"], "project": "local/default",
                                    "datasets": [d.json()["id"]]})
        assert j.status_code == 201, j.text
        assert j.json()["sites"] == ["ma-1"]
        job_id = j.json()["id"]
        deadline = time.monotonic() + 30
        while (shown := api.get(f"/jobs/{job_id}").json())["state"] != "succeeded":
            assert shown["state"] in ("pending", "admitted", "running"), shown
            assert time.monotonic() < deadline, shown
            time.sleep(0.1)
        assert shown["site"] == "ma-1"
        verified = api.get("/audit/verify").json()
        assert verified["ok"] and verified["checked"] >= 3, verified
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert {"selfcheck": "blocked", "pid": proc.pid} in entries, entries
    # The server, and every job supervisor it started, made no call outside loopback
    # (besides each process's own self-check probe).
    assert [e for e in entries if "blocked" in e and "192.0.2.1" not in e["blocked"]] == []
    assert len({e["pid"] for e in entries}) >= 2, entries  # the job's processes were guarded
