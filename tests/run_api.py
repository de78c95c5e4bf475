"""Print what the Prefect server at PREFECT_API_URL holds about flow runs, as JSON: name, tags, task run
names and every log line (logger, message, task run name).

Run as a script by the tests (``python tests/run_api.py ID...`` or ``--like NAME-PREFIX``): the pytest
process itself is not pointed at the test server, its subprocesses are.
"""

from __future__ import annotations

import json
import sys

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterName,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.sorting import LogSort

PAGE = 200  # the API's largest page


def describe(client, flow_run) -> dict:
    runs = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id]))
    task_names = {t.id: t.name for t in client.read_task_runs(flow_run_filter=runs, limit=PAGE)}
    logs, offset = [], 0
    while True:
        page = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id])),
                                limit=PAGE, offset=offset, sort=LogSort.TIMESTAMP_ASC)
        logs += [{"logger": g.name, "message": g.message, "task_run": task_names.get(g.task_run_id)} for g in page]
        if len(page) < PAGE:
            break
        offset += PAGE
    return {"id": str(flow_run.id), "name": flow_run.name, "tags": sorted(flow_run.tags),
            "task_runs": sorted(task_names.values()), "logs": logs}


def main(args: list[str]) -> None:
    with get_client(sync_client=True) as client:
        if args[0] == "--like":
            flow_runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=args[1])))
        else:
            flow_runs = [client.read_flow_run(i) for i in args]
        print(json.dumps([describe(client, fr) for fr in flow_runs]))


if __name__ == "__main__":
    main(sys.argv[1:])
