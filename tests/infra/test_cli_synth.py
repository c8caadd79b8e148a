"""README's `npx cdk synth`, as written: the pinned CDK CLI (package-lock.json, `npm ci` in `make install`) runs
cdk.json's app command, bundling on, offline and without AWS credentials, and writes the same stacks as the
deploy rehearsal's `python app.py`.

The output folder starts with the rehearsal's staged Lambda bundles (hard links), as a second synth into the
same cdk.out would: CDK stages a bundle once per asset hash, so the pip work is not paid twice, and a bundle the
CLI would hash differently would be built anew (and fail the comparison below).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from template_helpers import REPO

CLI = REPO / "node_modules" / ".bin" / "cdk"


@pytest.fixture(scope="module")
def cli_synth(tmp_path_factory, rehearsal):
    if not CLI.is_file():
        pytest.fail("the pinned CDK CLI is not installed: run `make install` (npm ci)")
    outdir = tmp_path_factory.mktemp("cli-cdk.out")
    for staged in rehearsal.outdir.glob("asset.*"):
        if staged.is_dir():
            subprocess.run(["cp", "-al", str(staged), str(outdir / staged.name)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_", "SAV_ROUTER_"))}  # no credentials, no overrides
    # cdk.json runs `python3 app.py`: the project's interpreter comes first on PATH, as in an activated venv
    env.update(PATH=f"{Path(sys.executable).parent}:{env['PATH']}", CDK_DISABLE_CLI_TELEMETRY="true",
               JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20", AWS_EC2_METADATA_DISABLED="true")
    env.pop("PYTHONPATH", None)
    result = subprocess.run(["npx", "cdk", "synth", "-q", "--no-notices", "-o", str(outdir)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=900)
    return result, outdir


def test_npx_cdk_synth_uses_the_pinned_cli(cli_synth):
    pinned = json.loads((REPO / "package.json").read_text())["devDependencies"]["aws-cdk"]
    locked = json.loads((REPO / "package-lock.json").read_text())["packages"]["node_modules/aws-cdk"]["version"]
    version = subprocess.run([str(CLI), "--version"], capture_output=True, text=True, timeout=60).stdout
    assert pinned == locked and version.startswith(pinned + " ")


def test_npx_cdk_synth_succeeds_offline_with_bundling_and_matches_the_rehearsal(cli_synth, rehearsal):
    result, outdir = cli_synth
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-4000:])
    # every function's code is a bundle staged by the same hash as the rehearsal's (none bundled anew)
    assert sorted(p.name for p in outdir.glob("asset.*")) == sorted(p.name for p in rehearsal.outdir.glob("asset.*"))
    templates = {p.name: json.loads(p.read_text()) for p in outdir.glob("*.template.json")}
    assert sorted(templates) == sorted(p.name for p in rehearsal.outdir.glob("*.template.json"))
    for name, template in templates.items():
        rehearsed = json.loads((rehearsal.outdir / name).read_text())
        # the same resources (and the same asset hashes, in the functions' code keys) and the same exports
        # (the CLI adds its version-reporting AWS::CDK::Metadata resource)
        resources_of = lambda t: {k: r["Type"] for k, r in t["Resources"].items() if r["Type"] != "AWS::CDK::Metadata"}  # noqa: E731
        assert resources_of(template) == resources_of(rehearsed), name
        assert template.get("Outputs") == rehearsed.get("Outputs"), name
        for logical_id, resource in template["Resources"].items():
            if resource["Type"] == "AWS::Lambda::Function" and "S3Key" in resource["Properties"]["Code"]:
                assert resource["Properties"]["Code"]["S3Key"] == rehearsed["Resources"][logical_id]["Properties"]["Code"]["S3Key"]
