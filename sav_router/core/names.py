"""Names that become paths: one pattern, always resolved inside their root.

A model version, a file named in a manifest, a queue or drop source name all end
up as a path component (or an S3 key / SQS queue name). Each is checked against
`NAME` (letters, digits, `.`, `_`, `-`; starts with a letter or a digit; at most
128 characters): no separator, no `..`, nothing absolute, nothing invisible.
Copies of a bundle never follow a link.

Pure standard library.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class InvalidName(ValueError):
    """A name that would not stay inside its folder (or bucket prefix)."""


def check_name(value: object, what: str) -> str:
    if not isinstance(value, str) or not NAME.fullmatch(value) or ".." in value:
        raise InvalidName(f"invalid {what} {value!r}: use letters, digits, '.', '_' or '-' (at most 128, no '..')")
    return value


def check_relative(value: object, what: str) -> str:
    """A relative path inside a folder (`onnx/router.fp32.onnx`): each part is a valid name."""
    if not isinstance(value, str) or not value:
        raise InvalidName(f"invalid {what} {value!r}")
    for part in value.split("/"):
        try:
            check_name(part, what)
        except InvalidName:
            raise InvalidName(f"invalid {what} {value!r}: each part must be letters, digits, '.', '_' or '-' (no '..', not absolute)") from None
    return value


def inside(root: str | os.PathLike[str], *names: str, what: str = "name") -> Path:
    """`root/name/...` after checking each name; refuses anything that resolves outside `root`."""
    base = Path(root)
    path = base.joinpath(*(check_name(name, what) for name in names))
    resolved_root = base.resolve()
    if not path.resolve().is_relative_to(resolved_root):
        raise InvalidName(f"{what} {'/'.join(names)!r} resolves outside {base}")
    return path


def links_in(folder: str | os.PathLike[str]) -> list[Path]:
    """Every symbolic link under `folder` (not followed)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        for name in dirnames + filenames:
            candidate = Path(dirpath, name)
            if candidate.is_symlink():
                found.append(candidate)
    return found


def copy_tree_without_links(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Copy regular files and folders only; a link anywhere refuses the whole copy."""
    links = links_in(source)
    if links:
        raise InvalidName(f"{links[0]}: symbolic link in {source} (a bundle holds regular files only)")
    shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
