"""One synthesis per test session (jsii start-up is the expensive part), bundling skipped."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import aws_env  # noqa: E402
from template_helpers import synth_context  # noqa: E402

aws_env.apply()


@dataclass
class Synthesized:
    config: object
    stacks: dict
    templates: dict  # stack key -> aws_cdk.assertions.Template
    raw: dict  # stack key -> template JSON


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory) -> Synthesized:
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from infra.config import from_context
    from infra.stacks import build

    context = synth_context()
    app = cdk.App(outdir=str(tmp_path_factory.mktemp("cdk.out")), context=context)
    config = from_context(context["sav-router"])
    stacks = build(app, config, env=cdk.Environment(account=aws_env.ACCOUNT, region=aws_env.REGION))
    templates = {key: Template.from_stack(stack) for key, stack in stacks.items()}
    return Synthesized(config=config, stacks=stacks, templates=templates, raw={key: t.to_json() for key, t in templates.items()})


@dataclass
class Rehearsal:
    """`python app.py` exactly as `cdk deploy` runs it: cdk.json as committed, bundling on, no AWS credentials."""

    outdir: Path
    seconds: float
    result: object  # subprocess.CompletedProcess

    def templates(self) -> dict[str, dict]:
        import json

        return {p.name.removesuffix(".template.json"): json.loads(p.read_text()) for p in self.outdir.glob("*.template.json")}


@pytest.fixture(scope="session")
def rehearsal(tmp_path_factory) -> Rehearsal:
    """Once per session: the real `pip install --platform` for the Lambda runtime, with pip's own cache kept between sessions."""
    import os
    import subprocess
    import time

    outdir = tmp_path_factory.mktemp("rehearsal-cdk.out")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_CONTEXT", "SAV_ROUTER_"))}  # no credentials, no overrides
    env.update(CDK_OUTDIR=str(outdir), JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20", CDK_DISABLE_CLI_TELEMETRY="true")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    return Rehearsal(outdir=outdir, seconds=time.monotonic() - started, result=result)
