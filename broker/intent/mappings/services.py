"""Resource types that run or authorize things: IAM, Lambda, SNS, CloudFormation."""

from __future__ import annotations

from broker.intent.catalog import Related, ResourceType, named, with_path
from broker.intent.mappings.helpers import (
    COMMON_STATE_ONLY,
    CREATE_UPDATE,
    PIKE,
    PROVIDER,
    REGISTRY,
    REGISTRY_RELATED,
    SAR,
    kms,
    last_segment,
    layers,
    pass_role,
    policy_identity,
    s3_object_from,
    stack_identity,
    stack_physical,
    tagging,
    template_object,
)

IAM_ROLE = ResourceType(
    terraform="aws_iam_role",
    cloudformation="AWS::IAM::Role",
    service="iam",
    arn_type="role",
    identity=("name", "path"),
    arn_values=with_path("RoleNameWithPath"),
    create=("iam:CreateRole", "iam:GetRole"),
    read=("iam:GetRole", "iam:ListRolePolicies", "iam:ListAttachedRolePolicies"),
    delete=(
        "iam:ListInstanceProfilesForRole",
        "iam:ListRolePolicies",
        "iam:DeleteRolePolicy",
        "iam:ListAttachedRolePolicies",
        "iam:DetachRolePolicy",
        "iam:DeleteRole",
    ),
    update=None,
    create_attributes={
        **tagging("iam:TagRole"),
        "inline_policy": ("iam:PutRolePolicy",),
        "managed_policy_arns": ("iam:AttachRolePolicy",),
        "permissions_boundary": ("iam:PutRolePermissionsBoundary",),
    },
    update_attributes={
        **tagging("iam:TagRole", "iam:UntagRole"),
        "assume_role_policy": ("iam:UpdateAssumeRolePolicy",),
        "description": ("iam:UpdateRoleDescription",),
        "max_session_duration": ("iam:UpdateRole",),
        "permissions_boundary": ("iam:PutRolePermissionsBoundary",),
        "inline_policy": ("iam:PutRolePolicy", "iam:DeleteRolePolicy"),
        "managed_policy_arns": ("iam:AttachRolePolicy", "iam:DetachRolePolicy"),
    },
    unset_attributes={"permissions_boundary": ("iam:DeleteRolePermissionsBoundary",)},
    state_only=COMMON_STATE_ONLY
    | {"force_detach_policies", "name_prefix", "unique_id", "create_date"},
    exports={"id": "name", "name": "name", "arn": "arn"},
    loss="it will be deleted and created again; what trusts or uses it by its unique id breaks",
    not_in_registry={"iam:ListInstanceProfilesForRole": PIKE.format("iam/aws_iam_role")},
    sources=(
        REGISTRY.format("AWS::IAM::Role"),
        SAR.format("iam role"),
        PIKE.format("iam/aws_iam_role"),
        PROVIDER.format("aws_iam_role"),
    ),
)

IAM_POLICY = ResourceType(
    terraform="aws_iam_policy",
    cloudformation="AWS::IAM::ManagedPolicy",
    service="iam",
    arn_type="policy",
    identity=("name", "path"),
    arn_values=with_path("PolicyNameWithPath"),
    create=("iam:CreatePolicy",),
    read=("iam:GetPolicy", "iam:GetPolicyVersion"),
    delete=("iam:ListPolicyVersions", "iam:DeletePolicyVersion", "iam:DeletePolicy"),
    # A new document is a new version; with five versions the provider deletes the oldest.
    update=("iam:CreatePolicyVersion", "iam:ListPolicyVersions", "iam:DeletePolicyVersion"),
    create_attributes=tagging("iam:TagPolicy"),
    update_attributes=tagging("iam:TagPolicy", "iam:UntagPolicy"),
    state_only=COMMON_STATE_ONLY | {"name_prefix", "policy_id", "attachment_count"},
    exports={"id": "arn", "arn": "arn", "name": "name"},
    loss="it will be deleted and created again; its attachments are lost",
    physical_identity=policy_identity,
    not_in_registry={
        "iam:TagPolicy": PIKE.format("iam/aws_iam_policy"),
        "iam:UntagPolicy": PIKE.format("iam/aws_iam_policy"),
    },
    sources=(
        REGISTRY.format("AWS::IAM::ManagedPolicy"),
        SAR.format("iam policy"),
        PIKE.format("iam/aws_iam_policy"),
        PROVIDER.format("aws_iam_policy"),
    ),
)

