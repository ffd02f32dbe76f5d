"""Records a history into tests/histories/ for the replay test: `python -m tests.record_history`.

Record a new one when the workflow changes on purpose, and keep the old ones: they stand for
runs that may still be in flight somewhere.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import date

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from tests.conftest import TEST_SERVER, register_search_attributes
from tests.test_replay import HISTORIES, record_history


async def main() -> None:
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=str(TEST_SERVER)
    )
    try:
        await register_search_attributes(env.client)
        name = f"{date.today():%Y%m%d}-reject-approve-revise"
        history = await record_history(env)
        path = HISTORIES / f"{name}.json"
        path.write_text(history.to_json())
        print(f"recorded {path}", file=sys.stderr)
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
