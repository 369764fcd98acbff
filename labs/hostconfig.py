"""This process's sandbox host, built from Django settings: the one place the web and the
worker turn settings into the engine's HostConfig (sandbox/ never reads settings)."""
from __future__ import annotations

from pathlib import Path

from django.conf import settings

from sandbox.config import HostConfig
from sandbox.quotas import host_budget


def host_config() -> HostConfig:
    """This process's host configuration, read from Django settings at call time."""
    return HostConfig(
        data_dir=Path(settings.LAB_DATA_DIR),
        host=settings.LAB_HOST_NAME,
        redis_url=settings.STREAMS_REDIS_URL,
        uid_base=settings.LAB_SANDBOX_UID,
        range_first=settings.LAB_SANDBOX_RANGE_UID,
        ranges=settings.LAB_SANDBOX_RANGES,
        runc=settings.LAB_RUNC,
        # A sandbox needs a free uid range to start: no more than there are ranges.
        capacity=min(settings.LAB_HOST_CAPACITY or host_budget().capacity, settings.LAB_SANDBOX_RANGES or 2**31),
    )
