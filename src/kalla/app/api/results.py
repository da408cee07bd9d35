"""``/api/runs/{id}/results/{output}``: pages of an output as JSON, or the whole as a download."""

from __future__ import annotations

import logging
from enum import StrEnum
from pathlib import Path
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from kalla.app.api.runs import get_run
from kalla.app.deps import SessionDep, require_token
from kalla.app.errors import BadRequestError
from kalla.app.results import (
    FilterOperator,
    csv_chunks,
    empty_page,
    read_page,
    write_xlsx,
)
from kalla.app.schemas import MAX_INT, ResultPage
from kalla.errors import ConflictError, KallaError, NotFoundError
from kalla.runner import JobStatus

router = APIRouter(prefix="/api/runs", tags=["results"], dependencies=[Depends(require_token)])
log = logging.getLogger("kalla.app.results")

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PARQUET = "application/vnd.apache.parquet"


class OutputName(StrEnum):
    MATCHED = "matched"
    UNMATCHED_LEFT = "unmatched_left"
    UNMATCHED_RIGHT = "unmatched_right"
    AMBIGUOUS = "ambiguous"


class ResultFormat(StrEnum):
    JSON = "json"
    CSV = "csv"
    XLSX = "xlsx"
    PARQUET = "parquet"


class SortOrder(StrEnum):
    ASC = "asc"
    DESC = "desc"


@router.get(
    "/{run_id}/results/{output}",
    response_model=ResultPage,
    responses={
        200: {
            "description": "a page (JSON), or the whole output as a download (format=…)",
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                XLSX: {"schema": {"type": "string", "format": "binary"}},
                PARQUET: {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
def read_results(
    run_id: UUID,
    output: OutputName,
    session: SessionDep,
    format: ResultFormat = ResultFormat.JSON,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    sort: Annotated[str | None, Query(max_length=500, description="column to sort by")] = None,
    order: SortOrder = SortOrder.ASC,
    filter_column: Annotated[str | None, Query(max_length=500)] = None,
    filter_op: FilterOperator = FilterOperator.EQ,
    filter_value: Annotated[str | None, Query(max_length=1000)] = None,
) -> Response | ResultPage:
    """Rows of one output with the total; sort by a column; filter on one column.

    ``format=csv|xlsx|parquet`` downloads the whole output instead (sort and filter ignored).
    """
    run = get_run(session, run_id)
    if run.status != JobStatus.COMPLETED.value:
        raise ConflictError(f"run {run_id} is {run.status}; its results appear once it completes")
    path = Path(run.output_path) / f"{output.value}.parquet"
    if not path.is_file():
        if output is OutputName.AMBIGUOUS and format is ResultFormat.JSON:
            return ResultPage.model_validate(empty_page(offset, limit))
        raise NotFoundError(
            f"run {run_id} has no {output.value} output"
            + (" (nothing was ambiguous)" if output is OutputName.AMBIGUOUS else "")
        )
    name = f"{run_id}-{output.value}"
    if format is ResultFormat.PARQUET:
        return FileResponse(path, media_type=PARQUET, filename=f"{name}.parquet")
    if format is ResultFormat.CSV:
        return StreamingResponse(
            csv_chunks(path),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    if format is ResultFormat.XLSX:
        target = write_xlsx(path, output.value)
        return FileResponse(
            target,
            media_type=XLSX,
            filename=f"{name}.xlsx",
            background=BackgroundTask(target.unlink, missing_ok=True),
        )
    try:
        page = read_page(
            path,
            offset=offset,
            limit=limit,
            sort=sort,
            descending=order is SortOrder.DESC,
            filter_column=filter_column,
            filter_op=filter_op,
            filter_value=filter_value,
        )
    except KallaError:
        raise
    except Exception as exc:  # DataFusion refusing the filter/sort on this column type
        message = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise BadRequestError(f"cannot read this page: {message}") from None
    return ResultPage.model_validate(page)
