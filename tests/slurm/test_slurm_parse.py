"""Reading squeue/sinfo JSON, names and hostlists (no Slurm needed)."""

from __future__ import annotations

import pytest

from masnaa.executors.slurm.parse import (
    SQUEUE_SEP,
    decode_wait_status,
    exit_from_scontrol,
    expand_hostlist,
    index_jobs,
    job_comment,
    job_name,
    masnaa_jobs,
    masnaa_jobs_text,
    parse_comment,
    parse_gres,
    slurm_nodes,
)


def squeue_job(slurm_id: int, comment: str, state: str = "RUNNING", **extra: object) -> dict:
    return {
        "job_id": slurm_id,
        "name": "x",
        "comment": comment,
        "job_state": state,
        "state_reason": extra.pop("reason", "None"),
        "nodes": extra.pop("nodes", "gpu01"),
        "required_nodes": extra.pop("required_nodes", "gpu01"),
        "start_time": extra.pop("start_time", 0),
        "end_time": extra.pop("end_time", 0),
        "exit_code": extra.pop("exit_code", 0),
        **extra,
    }


@pytest.mark.parametrize(
    ("hostlist", "expected"),
    [
        ("vm", ["vm"]),
        ("gpu[01-03,07]", ["gpu01", "gpu02", "gpu03", "gpu07"]),
        ("a[1-2],b7", ["a1", "a2", "b7"]),
        ("r[1-2]-n[08-09]", ["r1-n08", "r1-n09", "r2-n08", "r2-n09"]),
        ("", []),
    ],
)
def test_hostlists_expand_like_slurm(hostlist: str, expected: list[str]) -> None:
    assert expand_hostlist(hostlist) == expected


@pytest.mark.parametrize(
    ("gres", "expected"),
    [
        ("gpu:h100:8", (("h100", 8),)),
        ("gpu:h100:8(S:0-1)", (("h100", 8),)),
        ("gpu:4", (("", 4),)),
        ("gpu:a100:2,nic:1,gpu:l40s:4", (("a100", 2), ("l40s", 4))),
        ("(null)", ()),
        ("", ()),
    ],
)
def test_gpu_gres_is_read_with_type_and_count(gres: str, expected: tuple) -> None:
    assert parse_gres(gres) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(0, (0, None)), (768, (3, None)), (9, (None, 9)), (15, (None, 15)), (None, (None, None))],
)
def test_raw_wait_status_decodes_to_code_or_signal(raw: int | None, expected: tuple) -> None:
    assert decode_wait_status(raw) == expected


def test_names_and_comments_round_trip_even_with_odd_job_ids() -> None:
    for job_id in ("j-1", "a:b:c", "with space", "ünï"):
        assert parse_comment(job_comment(job_id, 7)) == (job_id, 7)
        assert job_name(job_id, 7).startswith("masnaa-")
        assert " " not in job_name(job_id, 7)
    assert parse_comment("") is None
    assert parse_comment("someone else's job") is None
    assert parse_comment("masnaa:j-1:") is None


def test_only_masnaa_jobs_are_read_and_an_active_duplicate_wins() -> None:
    doc = {
        "jobs": [
            squeue_job(10, "masnaa:j1:1", "COMPLETED", exit_code=768, end_time=50),
            squeue_job(11, "masnaa:j1:1", "PENDING", reason="Resources"),
            squeue_job(12, ""),  # a user's own sbatch
            squeue_job(13, "masnaa:j2:3", "RUNNING", start_time=100),
        ]
    }
    jobs = list(masnaa_jobs(doc))
    assert [j.slurm_id for j in jobs] == [10, 11, 13]
    index = index_jobs(jobs)
    assert index[("j1", 1)].slurm_id == 11 and index[("j1", 1)].pending
    assert index[("j1", 1)].reason == "Resources"
    assert index[("j2", 3)].start_time == 100.0
    assert jobs[0].exit_raw == 768 and jobs[0].end_time == 50.0 and not jobs[0].active


