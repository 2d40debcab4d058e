"""The one version of the package: ``pyproject.toml`` reads it from here (setuptools'
``attr:``), and ``crackseg-monitor --version``, the service's ``/health`` body, the
``User-Agent`` of checks and notifications and the ``crackseg_build_info`` gauge show it.

>>> USER_AGENT.startswith("crackseg-monitor/")
True
"""

from __future__ import annotations

__all__ = ["USER_AGENT", "VERSION", "__version__"]

__version__ = "0.1.0"
VERSION = __version__
#: Sent by health checks and notification requests.
USER_AGENT = f"crackseg-monitor/{VERSION}"
