"""What moto cannot do: run the training and serving containers.

moto marks SageMaker jobs Completed at once but writes no output. These hooks
wrap moto's backend so that, like the real containers, a training job leaves a
model.tar.gz holding a `router.json`, and a transform job writes one decision
record per input line (the serving contract). Scores come from the known gold
label of each text: "good" puts 0.96 on it, "bad" on a wrong label. The
decisions are made by the core `decide` with the bundle policy, exactly as the
serving container does. Everything else in the pipeline runs for real.
"""

from __future__ import annotations

import io
import json
import tarfile
from contextlib import contextmanager
from datetime import datetime, timezone

import boto3
from moto.sagemaker.models import SageMakerModelBackend

from sav_router.core.bundle import MANIFEST_NAME, Manifest
from sav_router.core.policy import RoutingPolicy, decide, decision_record

MODEL_VERSION = "20250101T000000Z-c0ffee00"


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def manifest(labels: list[str], teams: dict[str, str], model_version: str = MODEL_VERSION) -> Manifest:
    return Manifest(
        labels=labels, policy=RoutingPolicy(threshold=0.9, margin=0.1, teams={label: teams.get(label) for label in labels}),
        base_model="fake", model_version=model_version, created_at="2025-01-01T00:00:00Z",
        temperature=1.3, calibration={"target_precision": 0.95, "confidence": 0.95},
    )


def model_tarball(data: dict) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        body = json.dumps(data).encode()
        info = tarfile.TarInfo(MANIFEST_NAME)
        info.size = len(body)
        archive.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


class FakeContainers:
    def __init__(self, truth: dict[str, str], labels: list[str], *, quality: str = "good", model_version: str = MODEL_VERSION) -> None:
        self.truth, self.labels, self.quality, self.model_version = truth, labels, quality, model_version
        self.training_jobs: list[dict] = []
        self.transform_jobs: list[dict] = []
        self.manifest: Manifest | None = None

    def scores(self, text: str) -> dict[str, float]:
        gold = self.truth.get(text, self.labels[0])
        top = gold if self.quality == "good" else self.labels[(self.labels.index(gold) + 1) % len(self.labels)]
        rest = 0.04 / (len(self.labels) - 1)
        return {label: (0.96 if label == top else rest) for label in self.labels}

    def train(self, backend, name: str) -> None:
        job = backend.training_jobs[name]
        s3 = boto3.client("s3")
        channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in job.input_data_config}
        self.training_jobs.append({"name": name, "channels": channels, "hyperparameters": job.hyper_parameters,
                                   "network_isolation": job.enable_network_isolation})
        bucket, prefix = _split(channels["teams"])
        teams = json.loads(s3.get_object(Bucket=bucket, Key=prefix + "teams.json")["Body"].read())
        self.manifest = manifest(self.labels, teams, self.model_version)
        bucket, key = _split(job.model_artifacts["S3ModelArtifacts"])
        s3.put_object(Bucket=bucket, Key=key, Body=model_tarball(self.manifest.to_dict()))

    def answer(self, record_id: str, text: str) -> dict:
        """The container's answer for one request (the serving contract), as the endpoint gives it."""
        scores = self.scores(text)
        decision = decide(scores, self.manifest.policy, model_version=self.manifest.model_version)
        return decision_record(record_id, decision, scores)

    def transform(self, backend, name: str) -> None:
        job = backend.transform_jobs[name]
        s3 = boto3.client("s3")
        bucket, key = _split(job.transform_input["DataSource"]["S3DataSource"]["S3Uri"])
        lines = [json.loads(line) for line in s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode().splitlines() if line.strip()]
        records = [self.answer(row["id"], row["text"]) for row in lines]
        out_bucket, out_prefix = _split(job.transform_output["S3OutputPath"])
        body = "".join(json.dumps(r) + "\n" for r in records)
        s3.put_object(Bucket=out_bucket, Key=out_prefix.rstrip("/") + "/" + key.rsplit("/", 1)[-1] + ".out", Body=body.encode())
        self.transform_jobs.append({"name": name, "input": key, "records": len(records), "model": job.model_name})


@contextmanager
def running(containers: FakeContainers):
    """Patch moto's SageMaker backend for the duration of a test."""
    create_training, create_transform = SageMakerModelBackend.create_training_job, SageMakerModelBackend.create_transform_job

    def training(self, training_job_name, *args, **kwargs):
        job = create_training(self, training_job_name, *args, **kwargs)
        containers.train(self, training_job_name)
        return job

    def transform(self, transform_job_name, *args, **kwargs):
        job = create_transform(self, transform_job_name, *args, **kwargs)
        containers.transform(self, transform_job_name)
        return job

    SageMakerModelBackend.create_training_job, SageMakerModelBackend.create_transform_job = training, transform
    try:
        yield containers
    finally:
        SageMakerModelBackend.create_training_job, SageMakerModelBackend.create_transform_job = create_training, create_transform


def now() -> datetime:
    return datetime.now(timezone.utc)


def update_endpoint_in_moto(params, **_):
    """`before-call.sagemaker.UpdateEndpoint`: moto has no UpdateEndpoint; this one points the endpoint at the new
    config, as a finished blue/green update does (the call itself is still recorded and evaluated by the caller's hooks)."""
    from botocore.awsrequest import AWSResponse
    from moto.sagemaker.models import sagemaker_backends

    import aws_env

    request = json.loads(params["body"])
    backend = sagemaker_backends[aws_env.ACCOUNT][aws_env.REGION]
    endpoint = backend.endpoints[request["EndpointName"]]
    config = backend.endpoint_configs[request["EndpointConfigName"]]  # KeyError: an update to a config that does not exist
    endpoint.endpoint_config_name = config.endpoint_config_name
    endpoint.last_modified_time = now()
    return AWSResponse(params["url"], 200, {}, None), {"EndpointArn": endpoint.arn}


def delete_model_package_in_moto(params, **_):
    """`before-call.sagemaker.DeleteModelPackage`: moto has none; removes the version as SageMaker does."""
    from botocore.awsrequest import AWSResponse
    from moto.sagemaker.models import sagemaker_backends

    import aws_env

    name = json.loads(params["body"])["ModelPackageName"]
    backend = sagemaker_backends[aws_env.ACCOUNT][aws_env.REGION]
    arn = backend.model_package_name_mapping.get(name, name)
    backend.model_packages.pop(arn)  # KeyError: a version that does not exist
    backend.model_package_name_mapping = {k: v for k, v in backend.model_package_name_mapping.items() if v != arn}
    return AWSResponse(params["url"], 200, {}, None), {}


def install_missing_operations(session) -> None:
    """The SageMaker operations the product calls that moto lacks, on every client of `session`."""
    session.events.register("before-call.sagemaker.UpdateEndpoint", update_endpoint_in_moto)
    session.events.register("before-call.sagemaker.DeleteModelPackage", delete_model_package_in_moto)
