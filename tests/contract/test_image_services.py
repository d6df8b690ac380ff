"""The AWS service data each image keeps (runtime/imagebuild/slim.py) covers every service its container calls."""

from __future__ import annotations

import pytest

from tests.contract.calls import Recording
from tests.images.images import IMAGES, Image

pytestmark = pytest.mark.contract


@pytest.mark.parametrize("image", IMAGES, ids=[i.name for i in IMAGES])
def test_image_keeps_the_botocore_data_of_every_service_its_container_calls(image: Image, recorded: Recording) -> None:
    called = {c.service for c in recorded.calls if c.container == image.service}
    assert called, f"no recorded calls for the {image.service} container"
    missing = called - image.botocore_services()
    assert not missing, f"{image.name} trims botocore data the {image.service} container needs: {sorted(missing)}"
