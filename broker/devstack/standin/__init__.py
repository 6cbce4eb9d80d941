"""The local AWS stand-in: moto's server with IAM evaluation that follows AWS's rules.

moto alone checks only an identity's own policies (resources for S3 only, conditions
barely) and never applies the session policy of an AssumeRole. The broker's promises
(session policies narrow a role, a conditional deny revokes older sessions) need more, so
``python -m broker.devstack.standin`` runs moto's own server in this process after
:func:`broker.devstack.standin.moto_hooks.install` has replaced its authorization step.

Modules: ``conditions`` (condition operators), ``statements`` (does a statement apply),
``evaluation`` (AWS's decision logic), ``calls`` (which action and resource ARNs a call
needs), ``moto_hooks`` (the only module that touches moto's internals).
"""