LAMBDA_CODE = (
    "filename",
    "source_code_hash",
    "s3_bucket",
    "s3_key",
    "s3_object_version",
    "image_uri",
    "architectures",
)

LAMBDA_FUNCTION = ResourceType(
    terraform="aws_lambda_function",
    cloudformation="AWS::Lambda::Function",
    service="lambda",
    arn_type="function",
    identity=("function_name",),
    arn_values=named("function_name", "FunctionName"),
    create=("lambda:CreateFunction", "lambda:GetFunction"),
    read=(
        "lambda:GetFunction",
        "lambda:GetFunctionCodeSigningConfig",
        "lambda:ListVersionsByFunction",
    ),
    delete=("lambda:DeleteFunction", "lambda:GetFunction"),
    update=("lambda:UpdateFunctionConfiguration",),
    create_attributes={
        **tagging("lambda:TagResource"),
        "reserved_concurrent_executions": ("lambda:PutFunctionConcurrency",),
        "publish": ("lambda:PublishVersion",),
    },
    update_attributes={
        **tagging("lambda:TagResource", "lambda:UntagResource"),
        **{name: ("lambda:UpdateFunctionCode",) for name in LAMBDA_CODE},
        "publish": ("lambda:PublishVersion",),
        "reserved_concurrent_executions": ("lambda:PutFunctionConcurrency",),
        "code_signing_config_arn": ("lambda:PutFunctionCodeSigningConfig",),
    },
    unset_attributes={
        "reserved_concurrent_executions": ("lambda:DeleteFunctionConcurrency",),
        "code_signing_config_arn": ("lambda:DeleteFunctionCodeSigningConfig",),
    },
    state_only=COMMON_STATE_ONLY
    | {
        "qualified_arn",
        "qualified_invoke_arn",
        "invoke_arn",
        "version",
        "last_modified",
        "source_code_size",
        "signing_job_arn",
        "signing_profile_version_arn",
        "skip_destroy",
        "replace_security_groups_on_destroy",
        "replacement_security_group_ids",
    },
    refused={
        "vpc_config": "a function in a VPC needs ec2:Describe* on '*', which no exact grant is",
        "file_system_config": "mounting EFS is not mapped",
    },
    related=(
        pass_role("role"),
        s3_object_from("s3_bucket", "s3_key"),
        Related(("layers",), ("lambda:GetLayerVersion",), layers, CREATE_UPDATE, REGISTRY_RELATED),
        kms(
            (
                "kms:CreateGrant",
                "kms:Decrypt",
                "kms:DescribeKey",
                "kms:Encrypt",
                "kms:GenerateDataKey",
            ),
            "kms_key_arn",
        ),
    ),
    exports={"id": "function_name", "function_name": "function_name", "arn": "arn"},
    loss="it will be deleted and created again; its versions and aliases are lost",
    physical_identity=lambda pid: {"function_name": pid},
    not_in_registry={"lambda:ListVersionsByFunction": PIKE.format("lambda/aws_lambda_function")},
    sources=(
        REGISTRY.format("AWS::Lambda::Function"),
        SAR.format("lambda function"),
        PIKE.format("lambda/aws_lambda_function"),
        PROVIDER.format("aws_lambda_function"),
    ),
)

