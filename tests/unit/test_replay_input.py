"""`guardrail replay` on input a person really has: a JSON array, a binary or empty file, bad lines, records
out of time order. Reading no record is an error with a hint, never "Saved: $0.00"."""

from __future__ import annotations

import gzip
import io
import json
import random
from pathlib import Path

import pytest

from guardrail.tools.cli import main
from tests.support.common import EVENTS

INCIDENT = EVENTS / "incident-runaway-agent.jsonl"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return main(list(argv), out=out, err=err), out.getvalue(), err.getvalue()


def records() -> list[str]:
    return [line for line in INCIDENT.read_text().splitlines() if line.startswith('{"schemaType"')]


def test_a_json_array_an_empty_and_a_binary_file_are_errors_with_a_hint(tmp_path: Path) -> None:
    array = tmp_path / "events.json"  # the README's export without `jq -c '.[]'`
    array.write_text(json.dumps([{"timestamp": 1, "message": line} for line in records()[:3]], indent=2))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    binary = tmp_path / "logo.png"
    binary.write_bytes(bytes(range(256)) * 8)
    for path, hint in (
        (array, "is a JSON array, not JSON lines: write one record per line, e.g. `jq -c '.[]'"),
        (empty, "is empty: no record to replay"),
        (binary, "is not text (binary?)"),
    ):
        code, out, err = run("replay", str(path))
        assert (code, out) == (2, ""), err
        assert err.startswith(f"guardrail: replay: {path}") and hint in err and err.count("\n") == 1
        assert "Saved" not in err


def test_a_gzip_file_cut_short_is_one_line(tmp_path: Path) -> None:
    cut = tmp_path / "export.gz"
    cut.write_bytes(gzip.compress(INCIDENT.read_bytes())[:500])
    code, out, err = run("replay", str(cut))
    assert (code, out) == (2, "") and err.startswith(f"guardrail: replay: cannot read {cut}: ") and err.count("\n") == 1


def test_quarantine_messages_name_the_line_and_how_many_more(tmp_path: Path) -> None:
    lines = records()[:20]
    for n in (3, 6, 9, 12, 15, 18, 19):  # 7 bad lines, only 5 are shown
        lines[n] = '{"schemaType": "ModelInvocationLog", "oops": '
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    code, out, _ = run("replay", str(path))
    assert code == 0
    shown = [line for line in out.splitlines() if line.startswith("  quarantined: line")]
    assert [line.split()[2] for line in shown] == ["4:", "7:", "10:", "13:", "16:"]
    assert "  quarantined: ... and 2 more" in out


def test_records_out_of_time_order_give_the_triggers_of_the_sorted_file(tmp_path: Path) -> None:
    lines = INCIDENT.read_text().splitlines()
    random.Random(7).shuffle(lines)
    shuffled = tmp_path / "shuffled.jsonl"
    shuffled.write_text("\n".join(lines) + "\n")
    _, expected, _ = run("replay", str(INCIDENT), "--json")
    code, out, _ = run("replay", str(shuffled), "--json")
    assert code == 0
    assert json.loads(out)["triggers"] == json.loads(expected)["triggers"]
    assert json.loads(out)["out_of_order_records"] == 0


def test_records_further_out_of_order_than_the_buffer_are_warned_about(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("guardrail.tools.replay_input.REORDER_BUFFER", 10)
    lines = records()
    reversed_file = tmp_path / "newest-first.jsonl"
    reversed_file.write_text("\n".join(reversed(lines)) + "\n")
    code, out, _ = run("replay", str(reversed_file))
    assert code == 0
    warning = [line for line in out.splitlines() if "out of time order" in line]
    assert len(warning) == 1 and "sort the file by time" in warning[0] and "more than 10 records" in warning[0]
