"""Stands in for sagehost in the orphan test: launch one echo worker, print its pid, then hang.

Usage: ``python parent_app.py DATA_DIR asyncio|uvloop``. The test SIGKILLs this process and
checks that the worker dies with it.
"""

from __future__ import annotations

import asyncio
import shlex
import sys
from pathlib import Path

from sagehost.core.ports import ContainerSpec, FleetSpec
from sagehost.workers import ProcessWorkerPool, WorkerSettings

APP = Path(__file__).with_name("container_app.py")


async def main(data_dir: Path) -> None:
    pool = ProcessWorkerPool(WorkerSettings(data_dir=data_dir))
    image = f"process:{shlex.quote(sys.executable)} {shlex.quote(str(APP))} echo"
    fleet = await pool.launch(FleetSpec(key="orphan", container=ContainerSpec(image=image)))
    await fleet.wait_ready()
    print(fleet.instances[0].pid, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    data_dir, loop = Path(sys.argv[1]), sys.argv[2]
    if loop == "uvloop":
        import uvloop

        uvloop.run(main(data_dir))
    else:
        asyncio.run(main(data_dir))