SNS_TOPIC = ResourceType(
    terraform="aws_sns_topic",
    cloudformation="AWS::SNS::Topic",
    service="sns",
    arn_type="topic",
    identity=("name",),
    arn_values=named("name", "TopicName"),
    create=("sns:CreateTopic", "sns:SetTopicAttributes", "sns:GetTopicAttributes"),
    read=("sns:GetTopicAttributes", "sns:ListTagsForResource"),
    delete=("sns:DeleteTopic", "sns:GetTopicAttributes"),
    update=("sns:SetTopicAttributes",),
    create_attributes=tagging("sns:TagResource"),
    update_attributes=tagging("sns:TagResource", "sns:UntagResource"),
    state_only=COMMON_STATE_ONLY | {"name_prefix", "owner", "beginning_archive_time"},
    related=(
        pass_role(
            "application_failure_feedback_role_arn",
            "application_success_feedback_role_arn",
            "firehose_failure_feedback_role_arn",
            "firehose_success_feedback_role_arn",
            "http_failure_feedback_role_arn",
            "http_success_feedback_role_arn",
            "lambda_failure_feedback_role_arn",
            "lambda_success_feedback_role_arn",
            "sqs_failure_feedback_role_arn",
            "sqs_success_feedback_role_arn",
        ),
    ),
    exports={"id": "arn", "arn": "arn", "name": "name"},
    loss="it will be deleted and created again; its subscriptions are lost",
    physical_identity=last_segment(":", "name"),
    sources=(
        REGISTRY.format("AWS::SNS::Topic"),
        SAR.format("sns topic"),
        PIKE.format("sns/aws_sns_topic"),
        PROVIDER.format("aws_sns_topic"),
    ),
)

CLOUDFORMATION_STACK = ResourceType(
    terraform="aws_cloudformation_stack",
    cloudformation="AWS::CloudFormation::Stack",
    service="cloudformation",
    arn_type="stack",
    identity=("name",),
    optional_identity=("id",),
    arn_values=stack_identity,
    create=(
        "cloudformation:CreateStack",
        "cloudformation:DescribeStacks",
        "cloudformation:DescribeStackEvents",
    ),
    read=("cloudformation:DescribeStacks", "cloudformation:GetTemplate"),
    delete=(
        "cloudformation:DeleteStack",
        "cloudformation:DescribeStacks",
        "cloudformation:DescribeStackEvents",
    ),
    update=(
        "cloudformation:UpdateStack",
        "cloudformation:DescribeStacks",
        "cloudformation:DescribeStackEvents",
    ),
    # The provider sends a new stack policy with UpdateStack (Pike: SetStackPolicy too).
    update_attributes={
        "policy_body": ("cloudformation:UpdateStack", "cloudformation:SetStackPolicy"),
        "policy_url": ("cloudformation:UpdateStack", "cloudformation:SetStackPolicy"),
    },
    state_only=COMMON_STATE_ONLY | {"outputs"},
    required={
        "iam_role_arn": "without a service role CloudFormation acts with the intent's own "
        "credential, which holds only the stack's operations: give the stack an iam_role_arn",
    },
    related=(
        pass_role("iam_role_arn"),
        Related(
            ("template_url",),
            ("s3:GetObject",),
            template_object,
            CREATE_UPDATE,
            "AWS CloudFormation documentation: TemplateURL is read with the caller's credential",
        ),
    ),
    exports={"name": "name", "id": "id"},
    holds_data=True,
    loss="every resource in it will be deleted",
    physical_identity=stack_physical,
    not_in_registry={
        "cloudformation:DescribeStackEvents": PIKE.format(
            "cloudformation/aws_cloudformation_stack"
        ),
    },
    sources=(
        REGISTRY.format("AWS::CloudFormation::Stack"),
        SAR.format("cloudformation stack"),
        PIKE.format("cloudformation/aws_cloudformation_stack"),
        PROVIDER.format("aws_cloudformation_stack"),
    ),
)
