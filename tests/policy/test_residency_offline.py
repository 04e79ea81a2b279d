"""Residency and audit work with the network restricted to loopback.

A child interpreter installs a guard that raises on any socket connection or
name lookup that is not loopback, then runs the whole residency path: load the
rules, compute and cache eligibility, refuse a named site and a download,
write an audit log, verify it and build a regulator's report (through the
``masnaa audit`` command). The same child proves the guard works: a
connection to a non-loopback address is stopped, one to loopback is not.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

CHILD = textwrap.dedent('''
    import ipaddress, json, socket, sys
    blocked = []

    class NetworkBlocked(OSError):
        pass

    def loopback(address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, bytes):
            host = host.decode()
        if host in ("localhost", "", None):
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def guard(name, original):
        def checked(self, address, *args):
            if self.family != socket.AF_UNIX and not loopback(address):
                blocked.append(f"{name} {address!r}")
                raise NetworkBlocked(f"network use outside loopback: {name} {address!r}")
            return original(self, address, *args)
        return checked

    for name in ("connect", "connect_ex", "sendto"):
        setattr(socket.socket, name, guard(name, getattr(socket.socket, name)))
    real_getaddrinfo = socket.getaddrinfo
    def getaddrinfo(host, *args, **kwargs):
        if not loopback(host):
            blocked.append(f"getaddrinfo {host!r}")
            raise NetworkBlocked(f"name lookup outside loopback: {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)
    socket.getaddrinfo = getaddrinfo

    # --- the residency path ----------------------------------------------------------------
    from datetime import UTC, datetime, timedelta
    from pathlib import Path
    from typer.testing import CliRunner
    from masnaa.audit.events import download_event, placement_event, refusal_event
    from masnaa.audit.jsonl import JsonlAuditLog
    from masnaa.cli.main import app
    from masnaa.policy import (EligibilityCache, GroundKind, ResidencyRefused, SiteView,
                               TransferGround, check_named_sites, dataset, may_download)
    from masnaa.policy.loader import load_rules

    now = datetime(2026, 11, 25, tzinfo=UTC)
    rules = load_rules()
    sites = [SiteView(n, c) for n, c in
             [("ma-1", "MA"), ("za-1", "ZA"), ("ng-1", "NG"), ("ke-1", "KE"), ("eg-1", "EG")]]
    data = dataset("scans", jurisdiction="MA", data_class="health", home_site="ma-1",
                   grounds=[TransferGround("MA", "cndp_transfer_authorisation",
                                           GroundKind.AUTHORISATION, "CNDP-1",
                                           now + timedelta(days=9), frozenset({"KE"}))])
    cache = EligibilityCache()
    e = cache.get([data], sites, rules, now)
    assert cache.get([data], sites, rules, now) is e
    log = JsonlAuditLog(Path(sys.argv[1]))
    ev = placement_event("scheduler", "j1", "t", "ke-1", (data,), e)
    log.append(at=now, actor=ev.actor, action=ev.action, site=ev.site, data_ids=ev.data_ids,
               rule_id=ev.rule_id, legal_basis=ev.legal_basis, details=ev.details)
    try:
        check_named_sites(["za-1"], e)
        raise SystemExit("za-1 should have been refused")
    except ResidencyRefused as refused:
        ev = refusal_event("api", "j2", "t", (data,), refused)
        log.append(at=now, actor=ev.actor, action=ev.action, site=ev.site,
                   data_ids=ev.data_ids, rule_id=ev.rule_id, details=ev.details)
    d = may_download(data, "ZA", "ZA", "member", rules, now)
    ev = download_event("bob", data, "ZA", "ZA", "member", d)
    log.append(at=now, actor=ev.actor, action=ev.action, data_ids=ev.data_ids,
               rule_id=ev.rule_id, details=ev.details)
    runner = CliRunner()
    verified = runner.invoke(app, ["audit", "verify", sys.argv[1]])
    report = runner.invoke(app, ["audit", "report", sys.argv[1], "--country", "MA",
                                 "--since", "2026-11-01", "--until", "2026-12-01",
                                 "--format", "json"])
    work_blocked = list(blocked)

    # --- the guard itself --------------------------------------------------------------------
    stopped = False
    try:
        socket.create_connection(("192.0.2.1", 80), timeout=0.5)
    except NetworkBlocked:
        stopped = True
    server = socket.socket(); server.bind(("127.0.0.1", 0)); server.listen(1)
    client = socket.create_connection(server.getsockname(), timeout=5)
    client.close(); server.close()
    print(json.dumps({"blocked_during_work": work_blocked, "guard_stops_outside": stopped,
                      "verify_exit": verified.exit_code, "verify_out": verified.output,
                      "report_exit": report.exit_code,
                      "report_rows": len(json.loads(report.output)["rows"]),
                      "download_allowed": d.allowed, "eligible": e.eligible_sites}))
''')


def test_residency_and_audit_run_with_loopback_only(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "audit.jsonl")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["guard_stops_outside"] is True
    assert out["blocked_during_work"] == []
    assert out["verify_exit"] == 0 and "3 records, chain intact" in out["verify_out"]
    assert out["report_exit"] == 0 and out["report_rows"] == 1
    assert out["download_allowed"] is False
    assert out["eligible"] == ["ma-1", "ke-1"]
