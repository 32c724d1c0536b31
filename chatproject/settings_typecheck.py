"""
The settings django-stubs loads while mypy checks the code (pyproject.toml): the
project's own, read as on a developer's machine, so that the type checker needs
no SECRET_KEY or DEBUG in its environment. Never served with.
"""

import os

os.environ.setdefault("DEBUG", "1")

from .settings import *  # noqa: F403
