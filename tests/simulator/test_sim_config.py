"""Bad input gets a clear error and changes nothing: scenarios, users files, CLI flags; the README stays true."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.__main__ import main
from simulator.scenario import ScenarioError, load_scenario, parse_scenario
from simulator.spec import markdown_table, unece_unit_id
from simulator.users import LineUserManager, UsersFileError, load_users, make_hash, parse_users, verify

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["nominal", "drift", "step", "faults"])
def test_committed_scenarios_load(name: str) -> None:
    sc = load_scenario(REPO / "simulator" / "scenarios" / f"{name}.yaml")
    assert sc.name == name


def test_faults_scenario_has_every_fault_type() -> None:
    sc = load_scenario(REPO / "simulator" / "scenarios" / "faults.yaml")
    assert {e.fault for e in sc.events} == {"dropout", "stuck", "spike", "nan", "cycler_channel", "server_restart"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"lines": {}}, "unknown top-level key"),
        ({"line": {"roll_length": 5}}, "unknown key"),
        ({"line": {"roll_length_m": -1}}, "must be > 0"),
        ({"line": {"roll_length_m": "long"}}, "must be a number"),
        ({"line": {"roll_length_m": float("nan")}}, "must be finite"),
        ({"noise_scale": -1}, "noise_scale"),
        ({"events": [{"at_s": 5, "action": "explode"}]}, "action must be one of"),
        ({"events": [{"action": "set"}]}, "needs 'at_s'"),
        ({"events": [{"at_s": 1, "action": "fault", "fault": "melt"}]}, "fault must be one of"),
        ({"events": [{"at_s": 1, "action": "fault", "fault": "dropout", "duration_s": 5}]}, "needs 'node'"),
        ({"events": [{"at_s": 1, "action": "set", "node": "Coating.Cathode.PumpFlowRateSetpoint"}]}, "'value'"),
        ({"line": {"cycler_channels": 0}}, "cycler_channels"),
    ],
)
def test_bad_scenarios_are_refused_with_a_clear_message(data: dict, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(data)


def test_scenario_nodes_are_checked_against_the_address_space() -> None:
    from tests.simulator.sim_helpers import plant, quiet

    with pytest.raises(ValueError, match="not a setpoint"):
        plant(quiet(events=[{"at_s": 1, "action": "set", "node": "Coating.Cathode.Pumpflow", "value": 1.0}]))
    with pytest.raises(ValueError, match="analog measurement"):
        plant(quiet(events=[{"at_s": 1, "action": "fault", "fault": "nan", "node": "Coating.Cathode.RollId",
                             "duration_s": 5}]))
    with pytest.raises(ValueError, match="unknown cycler channel"):
        plant(quiet(events=[{"at_s": 1, "action": "fault", "fault": "cycler_channel", "channel": "CH-09",
                             "duration_s": 5}]))


@settings(max_examples=50, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                    max_leaves=10))
def test_arbitrary_yaml_never_crashes_the_parser(data: object) -> None:
    try:
        parse_scenario(data)
    except ScenarioError:
        pass
    except (TypeError, ValueError) as exc:  # pragma: no cover - this is the failure the test hunts
        pytest.fail(f"unclear error for {data!r}: {exc!r}")


def test_password_hashes_verify_and_plain_passwords_are_refused() -> None:
    h = make_hash("s3cret", iterations=1000)
    assert verify("s3cret", h) and not verify("s3cret!", h) and not verify("s3cret", "garbage")
    with pytest.raises(UsersFileError, match="plain 'password' is not accepted"):
        parse_users({"users": {"bob": {"password": "s3cret", "role": "operator"}}})
    with pytest.raises(UsersFileError, match="role must be one of"):
        parse_users({"users": {"bob": {"password_hash": h, "role": "admin"}}})
    with pytest.raises(UsersFileError, match="reserved"):
        parse_users({"users": {"anonymous": {"password_hash": h}}})
    um = LineUserManager(parse_users({"users": {"bob": {"password_hash": h, "role": "operator"}}}), False)
    assert um.get_user(None, "bob", "s3cret").name == "bob"
    assert um.get_user(None, "bob", "wrong") is None
    assert um.get_user(None, None, None) is None  # anonymous switched off


def test_hash_password_cli_and_users_file(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-m", "simulator", "hash-password", "--stdin", "--iterations", "1000"],
                         input="pw-123\n", capture_output=True, text=True, env=env, cwd=REPO, check=True)
    h = out.stdout.strip()
    assert verify("pw-123", h)
    f = tmp_path / "users.yaml"
    f.write_text(f"users:\n  ann: {{password_hash: '{h}', role: viewer}}\n")
    assert load_users(f)["ann"].role == "viewer"


@pytest.mark.parametrize(
    "argv",
    [["--speed", "0"], ["--security", "none,tls"], ["--tick", "-1"], ["--start-time", "yesterday"],
     ["--port", "70000"], ["--line-id", "PL1/#"]],
)
def test_bad_cli_flags_exit_with_usage_error(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2


def test_bad_files_exit_2_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("line: [1, 2\n")
    assert main(["--scenario", str(bad), "--data-dir", str(tmp_path)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert main(["--users", str(tmp_path / "missing.yaml"), "--data-dir", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_unece_unit_ids() -> None:
    assert unece_unit_id("MTR") == 5067858  # OPC 10000-8 example: metre
    assert unece_unit_id("CEL") == 4408652  # degree Celsius


def test_readme_address_space_table_matches_the_code() -> None:
    readme = (REPO / "docs" / "simulator.md").read_text(encoding="utf-8")
    assert markdown_table() in readme, "regenerate with `python -m simulator nodes --markdown` into docs/simulator.md"
