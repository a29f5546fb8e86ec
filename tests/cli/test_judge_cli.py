"""``vidseg judge-scores``: the per-method table of a batch output file, and one-line errors for unusable files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import assert_one_line_error, run_cli
from tests.mevis_data import write_judge_results as write_results


def test_judge_scores_prints_the_table_and_writes_json(tmp_path: Path) -> None:
    results = write_results(tmp_path / "batch_output.jsonl")
    result = run_cli("judge-scores", results, "--json", tmp_path / "scores.json")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "| method | requests | failed | SL | TL | PR | SS | OBJ |"
    assert "| imap_layers | 3 | 1 | 5.00 (1/3) | - (0/3) | - (0/3) | - (0/3) | - (0/3) |" in lines
    assert ("| sel_imap_layers | 4 | 1 | 3.00 (3/4) | 4.00 (3/4) | 4.00 (3/4) | 3.00 (3/4) | 4.00 (3/4) |"
            in lines)
    doc = json.loads((tmp_path / "scores.json").read_text())
    assert doc["methods"]["sel_imap_layers"]["criteria"]["TL"] == {"mean": 4.0, "count": 3, "failed": 1}
    assert doc["per_request"]["vidA_1::imap_layers"]["SL"] is None


@pytest.mark.parametrize("content, words", [(None, "does not exist"), ("", "empty"), ("{not json\n", "line 1")])
def test_unusable_files_are_one_line_errors(tmp_path: Path, content, words) -> None:
    path = tmp_path / "out.jsonl"
    if content is not None:
        path.write_text(content)
    assert_one_line_error(run_cli("judge-scores", path), 2, words)


def test_the_command_is_listed() -> None:
    result = run_cli("--help")
    assert "judge-scores" in result.output
