"""Serve policy-qa: ``python -m service`` (what ``make serve`` and the container run).

Host, port, workers (``WEB_CONCURRENCY``) and log level come from the settings. Logging is
configured here, at the entry point, in every worker process; the app only logs.
"""

from __future__ import annotations

import uvicorn

from index.settings import Settings
from service.observability import log_config


def main() -> None:
    settings = Settings()
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        access_log=False,
        log_config=log_config(settings.log_level),
    )


if __name__ == "__main__":
    main()
