"""Each Lambda asset holds its handler and the `sav_router` modules it imports; its hash changes only with them.

Synthesized as `cdk deploy` does (`python app.py`, bundling on for the serving stack: the routing and the
promotion functions, the real `pip install --platform`), from a copy of the repository, three times into one
cdk.out (as repeated deploys reuse it): as it is, after an edit to the console, after an edit to a module the
routing handler imports.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import aws_env
from template_helpers import REPO, resources

COPIED = ("app.py", "cdk.json", "infra", "lambdas", "sav_router")
BUNDLED_STACK = "SavRouterServing"


def copy_repository(target: Path) -> Path:
    target.mkdir()
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target / name)
    return target


def synth(repo: Path, outdir: Path) -> dict[str, dict]:
    """Service name -> {"key": the function's code S3Key, "bundle": its staged folder}, bundling on for the serving stack."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAV_ROUTER_", "CDK_CONTEXT"))}
    env.update(CDK_OUTDIR=str(outdir), PYTHONPATH=str(repo), SAV_ROUTER_IMAGE_URI=aws_env.IMAGE_URI,
               CDK_CONTEXT_JSON=json.dumps({"aws:cdk:bundling-stacks": [BUNDLED_STACK]}),
               JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20", CDK_DISABLE_CLI_TELEMETRY="true")
    result = subprocess.run([sys.executable, "app.py"], cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    template = json.loads((outdir / f"{BUNDLED_STACK}.template.json").read_text())
    functions = {}
    for fn in resources(template, "AWS::Lambda::Function").values():
        variables = fn["Properties"].get("Environment", {}).get("Variables", {})
        if "POWERTOOLS_SERVICE_NAME" in variables:
            key = fn["Properties"]["Code"]["S3Key"]
            functions[variables["POWERTOOLS_SERVICE_NAME"]] = {"key": key, "bundle": outdir / f"asset.{key.removesuffix('.zip')}"}
    return functions


def package_files(bundle: Path) -> set[str]:
    return {p.relative_to(bundle).as_posix() for p in (bundle / "sav_router").rglob("*") if p.is_file()}


def test_the_routing_asset_changes_with_its_own_code_only(tmp_path):
    from infra.lambda_sources import asset_sources

    repo, outdir = copy_repository(tmp_path / "repo"), tmp_path / "cdk.out"
    found = {name for name in asset_sources(repo / "lambdas" / "routing", repo) if name.startswith("sav_router/")}
    # GIVEN a first deploy's synthesis
    before = synth(repo, outdir)
    routing = before["routing"]["bundle"]
    # THEN the routing bundle holds the handler and exactly the modules found from its imports: no console, no training
    assert (routing / "handler.py").is_file() and package_files(routing) == found
    assert "sav_router/aws/routing.py" in found and "sav_router/core/policy.py" in found
    assert not any(name.startswith(("sav_router/console/", "sav_router/training/", "sav_router/model/")) for name in found)
    # WHEN a console template and a console module change
    template = repo / "sav_router" / "console" / "templates" / "base.html"
    template.write_text(template.read_text() + "\n<!-- edited -->\n")
    console = repo / "sav_router" / "console" / "app.py"
    console.write_text(console.read_text() + "\n# edited\n")
    after_console = synth(repo, outdir)
    # THEN no function of the stack gets a new asset: nothing is redeployed
    assert {name: fn["key"] for name, fn in after_console.items()} == {name: fn["key"] for name, fn in before.items()}
    # WHEN a module the routing handler imports (the routing policy) changes
    policy = repo / "sav_router" / "core" / "policy.py"
    policy.write_text(policy.read_text() + "\n# edited\n")
    after_policy = synth(repo, outdir)
    # THEN the routing function gets a new asset, bundled with the edit; the promotion function, which does not import it, keeps its own
    assert after_policy["routing"]["key"] != before["routing"]["key"]
    assert (after_policy["routing"]["bundle"] / "sav_router" / "core" / "policy.py").read_text().endswith("\n# edited\n")
    assert after_policy["promotion"]["key"] == before["promotion"]["key"]
    print("routing asset:", before["routing"]["key"], "-> console edit:", after_console["routing"]["key"],
          "-> policy edit:", after_policy["routing"]["key"], f"({len(found)} sav_router files)")
