"""Resource types that hold data: S3, DynamoDB, RDS, SQS."""

from __future__ import annotations

from dataclasses import replace

from broker.intent.catalog import Related, ResourceType, named
from broker.intent.mappings.helpers import (
    COMMON_STATE_ONLY,
    PIKE,
    PROVIDER,
    REGISTRY,
    SAR,
    bucket_arn,
    final_snapshot,
    force_destroyed_objects,
    kms,
    last_segment,
    pass_role,
    rds_groups,
    tagging,
)

S3_OBJECT = ResourceType(
    terraform="aws_s3_object",
    cloudformation=None,
    service="s3",
    arn_type="object",
    identity=("bucket", "key"),
    arn_values=lambda v: {"BucketName": v["bucket"], "ObjectName": v["key"]},
    create=("s3:PutObject",),
    read=("s3:GetObject", "s3:GetObjectTagging"),
    delete=("s3:DeleteObject", "s3:DeleteObjectVersion"),
    # Any change to content or metadata uploads the object again.
    update=("s3:PutObject",),
    create_attributes={
        **tagging("s3:PutObjectTagging"),
        "acl": ("s3:PutObjectAcl",),
        "object_lock_legal_hold_status": ("s3:PutObjectLegalHold",),
        "object_lock_mode": ("s3:PutObjectRetention",),
    },
    update_attributes={
        **tagging("s3:PutObjectTagging"),
        "acl": ("s3:PutObjectAcl",),
        "object_lock_legal_hold_status": ("s3:PutObjectLegalHold",),
        "object_lock_mode": ("s3:PutObjectRetention",),
        "object_lock_retain_until_date": ("s3:PutObjectRetention",),
    },
    state_only=COMMON_STATE_ONLY | {"force_destroy", "override_provider", "version_id"},
    related=(
        # Deleting an object of a versioned bucket deletes every version: the provider
        # lists them first.
        Related(
            ("bucket",),
            ("s3:ListBucketVersions",),
            bucket_arn,
            frozenset({"delete"}),
            PROVIDER.format("aws_s3_object (delete removes all versions)"),
        ),
        kms(
            ("kms:GenerateDataKey", "kms:Decrypt"),
            "kms_key_id",
            source="Amazon S3 documentation: uploads encrypted with SSE-KMS",
        ),
    ),
    exports={"id": "key", "key": "key", "bucket": "bucket"},
    holds_data=True,
    loss="its data will be lost",
    sources=(
        SAR.format("s3 object"),
        PIKE.format("s3/aws_s3_object"),
        PROVIDER.format("aws_s3_object"),
    ),
)

S3_BUCKET_OBJECT = replace(S3_OBJECT, terraform="aws_s3_bucket_object")

S3_BUCKET = ResourceType(
    terraform="aws_s3_bucket",
    cloudformation="AWS::S3::Bucket",
    service="s3",
    arn_type="bucket",
    identity=("bucket",),
    arn_values=named("bucket", "BucketName"),
    create=("s3:CreateBucket", "s3:ListBucket"),
    read=(
        "s3:ListBucket",
        "s3:GetBucketAcl",
        "s3:GetBucketCORS",
        "s3:GetBucketWebsite",
        "s3:GetBucketVersioning",
        "s3:GetAccelerateConfiguration",
        "s3:GetBucketRequestPayment",
        "s3:GetBucketLogging",
        "s3:GetLifecycleConfiguration",
        "s3:GetReplicationConfiguration",
        "s3:GetEncryptionConfiguration",
        "s3:GetBucketObjectLockConfiguration",
        "s3:GetBucketTagging",
        "s3:GetBucketPolicy",
    ),
    delete=("s3:DeleteBucket", "s3:ListBucket"),
    # Since provider v4 a bucket's configuration lives in its own resources
    # (aws_s3_bucket_versioning...); changes to the deprecated inline blocks are refused.
    update=None,
    create_attributes={
        **tagging("s3:PutBucketTagging"),
        "object_lock_enabled": ("s3:PutBucketObjectLockConfiguration", "s3:PutBucketVersioning"),
    },
    update_attributes=tagging("s3:PutBucketTagging"),
    state_only=COMMON_STATE_ONLY | {"force_destroy", "bucket_prefix"},
    related=(
        # force_destroy: the provider deletes every object version before the bucket.
        Related(
            ("force_destroy", "bucket"),
            ("s3:ListBucketVersions",),
            lambda v, t: bucket_arn(v, t) if v.get("force_destroy") is True else (),
            frozenset({"delete"}),
            PROVIDER.format("aws_s3_bucket, force_destroy"),
        ),
        Related(
            ("force_destroy", "bucket"),
            ("s3:DeleteObject", "s3:DeleteObjectVersion"),
            force_destroyed_objects,
            frozenset({"delete"}),
            PROVIDER.format("aws_s3_bucket, force_destroy"),
        ),
    ),
    exports={"id": "bucket", "bucket": "bucket", "arn": "arn"},
    holds_data=True,
    loss="its data will be lost",
    physical_identity=lambda pid: {"bucket": pid},
    not_in_registry={
        "s3:GetBucketRequestPayment": PIKE.format("s3/aws_s3_bucket"),
        "s3:GetBucketPolicy": PIKE.format("s3/aws_s3_bucket"),
    },
    sources=(
        REGISTRY.format("AWS::S3::Bucket"),
        SAR.format("s3 bucket"),
        PIKE.format("s3/aws_s3_bucket"),
        PROVIDER.format("aws_s3_bucket"),
    ),
)

