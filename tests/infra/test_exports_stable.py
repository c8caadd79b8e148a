"""Finding 4: the second deploy must not fail. CloudFormation refuses to modify an export another stack imports,
so no exported value may change when a file unrelated to it changes. Synthesized twice, from a copy of the
repository, with an edit to README.md and docs/ in between (cdk.json as committed: the image built at deploy).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from template_helpers import REPO

COPIED = ("app.py", "cdk.json", "infra", "lambdas", "sav_router", "training_image", "requirements.txt", "pyproject.toml", "README.md", "docs")


def synth(repo, outdir) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAV_ROUTER_", "CDK_CONTEXT"))}
    env.update(CDK_OUTDIR=str(outdir), PYTHONPATH=str(repo), CDK_CONTEXT_JSON=json.dumps({"aws:cdk:bundling-stacks": []}),
               JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20")
    result = subprocess.run([sys.executable, "app.py"], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    templates = {p.name: json.loads(p.read_text()) for p in outdir.glob("*.template.json")}
    images = {key for p in outdir.glob("*.assets.json") for key in json.loads(p.read_text()).get("dockerImages", {})}
    return {
        "exports": {o["Export"]["Name"]: o["Value"] for t in templates.values() for o in t.get("Outputs", {}).values() if "Export" in o},
        "imports": sorted({json.dumps(v) for t in templates.values() for v in _imports(t)}),
        "images": images,
    }


def _imports(node):
    if isinstance(node, dict):
        if "Fn::ImportValue" in node:
            yield node["Fn::ImportValue"]
        for value in node.values():
            yield from _imports(value)
    elif isinstance(node, list):
        for value in node:
            yield from _imports(value)


def test_no_exported_value_changes_when_an_unrelated_file_changes(tmp_path):
    repo = tmp_path / "repo"
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)
    # GIVEN a first synthesis
    before = synth(repo, tmp_path / "out1")
    # WHEN README.md and docs change (one byte is enough to change a hash over the repository)
    (repo / "README.md").write_text((repo / "README.md").read_text() + "\nedited\n")
    (repo / "docs" / "new-page.md").write_text("# a new page\n")
    after = synth(repo, tmp_path / "out2")
    # THEN every export has the same value, and the images (built from what they copy only) are the same assets:
    # the training and the serving targets of the one Dockerfile
    assert before["exports"] == after["exports"] and before["exports"], (before["exports"], after["exports"])
    assert before["images"] == after["images"] and len(before["images"]) == 2
    # AND nothing imports a value the foundation does not export (the image URI is no export any more)
    assert {json.loads(name) for name in after["imports"]} <= set(after["exports"])
    assert not any("image" in name for name in after["exports"])
