"""memindex is numpy only: its tests take no database and import nothing of Django's."""

import pytest


@pytest.fixture(autouse=True)
def _fresh_index_cache():
    """Overrides the project-wide fixture, which clears the Django app's index cache and key memo:
    these tests never fill them."""
    yield
