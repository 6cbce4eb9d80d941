"""Seed the local stand-ins so the example scopes work end to end in `broker dev`.

- the AWS stand-in: in every AWS account the scopes name, a ``broker-admin`` role the
  broker may assume to manage IAM (what ``aws.admin_role_arn`` points at in a real
  deployment), the S3 buckets the scopes name, each holding a README object, and the
  DynamoDB tables they name, each holding a ``demo`` item;
- PostgreSQL: a ``broker_dev`` database with the schemas, tables and owner roles the scopes'
  database blocks name;
- OpenBao: the database secrets engine at each mount the scopes use, one connection per
  scope connection name, all pointing at ``broker_dev``; and a demo secret under each KV
  path pattern of the scopes (``payments/prod/*`` gets ``payments/prod/demo``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import hvac
import psycopg
from hvac import exceptions as vault_errors

from broker.devstack.servers import DEV_ANCHOR_BUCKET, MOTO_ACCOUNT
from broker.policy.globs import substitute
from broker.scopes.registry import ScopeSet

ADMIN_ROLE = "broker-admin"
DEV_DATABASE = "broker_dev"
_BUCKET = re.compile(r"^arn:aws:s3:::([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])$")
_TABLE = re.compile(r"^arn:aws:dynamodb:([a-z0-9-]+):\d{12}:table/([A-Za-z0-9_.-]{3,255})$")


@dataclass
class DemoResources:
    """What one account gets seeded with: buckets, and DynamoDB tables per region."""

    buckets: set[str] = field(default_factory=set)
    tables: set[tuple[str, str]] = field(default_factory=set)  # (region, name)

    def calls(self) -> int:
        """Unchecked moto calls to create them (a bucket and its README; a table and an item)."""
        return 2 * len(self.buckets) + 2 * len(self.tables)


def demo_resources(scope_set: ScopeSet) -> dict[str, DemoResources]:
    """Account -> the S3 buckets and DynamoDB tables (named without wildcards) its tier
    roles reach, so that the scopes' own examples have something to act on."""
    found: dict[str, DemoResources] = {}
    for service, environments in scope_set.compiled.items():
        scope = scope_set.scopes[service]
        for env_name, tiers in environments.items():
            env = scope.environments[env_name]
            if env.aws is None:
                continue
            demo = found.setdefault(env.aws.account, DemoResources())
            for tier in tiers.values():
                for statement in (tier["aws"]["role_policy"] or {}).get("Statement", []):
                    for resource in statement["Resource"]:
                        bucket = _BUCKET.match(resource)
                        table = _TABLE.match(resource)
                        if bucket:
                            demo.buckets.add(bucket.group(1))
                        elif table:
                            demo.tables.add((table.group(1), table.group(2)))
    return found


def moto_bootstrap(scope_set: ScopeSet, broker_arn: str) -> Callable[[Callable[..., Any]], None]:
    """The unchecked calls `broker dev` spends on moto: admin roles, demo buckets, tables."""
    targets = demo_resources(scope_set)

    def bootstrap(root: Callable[..., Any]) -> None:
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": broker_arn}, "Action": "sts:AssumeRole"}
            ],
        }
        admin = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["iam:*"], "Resource": "*"}],
        }
        root("s3").create_bucket(Bucket=DEV_ANCHOR_BUCKET, ObjectLockEnabledForBucket=True)
        for account, demo in sorted(targets.items()):
            credentials = None
            if account != MOTO_ACCOUNT:
                # While moto is unchecked, a role in another account can be assumed before
                # it exists: that is how the first role gets there.
                assumed = root("sts").assume_role(
                    RoleArn=f"arn:aws:iam::{account}:role/bootstrap",
                    RoleSessionName="broker-dev-bootstrap",
                )["Credentials"]
                credentials = {
                    "aws_access_key_id": assumed["AccessKeyId"],
                    "aws_secret_access_key": assumed["SecretAccessKey"],
                    "aws_session_token": assumed["SessionToken"],
                }
            iam = root("iam", credentials=credentials)
            iam.create_role(RoleName=ADMIN_ROLE, AssumeRolePolicyDocument=json.dumps(trust))
            iam.put_role_policy(
                RoleName=ADMIN_ROLE, PolicyName="manage-iam", PolicyDocument=json.dumps(admin)
            )
            s3 = root("s3", credentials=credentials)
            for bucket in sorted(demo.buckets):
                s3.create_bucket(Bucket=bucket)
                s3.put_object(
                    Bucket=bucket, Key="README.txt", Body=f"demo object in {bucket}\n".encode()
                )
            for region, table in sorted(demo.tables):
                dynamodb = root("dynamodb", region=region, credentials=credentials)
                dynamodb.create_table(
                    TableName=table,
                    BillingMode="PAY_PER_REQUEST",
                    KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                    AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                )
                dynamodb.put_item(
                    TableName=table, Item={"id": {"S": "demo"}, "note": {"S": "demo item"}}
                )

    return bootstrap


