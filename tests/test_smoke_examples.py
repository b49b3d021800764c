import json

import pytest

from tests.conftest import complete_example_files

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", complete_example_files(), ids=lambda p: p.name)
def test_example_accepted(post_event, path):
    response = post_event(json.loads(path.read_text()))
    assert response.status_code == 201, response.content
