"""The pure part of collab_operator.kube: a Deployment's selector as a lightkube query."""

from __future__ import annotations

import pytest
from lightkube.core.selector import build_selector
from lightkube.models.meta_v1 import LabelSelector, LabelSelectorRequirement

from collab_operator.kube import KubeError, selector_of


def test_match_labels_and_expressions() -> None:
    selector = LabelSelector(
        matchLabels={"app.kubernetes.io/name": "collab", "component": "gateway"},
        matchExpressions=[
            LabelSelectorRequirement(key="tier", operator="In", values=["a", "b"]),
            LabelSelectorRequirement(key="canary", operator="DoesNotExist"),
            LabelSelectorRequirement(key="component", operator="Exists"),
        ],
    )
    assert build_selector(selector_of(selector)) == (
        "app.kubernetes.io/name=collab,component=gateway,tier in (a,b),!canary,component"
    )


def test_no_selector_selects_everything() -> None:
    assert selector_of(None) == []


def test_unknown_operator_is_an_error() -> None:
    selector = LabelSelector(
        matchExpressions=[LabelSelectorRequirement(key="x", operator="Near", values=["1"])]
    )
    with pytest.raises(KubeError, match="unknown label selector operator"):
        selector_of(selector)
