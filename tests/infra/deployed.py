"""The synthesized app as it would be once deployed: every intrinsic resolved to a concrete name or ARN.

Resources are named after their logical id unless the template names them (queues: `<id>` or `<id>.fifo`, tables,
functions, roles...), the artifacts bucket after the name a test gives it. A moto rehearsal creates its resources
under these names, so the ARNs a function really calls and the ARNs in its role's policies are the same strings,
and `permission_proof` can evaluate the one against the other.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


class Deployed:
    def __init__(self, templates: Mapping[str, dict], *, region: str, account: str, names: Mapping[str, str] | None = None) -> None:
        self.templates, self.region, self.account = dict(templates), region, account
        self.names = dict(names or {})  # logical id -> physical name (e.g. the artifacts bucket)
        self._exports: dict[str, tuple[str, Any]] = {}
        for stack, template in self.templates.items():
            for output in template.get("Outputs", {}).values():
                if "Export" in output:
                    self._exports[self.resolve(stack, output["Export"]["Name"])] = (stack, output["Value"])

    # -- resources --------------------------------------------------------------------------------------------
    def resource(self, stack: str, logical_id: str) -> dict:
        return self.templates[stack]["Resources"][logical_id]

    def of_type(self, stack: str, resource_type: str) -> dict[str, dict]:
        return {lid: r for lid, r in self.templates[stack]["Resources"].items() if r["Type"] == resource_type}

    def name(self, stack: str, logical_id: str) -> str:
        if logical_id in self.names:
            return self.names[logical_id]
        resource = self.resource(stack, logical_id)
        props, kind = resource.get("Properties", {}), resource["Type"]
        given = {"AWS::SQS::Queue": "QueueName", "AWS::DynamoDB::GlobalTable": "TableName", "AWS::Lambda::Function": "FunctionName",
                 "AWS::IAM::Role": "RoleName", "AWS::StepFunctions::StateMachine": "StateMachineName", "AWS::SSM::Parameter": "Name",
                 "AWS::CloudWatch::Alarm": "AlarmName", "AWS::Logs::LogGroup": "LogGroupName", "AWS::S3::Bucket": "BucketName",
                 "AWS::SageMaker::ModelPackageGroup": "ModelPackageGroupName"}.get(kind)
        if given and given in props:
            return self.resolve(stack, props[given])
        if kind == "AWS::SQS::Queue" and props.get("FifoQueue"):
            return f"{logical_id}.fifo"
        return logical_id

    def arn(self, stack: str, logical_id: str) -> str:
        kind, name = self.resource(stack, logical_id)["Type"], self.name(stack, logical_id)
        r, a = self.region, self.account
        return {
            "AWS::SQS::Queue": f"arn:aws:sqs:{r}:{a}:{name}",
            "AWS::DynamoDB::GlobalTable": f"arn:aws:dynamodb:{r}:{a}:table/{name}",
            "AWS::Lambda::Function": f"arn:aws:lambda:{r}:{a}:function:{name}",
            "AWS::IAM::Role": f"arn:aws:iam::{a}:role/{name}",
            "AWS::StepFunctions::StateMachine": f"arn:aws:states:{r}:{a}:stateMachine:{name}",
            "AWS::CloudWatch::Alarm": f"arn:aws:cloudwatch:{r}:{a}:alarm:{name}",
            "AWS::Logs::LogGroup": f"arn:aws:logs:{r}:{a}:log-group:{name}:*",
            "AWS::S3::Bucket": f"arn:aws:s3:::{name}",
            "AWS::KMS::Key": f"arn:aws:kms:{r}:{a}:key/{name}",
            "AWS::SNS::Topic": f"arn:aws:sns:{r}:{a}:{name}",
            "AWS::SSM::Parameter": f"arn:aws:ssm:{r}:{a}:parameter{name}",
            "AWS::SageMaker::ModelPackageGroup": f"arn:aws:sagemaker:{r}:{a}:model-package-group/{name}",
        }[kind]

    def queue_url(self, stack: str, logical_id: str) -> str:
        return f"https://sqs.{self.region}.amazonaws.com/{self.account}/{self.name(stack, logical_id)}"

    def ref(self, stack: str, logical_id: str) -> str:
        kind = self.resource(stack, logical_id)["Type"]
        if kind == "AWS::SQS::Queue":
            return self.queue_url(stack, logical_id)
        if kind in ("AWS::StepFunctions::StateMachine", "AWS::SNS::Topic"):
            return self.arn(stack, logical_id)
        return self.name(stack, logical_id)

    # -- intrinsics -------------------------------------------------------------------------------------------
    def resolve(self, stack: str, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(stack, v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (fn, arg), = value.items()
            if fn == "Ref":
                pseudo = {"AWS::Partition": "aws", "AWS::Region": self.region, "AWS::AccountId": self.account, "AWS::URLSuffix": "amazonaws.com",
                          "AWS::StackName": stack}
                return pseudo[arg] if arg in pseudo else self.ref(stack, arg)
            if fn == "Fn::GetAtt":
                logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                if attribute == "Arn":
                    return self.arn(stack, logical_id)
                if attribute in ("QueueName", "Name"):
                    return self.name(stack, logical_id)
                if attribute == "QueueUrl":
                    return self.queue_url(stack, logical_id)
                raise KeyError(f"{stack}: unresolvable GetAtt {arg}")
            if fn == "Fn::Join":
                separator, parts = arg
                return separator.join(str(self.resolve(stack, p)) for p in parts)
            if fn == "Fn::Select":
                index, items = arg
                return self.resolve(stack, items)[int(index)]
            if fn == "Fn::Split":
                separator, source = arg
                return str(self.resolve(stack, source)).split(separator)
            if fn == "Fn::ImportValue":
                exporter, exported = self._exports[self.resolve(stack, arg)]
                return self.resolve(exporter, exported)
            if fn == "Fn::Sub" and isinstance(arg, str):
                return arg.replace("${AWS::Region}", self.region).replace("${AWS::AccountId}", self.account).replace("${AWS::Partition}", "aws")
        return {k: self.resolve(stack, v) for k, v in value.items()}

    # -- who may do what ----------------------------------------------------------------------------------------
    def role_of_function(self, stack: str, logical_id: str) -> str:
        role = self.resource(stack, logical_id)["Properties"]["Role"]["Fn::GetAtt"][0]
        return role

    def role_policy(self, stack: str, role_logical_id: str) -> dict:
        """Every statement granted to the role: its inline policies and the AWS::IAM::Policy resources attached to it."""
        statements: list[dict] = []
        for policy in self.of_type(stack, "AWS::IAM::Policy").values():
            if {"Ref": role_logical_id} in policy["Properties"].get("Roles", []):
                statements += self.resolve(stack, policy["Properties"]["PolicyDocument"])["Statement"]
        for inline in self.resource(stack, role_logical_id)["Properties"].get("Policies", []):
            statements += self.resolve(stack, inline["PolicyDocument"])["Statement"]
        return {"Version": "2012-10-17", "Statement": statements}

    def functions(self) -> dict[str, tuple[str, str]]:
        """POWERTOOLS_SERVICE_NAME -> (stack, logical id) of each project function; `<name>@<stack>` for a function
        deployed in several stacks (the teardown custom resource's)."""
        found: dict[str, list[tuple[str, str]]] = {}
        for stack in self.templates:
            for lid, fn in self.of_type(stack, "AWS::Lambda::Function").items():
                service = fn["Properties"].get("Environment", {}).get("Variables", {}).get("POWERTOOLS_SERVICE_NAME")
                if service:
                    found.setdefault(service, []).append((stack, lid))
        return {(service if len(places) == 1 else f"{service}@{stack}"): (stack, lid)
                for service, places in found.items() for stack, lid in places}

    def environment(self, service: str) -> dict[str, str]:
        stack, lid = self.functions()[service]
        return self.resolve(stack, self.resource(stack, lid)["Properties"]["Environment"]["Variables"])

    def dump(self, stack: str, logical_id: str) -> str:
        return json.dumps(self.resolve(stack, self.resource(stack, logical_id)), indent=1)
