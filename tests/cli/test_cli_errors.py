"""A user's mistake ends as one `error: ...` line on stderr and exit code 2, never a traceback.

These need no server: a spec file that is malformed, missing or has a bad budget, a server that is
not there. Some go through the installed `slimformer` script in a subprocess (what a shell sees),
the rest through `slimformer.cli.main` (faster). The errors that need a live server (401, 422)
are in tests/test_cli_client.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from slimformer.cli import main
from slimformer.cli.errors import describe
from slimformer.errors import InfeasibleBudgetError


def slimformer_command() -> list[str]:
    script = Path(sys.executable).with_name("slimformer")
    return [str(script)] if script.exists() else [sys.executable, "-m", "slimformer.cli"]


def shell(*argv: str, cwd: Path, home: Path) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SLIMFORMER_URL", "SLIMFORMER_API_KEY")}
    env["SLIMFORMER_HOME"] = str(home)
    result = subprocess.run(slimformer_command() + list(argv), cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=120)
    return result.returncode, result.stdout, result.stderr


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when this returns: nothing listens there


def assert_one_line_error(code: int, err: str, *expected: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for text in expected:
        assert text in lines[0], lines[0]


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    """`main(argv)` from tmp_path with an empty SLIMFORMER_HOME: (exit code, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SLIMFORMER_HOME", str(tmp_path / "home"))
    for name in ("SLIMFORMER_URL", "SLIMFORMER_API_KEY"):
        monkeypatch.delenv(name, raising=False)

    def call(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    return call


def test_a_malformed_spec_names_the_file_and_the_field(tmp_path):
    (tmp_path / "spec.json").write_text(json.dumps({"search": {"trials": 0}}))
    code, out, err = shell("run", "spec.json", cwd=tmp_path, home=tmp_path / "home")
    assert_one_line_error(code, err, "error: spec.json: search.trials: Input should be greater than or equal to 1")
    assert out == ""


def test_an_unreachable_server_is_one_line_through_the_script(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}"
    code, _, err = shell("jobs", "--url", url, "--key", "sf_x", cwd=tmp_path, home=tmp_path / "home")
    assert_one_line_error(code, err, f"error: cannot reach {url}: connection refused")


def test_bad_budgets_in_a_spec_are_named_together(cli, tmp_path):
    (tmp_path / "budgets.json").write_text(json.dumps({"budgets": {"latency_ms": -1, "params_m": 0}}))
    code, _, err = cli("run", "budgets.json")
    assert_one_line_error(code, err, "budgets.json: budgets.latency_ms: Input should be greater than 0",
                          "budgets.params_m: Input should be greater than 0")


def test_booleans_for_numbers_in_a_spec_are_named(cli, tmp_path):
    (tmp_path / "bools.json").write_text(json.dumps({"budgets": {"latency_ms": True}, "search": {"trials": False}}))
    code, _, err = cli("run", "bools.json")
    assert_one_line_error(code, err, "bools.json: budgets.latency_ms: Input should be a valid number, not a boolean",
                          "search.trials: Input should be a valid integer, not a boolean")


def test_an_unknown_field_in_a_spec_is_named(cli, tmp_path):
    (tmp_path / "typo.json").write_text(json.dumps({"budgets": {"latency": 5}}))
    code, _, err = cli("run", "typo.json")
    assert_one_line_error(code, err, "typo.json: budgets.latency: Extra inputs are not permitted")


def test_a_spec_that_is_not_json(cli, tmp_path):
    (tmp_path / "broken.json").write_text('{"search": ')
    code, _, err = cli("run", "broken.json")
    assert_one_line_error(code, err, "error: broken.json: not valid JSON: Expecting value: line 1")


def test_a_missing_spec_file(cli):
    code, _, err = cli("run", "missing.json")
    assert_one_line_error(code, err, "error: missing.json: no such file or directory")


def test_a_missing_spec_file_for_submit_is_reported_before_any_request(cli):
    code, _, err = cli("submit", "--spec", "missing.json", "--url", f"http://127.0.0.1:{closed_port()}")
    assert_one_line_error(code, err, "error: missing.json: no such file or directory")


def test_an_unreachable_server(cli):
    url = f"http://127.0.0.1:{closed_port()}"
    for argv in (["jobs"], ["status", "01JOB"], ["cancel", "01JOB"], ["pareto", "01JOB"],
                 ["download", "01JOB", "01CAND", "-o", "model"]):
        code, _, err = cli(*argv, "--url", url, "--key", "sf_x")
        assert_one_line_error(code, err, f"error: cannot reach {url}: connection refused",
                              "is `slimformer serve` running?")


def test_a_plot_file_of_an_unknown_kind(cli):
    code, _, err = cli("pareto", "01JOB", "--plot", "front.gif", "--url", f"http://127.0.0.1:{closed_port()}")
    assert_one_line_error(code, err, "error: --plot front.gif: use a .png or .svg file name")


def test_an_infeasible_budget_found_by_the_run_is_one_line(cli, tmp_path, monkeypatch):
    """Budgets valid in form but below the cheapest model are found by the run itself (after the teacher)."""
    (tmp_path / "spec.json").write_text(json.dumps({"budgets": {"params_m": 0.001}}))

    def infeasible(*args, **kwargs):
        raise InfeasibleBudgetError("params_m 0.001 is below the smallest model\n(1.2M)", {"params_m": 1.2})

    monkeypatch.setattr("slimformer.cli.local._run", infeasible)
    code, _, err = cli("run", "spec.json")
    assert_one_line_error(code, err, "error: params_m 0.001 is below the smallest model (1.2M)")


def test_a_bug_is_not_dressed_up_as_a_user_error():
    assert describe(RuntimeError("boom")) is None
    assert describe(KeyError("x")) is None
