"""``python -m sagehost.modelhost``: the only place that reads the environment."""

from __future__ import annotations

import logging
import os
import sys

from sagehost.modelhost.server import run
from sagehost.modelhost.settings import Settings, SettingsError


def main() -> int:
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as exc:
        print(f"modelhost: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