DYNAMODB_TABLE = ResourceType(
    terraform="aws_dynamodb_table",
    cloudformation="AWS::DynamoDB::Table",
    service="dynamodb",
    arn_type="table",
    identity=("name",),
    arn_values=named("name", "TableName"),
    create=("dynamodb:CreateTable", "dynamodb:DescribeTable"),
    read=(
        "dynamodb:DescribeTable",
        "dynamodb:DescribeContinuousBackups",
        "dynamodb:DescribeTimeToLive",
        "dynamodb:ListTagsOfResource",
    ),
    delete=("dynamodb:DeleteTable", "dynamodb:DescribeTable"),
    update=("dynamodb:UpdateTable",),
    create_attributes={
        **tagging("dynamodb:TagResource"),
        "ttl": ("dynamodb:UpdateTimeToLive",),
        "point_in_time_recovery": ("dynamodb:UpdateContinuousBackups",),
    },
    update_attributes={
        **tagging("dynamodb:TagResource", "dynamodb:UntagResource"),
        "ttl": ("dynamodb:UpdateTimeToLive",),
        "point_in_time_recovery": ("dynamodb:UpdateContinuousBackups",),
    },
    state_only=COMMON_STATE_ONLY,
    refused={
        "replica": "a table with replicas spans regions, and an intent covers one region",
        "import_table": "importing from S3 reads objects the plan does not name",
        "restore_source_name": "restoring from a backup is not mapped",
        "restore_source_table_arn": "restoring from a backup is not mapped",
    },
    related=(
        kms(
            ("kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:Encrypt"),
            "server_side_encryption",
            "kms_key_arn",
        ),
    ),
    exports={"id": "name", "name": "name", "arn": "arn"},
    holds_data=True,
    loss="its data will be lost",
    physical_identity=lambda pid: {"name": pid},
    sources=(
        REGISTRY.format("AWS::DynamoDB::Table"),
        SAR.format("dynamodb table"),
        PIKE.format("dynamodb/aws_dynamodb_table"),
        PROVIDER.format("aws_dynamodb_table"),
    ),
)

DB_INSTANCE = ResourceType(
    terraform="aws_db_instance",
    cloudformation="AWS::RDS::DBInstance",
    service="rds",
    arn_type="db",
    identity=("identifier",),
    arn_values=named("identifier", "DbInstanceName"),
    create=("rds:CreateDBInstance", "rds:DescribeDBInstances"),
    read=("rds:DescribeDBInstances",),
    delete=("rds:DeleteDBInstance", "rds:DescribeDBInstances"),
    update=("rds:ModifyDBInstance",),
    create_attributes=tagging("rds:AddTagsToResource"),
    update_attributes=tagging("rds:AddTagsToResource", "rds:RemoveTagsFromResource"),
    state_only=COMMON_STATE_ONLY
    | {
        "apply_immediately",
        "skip_final_snapshot",
        "final_snapshot_identifier",
        "delete_automated_backups",
        "identifier_prefix",
        "resource_id",
        "address",
        "endpoint",
        "hosted_zone_id",
        "status",
        "latest_restorable_time",
    },
    refused={
        "replicate_source_db": "creating a read replica is not mapped",
        "snapshot_identifier": "restoring from a snapshot is not mapped",
        "restore_to_point_in_time": "restoring to a point in time is not mapped",
        "s3_import": "importing from S3 is not mapped",
        "blue_green_update": "blue/green deployments are not mapped",
        "manage_master_user_password": "a Secrets Manager secret would be created outside the plan",
    },
    related=(
        rds_groups("rds:CreateDBInstance", frozenset({"create"})),
        rds_groups("rds:ModifyDBInstance", frozenset({"update"})),
        pass_role("monitoring_role_arn"),
        kms(("kms:CreateGrant", "kms:DescribeKey"), "kms_key_id"),
        Related(
            ("skip_final_snapshot", "final_snapshot_identifier"),
            ("rds:CreateDBSnapshot",),
            final_snapshot,
            frozenset({"delete"}),
            REGISTRY.format("AWS::RDS::DBInstance"),
        ),
    ),
    exports={"identifier": "identifier", "arn": "arn"},
    holds_data=True,
    loss="its data will be lost",
    physical_identity=lambda pid: {"identifier": pid},
    sources=(
        REGISTRY.format("AWS::RDS::DBInstance"),
        SAR.format("rds db"),
        PIKE.format("rds/aws_db_instance"),
        PROVIDER.format("aws_db_instance"),
    ),
)

SQS_QUEUE = ResourceType(
    terraform="aws_sqs_queue",
    cloudformation="AWS::SQS::Queue",
    service="sqs",
    arn_type="queue",
    identity=("name",),
    arn_values=named("name", "QueueName"),
    create=("sqs:CreateQueue", "sqs:GetQueueAttributes"),
    read=("sqs:GetQueueAttributes", "sqs:ListQueueTags"),
    delete=("sqs:DeleteQueue", "sqs:GetQueueAttributes"),
    update=("sqs:SetQueueAttributes",),
    create_attributes=tagging("sqs:TagQueue"),
    update_attributes=tagging("sqs:TagQueue", "sqs:UntagQueue"),
    state_only=COMMON_STATE_ONLY | {"name_prefix", "url"},
    exports={"name": "name", "arn": "arn"},
    holds_data=True,
    loss="its messages will be lost",
    physical_identity=last_segment("/", "name"),
    sources=(
        REGISTRY.format("AWS::SQS::Queue"),
        SAR.format("sqs queue"),
        PIKE.format("sqs/aws_sqs_queue"),
        PROVIDER.format("aws_sqs_queue"),
    ),
)
