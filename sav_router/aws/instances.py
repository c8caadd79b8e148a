"""SageMaker instance types whose storage volume is local NVMe (instance store).

SageMaker refuses a KMS key for the storage volume of these types (`VolumeKmsKeyId` of training and transform
jobs, `KmsKeyId` of an endpoint config): their instance storage is encrypted by AWS with a hardware module. The
CDK app and the promotion function omit the key for them (outputs stay encrypted with the key); the refusal would
otherwise come at run time, from the first job or the first approval. Families: `*d` / `*dn` (m5d, c5d, r5d,
c6id, m5dn, g4dn, p3dn, p4d...) and the GPU and Trainium families that only exist with NVMe storage.
"""

from __future__ import annotations

import re

_NVME_FAMILIES = frozenset({"g5", "g6", "g6e", "p5", "p5e", "p5en", "trn1", "trn1n", "trn2", "gr6"})
_TYPE = re.compile(r"^(?:ml\.)?(?P<family>[a-z]+\d+[a-z-]*)\.(?P<size>[a-z0-9]+)$")


def has_instance_storage(instance_type: str) -> bool:
    """True when the type's storage volume is local NVMe, so no KMS key may be given for it."""
    match = _TYPE.match(instance_type)
    if match is None:
        raise ValueError(f"not a SageMaker instance type: {instance_type!r}")
    family = match["family"]
    if family in _NVME_FAMILIES:
        return True
    # the generation digit(s), then attribute letters: a "d" among them means local NVMe (m5d, c6id, m5dn, g4dn, p4d)
    attributes = re.sub(r"^[a-z]+\d+", "", family)
    return "d" in attributes


def volume_key(instance_type: str, key_arn: str) -> dict[str, str]:
    """`{"VolumeKmsKeyId": key}` for an EBS-backed type, `{}` for one with instance storage."""
    return {} if has_instance_storage(instance_type) else {"VolumeKmsKeyId": key_arn}
