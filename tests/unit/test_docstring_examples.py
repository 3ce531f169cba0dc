"""The runnable examples in docstrings stay true."""

import doctest
import importlib

import pytest

MODULES = [
    "emolens.analytics",
    "emolens.analytics_report.model",
    "emolens.analytics_report.source",
    "emolens.analytics_report.svg",
    "emolens.annotate",
    "emolens.bus",
    "emolens.bus.base",
    "emolens.bus.memory",
    "emolens_tools.evaluation.metrics",
    "emolens.logs",
    "emolens.media",
    "emolens.metrics",
    "emolens.report",
    "emolens.services.access",
    "emolens.services.gateway",
    "emolens.services.grpc_errors",
    "emolens.services.pipeline",
    "emolens.store.partitions",
    "emolens.store.sql",
    "emolens_tools.supervise",
    "emolens_tools.synthetic",
    "emolens.track",
    "emolens.vision.align",
    "emolens.vision.detect",
    "emolens.vision.follow",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples left; drop it from MODULES"
    assert result.failed == 0
