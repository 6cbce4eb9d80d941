"""Intents: the agent says what it will do; approvers approve that; the grant is only that.

The integration step calls, in order (all pure unless marked I/O):

1. :func:`broker.intent.parse.parse_intent` ``(value, backend, iam, AwsTarget(account,
   region))`` -> :class:`~broker.intent.model.Intent`; raises ``InvalidIntent`` /
   ``UnsupportedResourceType`` (400).
2. (change sets, I/O) :func:`broker.intent.impact_aws.describe_change_set` then
   :func:`broker.intent.verify.same_change_set`: the change set AWS holds is the one described.
3. :func:`broker.intent.scope.check_scope` ``(intent, scope, env, region, iam)`` ->
   ``ScopeCheck`` (``.tier``: the rule that applies; ``.raise_if_outside()``: 400
   ``intent_outside_scope`` naming each operation).
4. :func:`broker.intent.compile.compile_intent` -> ``IntentGrant`` (tier, sha256, session
   policy / Vault policy / database role); ``PolicyTooLarge`` past STS's limit.
5. :func:`broker.intent.classify.summarize` -> the answer's ``intent`` object;
   :func:`broker.intent.classify.describe` -> the approver's lines, replacements first.
6. (I/O, with a deadline) :func:`broker.intent.impact.impact_targets` and
   :func:`broker.intent.impact.measure_impact` with ``AwsImpactProbe`` /
   ``PostgresImpactProbe`` -> ``Impact.text()`` lines; never raises.
7. Store ``intent.canonical_json`` and ``intent.sha256``; at collection,
   :func:`broker.intent.canonical.from_canonical` and compile again.

docs/intents.md describes the forms, the rules and the supported resource types.
"""
