"""Permissions proven against calls (issue 19): every AWS call a function or the state machine makes during a moto
rehearsal, evaluated against the deployed permissions.

- `CallRecorder` registers a boto3 event hook (`before-parameter-build`) on the default session (every client a
  handler creates) and on the clients of the state machine's SDK tasks; each call is recorded with who made it (the
  function whose handler is running, or the state machine) and its parameters.
- `iam_requests` turns a call into the IAM requests AWS evaluates: the action and resource ARN of the call itself,
  plus what it implies: `iam:PassRole` for a role passed to SageMaker, and, for KMS-encrypted targets, the key use
  (sending to an SSE-KMS queue needs `kms:GenerateDataKey` and `kms:Decrypt`; reading an SSE-KMS object
  `kms:Decrypt`, writing one `kms:GenerateDataKey`), which no recorded call shows.
- `PermissionProof.refusals` evaluates each request with moto's IAM policy evaluator (`IAMPolicy`) against the
  principal's role policies in the synthesized template, and S3 requests also against the artifacts bucket's
  policy, denies included (its conditions on the principal and on TLS are applied first: moto evaluates only
  `StringEquals`). A refusal names the principal, action, resource and the call that implied it.

Not evaluated (README, "What only a real account can prove"): key policies beyond "the account's IAM policies
decide" (the foundation key's policy delegates to IAM), SCPs and permission boundaries, condition operators other
than StringEquals in identity policies (StringLike on `s3:prefix` is treated as met), service-linked behaviour.
"""

from __future__ import annotations

import contextvars
import copy
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from moto.iam.access_control import IAMPolicy, PermissionResult

from deployed import Deployed

STATE_MACHINE = "state machine"


@dataclass(frozen=True)
class Call:
    principal: str  # a function's POWERTOOLS_SERVICE_NAME, or STATE_MACHINE
    service: str  # botocore service id, lower case ("s3", "sqs", "sagemaker runtime"...)
    operation: str
    params: dict

    def __str__(self) -> str:
        return f"{self.service}:{self.operation}"


@dataclass(frozen=True)
class Request:
    action: str
    resource: str
    why: str
    conditions: dict[str, str] = field(default_factory=dict)


class CallRecorder:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._principal: contextvars.ContextVar[str | None] = contextvars.ContextVar("principal", default=None)

    @contextmanager
    def acting_as(self, principal: str) -> Iterator[None]:
        token = self._principal.set(principal)
        try:
            yield
        finally:
            self._principal.reset(token)

    def _record(self, principal: str | None, model: Any, params: dict) -> None:
        if principal is not None:
            self.calls.append(Call(principal, model.service_model.service_id.lower(), model.name, copy.deepcopy(params)))

    def contextual_hook(self, model, params, **_):
        self._record(self._principal.get(), model, params)

    def fixed_hook(self, principal: str):
        return lambda model, params, **_: self._record(principal, model, params)

    def attach_session(self, session) -> None:
        """Every client created from `session` from now on (boto3's default session: the handlers' clients)."""
        session.events.register("before-parameter-build.*.*", self.contextual_hook)

    def attach_client(self, client, principal: str):
        client.meta.events.register("before-parameter-build.*.*", self.fixed_hook(principal))
        return client

    def record(self, principal: str, service: str, operation: str, params: dict) -> None:
        """A call made with `principal`'s permissions by a service on its behalf (Lambda's dead-letter send)."""
        self.calls.append(Call(principal, service, operation, params))


def _queue_arn(url: str) -> str:
    parsed = urlparse(url)
    region = parsed.hostname.split(".")[1]
    _, account, name = parsed.path.split("/")
    return f"arn:aws:sqs:{region}:{account}:{name}"


