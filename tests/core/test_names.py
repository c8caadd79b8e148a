"""One name pattern for every name that becomes a path or a queue (issue 11, general rule)."""

import json

import pytest

from sav_router.core import layout
from sav_router.core.names import InvalidName, check_name, check_relative, inside
from sav_router.core.teams import TeamsError, load_teams


@pytest.mark.parametrize("name", ["v1", "20260101T000000Z-abcd1234", "team_a", "a.b-c"])
def test_plain_names_pass(name, tmp_path):
    assert check_name(name, "name") == name and inside(tmp_path, name).parent == tmp_path


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "/abs", "a/b", "a\\b", "a..b", ".hidden", "x\n", "x" * 129, "caf\u00e9", 5, None])
def test_anything_else_is_refused(name, tmp_path):
    with pytest.raises(InvalidName):
        check_name(name, "name")


def test_relative_file_entries_and_keys(tmp_path):
    assert check_relative("onnx/router.fp32.onnx", "file") == "onnx/router.fp32.onnx"
    for bad in ("/etc/passwd", "onnx/../../x", "", "a//b"):
        with pytest.raises(InvalidName):
            check_relative(bad, "file")
    with pytest.raises(InvalidName):
        layout.manifest_key("../../escaped")


def test_inside_refuses_a_link_out_of_its_root(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "out").symlink_to(tmp_path)
    with pytest.raises(InvalidName, match="outside"):
        inside(tmp_path / "root", "out")


@pytest.mark.parametrize("team", ["../x", "customer care", "a/b"])
def test_a_team_that_cannot_be_a_queue_name_is_refused(tmp_path, team):
    path = tmp_path / "teams.json"
    path.write_text(json.dumps({"refund": team}))
    with pytest.raises(TeamsError, match="team name"):
        load_teams(path)