def budget_for(scope_set: ScopeSet) -> int:
    """Unchecked moto calls the bootstrap needs (users, roles, buckets, tables), with slack."""
    targets = demo_resources(scope_set)
    return 11 + sum(4 + demo.calls() for demo in targets.values())


def _database_objects(scope_set: ScopeSet) -> tuple[set[str], dict[str, str | None]]:
    """(connections as 'mount/name', object -> owner role) across the scopes."""
    connections: set[str] = set()
    objects: dict[str, str | None] = {}
    for scope in scope_set.scopes.values():
        for env in scope.environments.values():
            if env.database is None:
                continue
            connections.add(f"{env.database.mount}/{env.database.connection}")
            for obj in env.database.objects:
                objects.setdefault(obj, env.database.owner_role)
    return connections, objects


def seed_postgres(admin_url: str, scope_set: ScopeSet) -> None:
    """Create broker_dev with the scopes' tables; raises psycopg.Error when unreachable."""
    _, objects = _database_objects(scope_set)
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=3) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (DEV_DATABASE,)
        ).fetchone()
        if not exists:
            connection.execute(f'CREATE DATABASE "{DEV_DATABASE}"')
    dev_url = admin_url.rsplit("/", 1)[0] + f"/{DEV_DATABASE}"
    with psycopg.connect(dev_url, autocommit=True, connect_timeout=3) as connection:
        for obj, owner in sorted(objects.items(), key=lambda item: item[0]):
            schema, table = obj.split(".", 1)
            table = "demo" if table == "*" else table
            connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            connection.execute(
                f'CREATE TABLE IF NOT EXISTS "{schema}"."{table}" '
                "(id serial PRIMARY KEY, note text NOT NULL)"
            )
            if owner:
                connection.execute(
                    "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = "
                    f"'{owner}') THEN CREATE ROLE \"{owner}\" NOLOGIN; END IF; END $$"
                )
                connection.execute(f'ALTER TABLE "{schema}"."{table}" OWNER TO "{owner}"')
                connection.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{owner}"')
            row = connection.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()
            if row is not None and row[0] == 0:
                connection.execute(
                    f'INSERT INTO "{schema}"."{table}" (note) VALUES (%s)', (f"demo row of {obj}",)
                )


def seed_vault_databases(
    client: hvac.Client, scope_set: ScopeSet, host: str, verify: bool
) -> list[str]:
    """Database engine mounts and connections for every scope; returns what was configured."""
    connections, _ = _database_objects(scope_set)
    mounts = {item.split("/", 1)[0] for item in connections}
    for mount in sorted(mounts):
        try:
            client.sys.enable_secrets_engine("database", path=mount)
        except vault_errors.InvalidRequest:
            pass  # already mounted
    for item in sorted(connections):
        mount, name = item.split("/", 1)
        client.secrets.database.configure(
            name=name,
            plugin_name="postgresql-database-plugin",
            mount_point=mount,
            connection_url=f"postgresql://{{{{username}}}}:{{{{password}}}}@{host}/"
            f"{DEV_DATABASE}?sslmode=disable",
            username="postgres",
            password="dev-trust-auth",
            allowed_roles="*",
            verify_connection=verify,
        )
    return sorted(connections)


def agents(scope_set: ScopeSet) -> Iterable[str]:
    """Agent names (agent:NAME subjects) the scopes admit, for demo tokens."""
    names = set()
    for scope in scope_set.scopes.values():
        for requester in scope.requesters:
            if requester.subject and requester.subject.startswith("agent:"):
                names.add(requester.subject.removeprefix("agent:"))
    return sorted(names)


def seed_vault_kv(client: hvac.Client, scope_set: ScopeSet) -> list[str]:
    """A demo secret under each KV path pattern of the scopes (``*`` becomes ``demo``), so
    that a read token has something to read. Returns the secrets written (mount/path)."""
    written = []
    for scope in sorted(scope_set.scopes.values(), key=lambda s: s.service):
        for env in scope.environments.values():
            kv = env.vault
            if kv is None:
                continue
            try:
                client.sys.enable_secrets_engine(
                    "kv", path=kv.mount, options={"version": str(kv.version)}
                )
            except vault_errors.InvalidRequest:
                pass  # mounted already (the dev server has secret/)
            for pattern in kv.paths:
                path = substitute(pattern, env.placeholders(None)).replace("*", "demo")
                secret = {"note": f"demo secret of {scope.service}/{env.name}", "value": "dev"}
                if kv.version == 2:
                    client.secrets.kv.v2.create_or_update_secret(
                        path=path, secret=secret, mount_point=kv.mount
                    )
                else:
                    client.secrets.kv.v1.create_or_update_secret(
                        path=path, secret=secret, mount_point=kv.mount
                    )
                written.append(f"{kv.mount}/{path}")
    return written
