"""The parent process of `billfold serve --workers N`: uvicorn's supervisor, and nothing else.

`billfold serve` checks the settings and migrates the database in its own process, then
replaces itself (exec, same pid) with `python -m billfold.supervisor HOST PORT WORKERS`, so the
process that only starts and watches the workers does not keep the CLI, the ORM and every
domain in memory. Each worker builds its own app from the environment (uvicorn imports the
`billfold.app:create_app` factory in every worker); this module imports nothing of billfold, and
the workers, which import it again as their main module, pay for uvicorn only.
"""

from __future__ import annotations

import sys

import uvicorn


def main(argv: list[str]) -> None:
    host, port, workers = argv[0], int(argv[1]), int(argv[2])
    uvicorn.run(
        "billfold.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        ws="none",  # no route speaks WebSocket (billfold.cli's serve says the same)
    )


if __name__ == "__main__":
    main(sys.argv[1:])
