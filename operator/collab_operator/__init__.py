"""The collab operator: scales the gateway Deployment by the load of its rooms.

Layers, innermost first (each imports only from the ones before it):

- ``spec``, ``report``, ``scaling``, ``status``: pure data and the policy; no I/O, no clock.
- ``settings``, ``metrics``, ``rbac``: configuration and declarations.
- ``load`` (Redis) and ``kube`` (the Kubernetes API, the only module that talks to it).
- ``handlers``: the kopf handlers, thin; ``main``: the registry and ``collab operator``.

The resource is ``GatewayPool`` (``crds/gatewaypool.yaml`` beside this package); the
policy and its reasons are described in ``docs/operator.md``.
"""

GROUP = "collab.gremlins.dev"
VERSION = "v1alpha1"
PLURAL = "gatewaypools"