def test_newer_slurm_json_shapes_are_read_too() -> None:
    doc = {
        "jobs": [
            {
                "job_id": 5,
                "comment": "masnaa:j:2",
                "job_state": ["FAILED"],
                "state_reason": "NonZeroExitCode",
                "nodes": "n1",
                "start_time": {"set": True, "number": 10},
                "end_time": {"set": False, "number": 0},
                "exit_code": {"return_code": {"set": True, "number": 3}, "signal": {}},
            }
        ]
    }
    (job,) = masnaa_jobs(doc)
    assert (job.state, job.start_time, job.end_time) == ("FAILED", 10.0, None)
    assert decode_wait_status(job.exit_raw) == (3, None)


@pytest.mark.parametrize(
    ("state", "flags", "available", "failed", "shown"),
    [
        ("idle", [], True, False, "idle"),
        ("mixed", [], True, False, "mixed"),
        ("allocated", [], True, False, "allocated"),
        ("idle", ["DRAIN"], False, False, "idle+drain"),
        ("mixed", ["DRAIN"], False, False, "mixed+drain"),
        ("mixed", ["MAINT"], False, False, "mixed+maint"),
        ("down", [], False, True, "down"),
        ("down", ["NOT_RESPONDING"], False, True, "down+not_responding"),
        ("mixed", ["FAIL"], False, True, "mixed+fail"),
        ("idle", ["NOT_RESPONDING"], False, False, "idle+not_responding"),
        ("mixed", ["NOT_RESPONDING"], False, False, "mixed+not_responding"),
    ],
)
def test_node_states_say_whether_a_node_takes_work_and_whether_its_runs_are_lost(
    state: str, flags: list[str], available: bool, failed: bool, shown: str
) -> None:
    doc = {
        "nodes": [
            {
                "name": "gpu01",
                "state": state,
                "state_flags": flags,
                "reason": "fan",
                "gres": "gpu:h100:8",
                "active_features": "ib,h100",
                "partitions": ["masnaa"],
            }
        ]
    }
    (node,) = slurm_nodes(doc)
    assert node.available is available
    assert node.failed is failed
    assert node.display_state == shown
    assert node.gpu_count == 8 and node.features == {"ib", "h100"}


def squeue_line(*fields: str) -> str:
    return SQUEUE_SEP.join(fields)


def test_the_text_view_reads_masnaa_jobs_and_keeps_free_text_comments_whole() -> None:
    text = "\n".join(
        [
            squeue_line("7", "RUNNING", "None", "gpu01", "gpu01", "2026-11-25T10:00:00",
                        "2026-11-25T11:01:00", "masnaa:j-1:2"),
            squeue_line("8", "PENDING", "ReqNodeNotAvail, UnavailableNodes:gpu02", "",
                        "gpu02", "N/A", "N/A", "masnaa:j-2:1"),
            squeue_line("9", "RUNNING", "None", "gpu03", "", "2026-11-25T10:00:00", "N/A",
                        "a user's comment\x1fwith our separator"),
            "garbage line",
        ]
    )  # fmt: skip
    jobs = {j.key: j for j in masnaa_jobs_text(text)}
    assert set(jobs) == {("j-1", 2), ("j-2", 1)}
    running, pending = jobs[("j-1", 2)], jobs[("j-2", 1)]
    assert (running.slurm_id, running.state, running.nodes) == (7, "RUNNING", "gpu01")
    assert running.start_time is not None and running.end_time is not None
    assert running.end_time - running.start_time == 3660
    assert running.exit_raw is None  # the text view has none: scontrol is asked when needed
    assert pending.pending and pending.required == "gpu02" and pending.start_time is None
    assert pending.reason.startswith("ReqNodeNotAvail")


@pytest.mark.parametrize(
    ("line", "raw"),
    [
        ("JobId=5 JobName=x JobState=FAILED ExitCode=3:0 DerivedExitCode=0:0", 768),
        ("JobId=5 JobState=CANCELLED ExitCode=0:9", 9),
        ("JobId=5 JobState=COMPLETED ExitCode=0:0", 0),
        ("JobId=5 JobState=FAILED", None),
    ],
)
def test_scontrol_exit_codes_are_read_for_the_rare_fallback(line: str, raw: int | None) -> None:
    assert exit_from_scontrol(line) == raw
