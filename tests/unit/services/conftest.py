import pytest

from chat.models import Room
from tests.unit.factories import instance


@pytest.fixture
def room(db):
    instance("here")
    return Room.objects.create(name="Test", slug="test")
