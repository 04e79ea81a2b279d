"""Reasons as phrases (``masnaa.domain.reasons``): English text, storage, other languages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from masnaa.domain import reasons
from masnaa.domain.reasons import JOIN, PHRASES, Phrase

LOST = (
    Phrase("preempted"),
    Phrase("stopped", {"status": Phrase("exit-code-signal", {"code": 143, "signal": 15})}),
    Phrase("back-in-queue"),
)


def test_a_reason_reads_as_one_english_sentence() -> None:
    said = "preempted; stopped, exit code 143 (signal 15); back in the queue"
    assert reasons.english(LOST) == said
    assert reasons.english((Phrase("grace", {"seconds": 30.0}),)) == "30 s to checkpoint"
    assert reasons.english(()) == ""


def test_a_reason_survives_storage_whole() -> None:
    stored = reasons.to_json(LOST)
    assert reasons.from_json(stored) == LOST
    assert stored[1] == {"key": "stopped", "params": {
        "status": {"key": "exit-code-signal", "params": {"code": 143, "signal": 15}}}}


@pytest.mark.parametrize(
    "stored",
    [
        None,
        "preempted",
        [{"key": 3}],
        [{"params": {}}],
        [{"key": "stopped", "params": {"status": ["not", "a", "phrase"]}}],
        [{"key": "stopped", "params": {"status": {"no": "key"}}}],
    ],
)
def test_what_cannot_be_read_back_is_no_reason(stored: object) -> None:
    assert reasons.from_json(stored) == ()


@pytest.mark.parametrize(
    "phrase",
    [
        Phrase("retired-or-future-key"),
        Phrase("started"),  # its placeholder has no value
        Phrase("stopped", {"status": Phrase("no-such-status")}),
    ],
)
def test_a_phrase_that_cannot_render_says_so_instead_of_raising(phrase: Phrase) -> None:
    assert phrase.render() is None
    assert reasons.text((Phrase("preempted"), phrase)) is None
    with pytest.raises(ValueError, match=phrase.key):
        reasons.english((phrase,))


def test_each_phrase_and_the_join_go_through_the_translation() -> None:
    upper = {JOIN: "%(first)s | %(then)s", PHRASES["preempted"]: "PRÉEMPTÉ",
             PHRASES["back-in-queue"]: "EN FILE", PHRASES["stopped"]: "ARRÊTÉ, %(status)s",
             PHRASES["exit-code-signal"]: "CODE %(code)s/%(signal)s"}
    said = reasons.text(LOST, lambda m: upper.get(m, m))
    assert said == "PRÉEMPTÉ | ARRÊTÉ, CODE 143/15 | EN FILE"


def test_every_template_takes_only_named_values() -> None:
    # A positional %s or a stray % would break the catalog's placeholder check and rendering.
    for key, template in {**PHRASES, "join": JOIN}.items():
        stripped = template
        for name in ("first", "then", *[w.split(")")[0] for w in template.split("%(")[1:]]):
            stripped = stripped.replace(f"%({name})s", "")
        assert "%" not in stripped, key


def test_a_renderer_may_write_values_its_own_way() -> None:
    held = (Phrase("wait-held-for", {"job": "j-1", "start_at": 1_764_000_000}),)
    assert "reserved to start at 1764000000;" in reasons.english(held)

    def show(name: str, value: object) -> str | None:
        return "tomorrow" if name.endswith("_at") else None

    assert "j-1, reserved to start at tomorrow;" in (reasons.text(held, show=show) or "")


def test_every_key_the_code_writes_has_a_template() -> None:
    # A key with no template would fail the write that records it (``english`` raises):
    # check every literal key in the sources, and the keys built from a few words.
    src = Path(__file__).resolve().parents[2] / "src" / "masnaa"
    written = {
        key
        for path in src.rglob("*.py")
        for key in re.findall(r'Phrase\(\s*"([a-z0-9-]+)"', path.read_text(encoding="utf-8"))
    }
    built = {f"{prefix}-{what}" for prefix in ("evacuated", "drained") for what in ("node", "site")}
    built |= {f"drained-{what}-note" for what in ("node", "site")}
    built |= {f"alloc-{state}" for state in ("requested", "in-review", "approved")}
    assert len(written) > 40
    assert written | built <= set(PHRASES), sorted((written | built) - set(PHRASES))


@pytest.mark.parametrize(("phrase", "said"), [
    (Phrase("wait-reserved", {"nodes": 1}),
     "not enough free GPUs now; nodes are reserved for it as running jobs end (1 in all)"),
    (Phrase("wait-preempting", {"jobs": 2}),
     "running jobs are asked to stop to make room for it (2 in all); it starts when their "
     "checkpoint grace ends"),
])
def test_a_phrase_given_a_count_reads_as_a_count_not_as_a_list(phrase: Phrase, said: str) -> None:
    # The scheduler gives these a number (of nodes, of other tenants' jobs), never names.
    assert reasons.english((phrase,)) == said
