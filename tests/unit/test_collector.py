import gc

import pytest

from chat.collector import collector_tune


@pytest.fixture
def collector_restored():
    threshold = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_what_exists_at_start_is_left_out_of_collections(collector_restored):
    built = [{"made": "at start"}]
    assert gc.get_freeze_count() == 0
    collector_tune()
    assert gc.get_freeze_count() > 0
    # Frozen objects are in no generation that a collection walks.
    assert not any(obj is built for obj in gc.get_objects())


def test_young_collections_run_at_the_configured_threshold(
    collector_restored, settings
):
    settings.CHAT_GC_YOUNG_THRESHOLD = 1234
    middle, old = gc.get_threshold()[1:]
    collector_tune()
    assert gc.get_threshold() == (1234, middle, old)