class PermissionProof:
    def __init__(self, deployed: Deployed, *, bucket: str) -> None:
        self.deployed, self.bucket = deployed, bucket
        self.region, self.account = deployed.region, deployed.account
        self.principals: dict[str, tuple[str, str]] = {}  # principal -> (stack, role logical id)
        for service, (stack, lid) in deployed.functions().items():
            self.principals[service] = (stack, deployed.role_of_function(stack, lid))
        for stack in deployed.templates:
            for machine in deployed.of_type(stack, "AWS::StepFunctions::StateMachine").values():
                self.principals[STATE_MACHINE] = (stack, machine["Properties"]["RoleArn"]["Fn::GetAtt"][0])
        self.key_arns = [deployed.arn(stack, lid) for stack in deployed.templates for lid in deployed.of_type(stack, "AWS::KMS::Key")]
        (self.key_arn,) = self.key_arns

    # -- what AWS evaluates for a call ------------------------------------------------------------------------
    def _sagemaker(self, kind: str, name: str) -> str:
        return f"arn:aws:sagemaker:{self.region}:{self.account}:{kind}/{name.lower()}"

    def _encrypted_queue(self, queue_arn: str) -> bool:
        name = queue_arn.rsplit(":", 1)[-1]
        for stack in self.deployed.templates:
            for lid, queue in self.deployed.of_type(stack, "AWS::SQS::Queue").items():
                if self.deployed.name(stack, lid) == name:
                    return "KmsMasterKeyId" in queue.get("Properties", {})
        raise KeyError(f"queue {name} is not in the synthesized templates")

    def iam_requests(self, call: Call) -> list[Request]:
        p, op, why = call.params, call.operation, str(call)
        if call.service == "s3":
            obj = f"arn:aws:s3:::{p.get('Bucket')}/{p.get('Key')}"
            encrypted = p.get("Bucket") == self.bucket
            if op in ("GetObject", "HeadObject"):
                out = [Request("s3:GetObjectVersion" if p.get("VersionId") else "s3:GetObject", obj, why)]
                return out + ([Request("kms:Decrypt", self.key_arn, f"{why} of an SSE-KMS object")] if encrypted and op == "GetObject" else [])
            if op == "PutObject":
                out = [Request("s3:PutObject", obj, why)] + ([Request("kms:GenerateDataKey", self.key_arn, f"{why} of an SSE-KMS object")] if encrypted else [])
                return out + ([Request("s3:PutObjectTagging", obj, f"{why} with Tagging")] if p.get("Tagging") else [])
            if op in ("ListObjectsV2", "ListObjects"):
                return [Request("s3:ListBucket", f"arn:aws:s3:::{p['Bucket']}", why)]
            if op == "ListObjectVersions":
                return [Request("s3:ListBucketVersions", f"arn:aws:s3:::{p['Bucket']}", why)]
            if op == "DeleteObject":
                return [Request("s3:DeleteObjectVersion" if p.get("VersionId") else "s3:DeleteObject", obj, why)]
            if op == "DeleteObjects":
                return [Request("s3:DeleteObjectVersion" if o.get("VersionId") else "s3:DeleteObject", f"arn:aws:s3:::{p['Bucket']}/{o['Key']}", why)
                        for o in p["Delete"]["Objects"]]
        if call.service == "sqs":
            queue = _queue_arn(p["QueueUrl"])
            if op in ("SendMessage", "SendMessageBatch"):
                out = [Request("sqs:SendMessage", queue, why)]
                if self._encrypted_queue(queue):
                    out += [Request("kms:GenerateDataKey", self.key_arn, f"{why} to an SSE-KMS queue"),
                            Request("kms:Decrypt", self.key_arn, f"{why} to an SSE-KMS queue")]
                return out
            if op in ("ReceiveMessage", "DeleteMessage", "GetQueueAttributes", "ChangeMessageVisibility"):
                out = [Request(f"sqs:{op}", queue, why)]
                return out + ([Request("kms:Decrypt", self.key_arn, f"{why} from an SSE-KMS queue")] if op == "ReceiveMessage" and self._encrypted_queue(queue) else [])
        if call.service == "dynamodb":
            table = lambda name: f"arn:aws:dynamodb:{self.region}:{self.account}:table/{name}"  # noqa: E731
            if op == "TransactWriteItems":  # each item is authorized as its own action
                kinds = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem"}
                return [Request(f"dynamodb:{kinds[kind]}", table(spec["TableName"]), why) for item in p["TransactItems"] for kind, spec in item.items()]
            return [Request(f"dynamodb:{op}", table(p["TableName"]), why)]
        if call.service == "ssm" and op == "GetParameter":
            return [Request("ssm:GetParameter", f"arn:aws:ssm:{self.region}:{self.account}:parameter{p['Name']}", why)]
        if call.service == "sagemaker runtime" and op == "InvokeEndpoint":
            return [Request("sagemaker:InvokeEndpoint", self._sagemaker("endpoint", p["EndpointName"]), why)]
        if call.service == "sagemaker":
            return self._sagemaker_requests(call)
        if call.service == "cloudwatch":
            if op == "PutMetricData":
                return [Request("cloudwatch:PutMetricData", "*", why, {"cloudwatch:namespace": p["Namespace"]})]
            if op == "DescribeAlarms":
                return [Request("cloudwatch:DescribeAlarms", f"arn:aws:cloudwatch:{self.region}:{self.account}:alarm:{name}", why)
                        for name in p.get("AlarmNames", ["*"])]
        if call.service == "sfn" and op in ("StartExecution", "ListExecutions"):
            return [Request(f"states:{op}", p["stateMachineArn"], why)]
        if call.service == "sfn" and op == "DescribeExecution":
            return [Request("states:DescribeExecution", p["executionArn"], why)]
        if call.service == "lambda" and op == "Invoke":
            name = p["FunctionName"]
            arn = name if name.startswith("arn:") else f"arn:aws:lambda:{self.region}:{self.account}:function:{name}"
            return [Request("lambda:InvokeFunction", arn, why)]
        raise AssertionError(f"{call.principal} made {call} ({sorted(p)}): no IAM mapping for it in permission_proof.iam_requests; add one")

    def _sagemaker_requests(self, call: Call) -> list[Request]:
        p, op, why = call.params, call.operation, str(call)
        action = f"sagemaker:{op}"
        by_name = {"TrainingJobName": "training-job", "TransformJobName": "transform-job", "ModelName": "model",
                   "EndpointConfigName": "endpoint-config", "EndpointName": "endpoint"}
        out: list[Request] = []
        if op in ("CreateModelPackage",):
            out.append(Request(action, self._sagemaker("model-package-group", p["ModelPackageGroupName"]), why))
        elif op in ("DescribeModelPackage", "UpdateModelPackage", "DeleteModelPackage"):
            out.append(Request(action, p["ModelPackageName"], why))
        elif op in ("ListModelPackages", "ListModels", "ListEndpointConfigs", "ListEndpoints"):
            out.append(Request(action, "*", why))
        elif op == "AddTags":
            out.append(Request(action, p["ResourceArn"], why))
        elif op in ("CreateEndpoint", "UpdateEndpoint", "DescribeEndpoint", "DeleteEndpoint"):
            out.append(Request(action, self._sagemaker("endpoint", p["EndpointName"]), why))
            if op in ("CreateEndpoint", "UpdateEndpoint"):  # the endpoint config it names is a resource of the call too
                out.append(Request(action, self._sagemaker("endpoint-config", p["EndpointConfigName"]), why))
        else:
            param = next((name for name in by_name if name in p), None)
            if param is None:
                raise AssertionError(f"{call.principal} made {call}: no IAM mapping for it in permission_proof._sagemaker_requests")
            out.append(Request(action, self._sagemaker(by_name[param], p[param]), why))
        for role_param in ("RoleArn", "ExecutionRoleArn"):
            if role_param in p and op.startswith("Create"):
                out.append(Request("iam:PassRole", p[role_param], f"{why} passes {role_param}", {"iam:PassedToService": "sagemaker.amazonaws.com"}))
        return out

    # -- evaluation ---------------------------------------------------------------------------------------------
    def principal_arn(self, principal: str) -> str:
        stack, role = self.principals[principal]
        return self.deployed.arn(stack, role)

    def identity_policy(self, principal: str) -> dict:
        stack, role = self.principals[principal]
        return self.deployed.role_policy(stack, role)

    def bucket_policy(self, principal: str) -> dict:
        """The artifacts bucket's policy statements that apply to `principal` over TLS (conditions applied here)."""
        statements = []
        for stack in self.deployed.templates:
            for policy in self.deployed.of_type(stack, "AWS::S3::BucketPolicy").values():
                props = self.deployed.resolve(stack, policy["Properties"])
                if props["Bucket"] != self.bucket:
                    continue
                for statement in props["PolicyDocument"]["Statement"]:
                    if self._condition_holds(statement.get("Condition", {}), self.principal_arn(principal)):
                        statements.append({k: v for k, v in statement.items() if k != "Condition"})
        return {"Version": "2012-10-17", "Statement": statements}

    @staticmethod
    def _condition_holds(condition: dict, principal_arn: str) -> bool:
        context = {"aws:PrincipalArn": principal_arn, "aws:SecureTransport": "true"}
        for operator, tests in condition.items():
            for key, expected in tests.items():
                expected = expected if isinstance(expected, list) else [expected]
                if key not in context:
                    raise AssertionError(f"bucket policy condition on {key} is not modelled by permission_proof")
                actual = context[key]
                holds = {"ArnEquals": actual in expected, "ArnNotEquals": actual not in expected,
                         "StringEquals": actual in expected, "StringNotEquals": actual not in expected,
                         "Bool": actual in [str(e).lower() for e in expected]}.get(operator)
                if holds is None:
                    raise AssertionError(f"bucket policy condition operator {operator} is not modelled by permission_proof")
                if not holds:
                    return False
        return True

    def verdict(self, principal: str, request: Request) -> str | None:
        """None when permitted, else why not."""
        if request.resource.startswith(f"arn:aws:s3:::{self.bucket}"):
            if IAMPolicy(json.dumps(self.bucket_policy(principal))).is_action_permitted(request.action, request.resource) == PermissionResult.DENIED:
                return "denied by the bucket policy"
        result = IAMPolicy(json.dumps(self.identity_policy(principal))).is_action_permitted(
            request.action, request.resource, incoming_condition_values=request.conditions or None)
        if result == PermissionResult.PERMITTED:
            return None
        return "explicitly denied by its role policy" if result == PermissionResult.DENIED else "not allowed by its role policy"

    def refusals(self, calls: list[Call]) -> list[str]:
        found: dict[str, None] = {}
        for call in calls:
            if call.principal not in self.principals:
                raise AssertionError(f"calls recorded for {call.principal}, which has no role in the templates")
            for request in self.iam_requests(call):
                reason = self.verdict(call.principal, request)
                if reason is not None:
                    found[f"{call.principal}: {request.action} on {request.resource} ({request.why}): {reason}"] = None
        return list(found)

    def dead_letter_sends(self, recorder: CallRecorder) -> None:
        """What the Lambda service does with each function's role when an asynchronous invocation fails for good:
        send the event to the function's DeadLetterConfig target. Recorded as calls of that function."""
        for service, (stack, lid) in self.deployed.functions().items():
            target = self.deployed.resource(stack, lid)["Properties"].get("DeadLetterConfig", {}).get("TargetArn")
            if target is not None:
                arn = self.deployed.resolve(stack, target)
                _, _, _, region, account, name = arn.split(":")
                recorder.record(service, "sqs", "SendMessage", {"QueueUrl": f"https://sqs.{region}.amazonaws.com/{account}/{name}", "MessageBody": "{}"})
