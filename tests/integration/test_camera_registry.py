"""The camera registry on real PostgreSQL: a camera is registered once, as first declared (or
filled in when it had neither zone nor site); later declarations do not move it, configuration
(ensure_camera) does."""

from __future__ import annotations

import pytest

from emolens.store import Camera, SqlStore
from tests.redelivery import frame

pytestmark = [pytest.mark.integration, pytest.mark.auth]


def test_a_registered_camera_is_moved_by_configuration_only(postgres_url):
    s = SqlStore(postgres_url)
    assert s.register_camera(Camera("reg-1", "e", "mall-a")) == Camera("reg-1", "e", "mall-a")
    assert s.register_camera(Camera("reg-1", "e", "mall-b")) == Camera("reg-1", "e", "mall-a")
    s.apply([frame("reg-2", 0)])  # a placeholder with neither zone nor site
    assert s.register_camera(Camera("reg-2", "z", "s")) == Camera("reg-2", "z", "s")
    s.ensure_camera(Camera("reg-1", "e", "mall-b"))
    assert s.register_camera(Camera("reg-1", "x", "y")) == Camera("reg-1", "e", "mall-b")
    s.close()
