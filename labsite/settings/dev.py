"""Settings for one machine with nothing configured (./lab up)."""
from __future__ import annotations

from labsite.settings.base import *  # noqa: F401,F403
