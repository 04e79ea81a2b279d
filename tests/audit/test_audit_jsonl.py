"""The JSON-lines store and ``masnaa audit verify`` on real files."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from masnaa.audit import AuditFormatError, Break
from masnaa.audit.jsonl import JsonlAuditLog, read_records, verify_file
from masnaa.cli.main import app

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def write_log(path: Path, n: int = 5) -> JsonlAuditLog:
    log = JsonlAuditLog(path)
    for i in range(n):
        log.append(at=T0 + timedelta(seconds=i), actor="svc", action="placement",
                   site="ke-1", data_ids=[f"d{i}"], rule_id="KE.in-country",
                   legal_basis="in-country (KE)", details={"job_id": f"j{i}"})
    return log


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_append_chains_across_reopenings(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 3)
    write_log(path, 2)  # a new writer continues the same chain
    records = read_records(path)
    assert [r.seq for r in records] == [0, 1, 2, 3, 4]
    assert verify_file(path).ok
    assert all(json.loads(line)["hash"] for line in lines(path))


def test_concurrent_writers_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    code = (
        "import sys; from datetime import UTC, datetime;"
        "from masnaa.audit.jsonl import JsonlAuditLog;"
        "log = JsonlAuditLog(sys.argv[1]);"
        "[log.append(at=datetime.now(UTC), actor=sys.argv[2], action='download') "
        "for _ in range(40)]"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), f"w{i}"])
             for i in range(3)]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    result = verify_file(path)
    assert result.ok and result.checked == 120


def edit(path: Path, index: int, **changes: object) -> None:
    rows = lines(path)
    obj = json.loads(rows[index])
    obj.update(changes)
    rows[index] = json.dumps(obj)
    path.write_text("\n".join(rows) + "\n")


@pytest.mark.parametrize(
    ("damage", "reason", "position"),
    [
        (lambda p: edit(p, 2, site="za-1"), Break.TAMPERED, 2),
        (lambda p: p.write_text("\n".join(lines(p)[:1] + lines(p)[2:]) + "\n"),
         Break.MISSING, 1),
        (lambda p: p.write_text("\n".join([lines(p)[i] for i in (0, 1, 3, 2, 4)]) + "\n"),
         Break.REORDERED, 2),
        (lambda p: p.write_text("\n".join([*lines(p)[:3], "{not json", *lines(p)[4:]]) + "\n"),
         Break.UNREADABLE, 3),
    ],
    ids=["tampered", "deleted", "reordered", "garbled"],
)
def test_damage_is_found_by_file_and_cli(tmp_path: Path, damage: object, reason: Break,
                                         position: int) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path)
    runner = CliRunner()
    ok = runner.invoke(app, ["audit", "verify", str(path)])
    assert ok.exit_code == 0 and "5 records, chain intact" in ok.output
    damage(path)  # type: ignore[operator]
    result = verify_file(path)
    assert not result.ok and result.reason is reason and result.position == position
    out = runner.invoke(app, ["audit", "verify", str(path)])
    assert out.exit_code == 1
    assert f"record #{position}" in out.output and reason.value in out.output


def test_cli_anchor_catches_truncation_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path)
    head = verify_file(path).head
    assert head is not None
    path.write_text("\n".join(lines(path)[:-1]) + "\n")
    runner = CliRunner()
    assert runner.invoke(app, ["audit", "verify", str(path)]).exit_code == 0
    cut = runner.invoke(app, ["audit", "verify", str(path), "--anchor", f"{head[0]}:{head[1]}"])
    assert cut.exit_code == 1 and "truncated" in cut.output
    assert runner.invoke(app, ["audit", "verify", str(tmp_path / "nope")]).exit_code == 2


def test_refuses_to_append_after_a_garbled_tail(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = write_log(path, 2)
    with open(path, "a") as f:
        f.write('{"seq": 2, "half a rec\n')
    with pytest.raises(AuditFormatError, match="unreadable last record"):
        log.append(at=T0, actor="svc", action="download")


def test_the_installed_command_exits_1_naming_the_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path)
    edit(path, 4, actor="someone else")
    command = Path(sys.executable).parent / "masnaa"
    if not command.exists():  # pragma: no cover
        pytest.skip("the masnaa command is not installed next to this interpreter")
    proc = subprocess.run([str(command), "audit", "verify", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "record #4 (seq 4)" in proc.stderr
