"""The routing table: label -> team, from a JSON or YAML file (identity by default)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from sav_router.core.names import InvalidName, check_name


class TeamsError(ValueError):
    pass


def load_teams(path: str | os.PathLike[str] | None) -> dict[str, str | None]:
    """Read a label -> team mapping; `null` means "no team: always escalate"."""
    if path is None:
        return {}
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TeamsError(f"{path}: cannot read routing table ({exc})") from exc
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise TeamsError(f"{path}: invalid YAML ({exc})") from exc
    else:
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise TeamsError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(data, dict):
        raise TeamsError(f"{path}: the routing table must be an object mapping label -> team")
    teams: dict[str, str | None] = {}
    for label, team in data.items():
        if team is not None and not isinstance(team, str):
            raise TeamsError(f"{path}: team for {label!r} must be a string or null")
        if team is not None:
            try:
                check_name(team, "team name")  # it becomes a queue name (and a CloudFormation id)
            except InvalidName as exc:
                raise TeamsError(f"{path}: {exc}") from None
        teams[str(label)] = team
    return teams


def complete_teams(teams: dict[str, str | None], labels: list[str]) -> dict[str, str | None]:
    """The table stored in a bundle: every known label present (identity when no table)."""
    if not teams:
        return {label: label for label in labels}
    return {label: teams.get(label) for label in labels}
