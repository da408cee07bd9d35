"""``/api/runs/{id}/results/{output}``: pages of an output as JSON, or the whole as a download."""

from __future__ import annotations

import itertools
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
    ResultFilter,
    ResultView,
    csv_chunks,
    empty_page,
    read_page,
    write_parquet_view,
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
    filter_column: Annotated[
        list[str] | None,
        Query(max_length=500, description="repeat for several filters (all must hold)"),
    ] = None,
    filter_op: Annotated[
        list[FilterOperator] | None,
        Query(description="one per filter_column, in the same order (default eq)"),
    ] = None,
    filter_value: Annotated[
        list[str] | None, Query(max_length=1000, description="one per filter_column")
    ] = None,
    age_from: Annotated[
        str | None,
        Query(max_length=500, description="a date column: adds age_days, its age in days"),
    ] = None,
    columns: Annotated[
        list[str] | None,
        Query(max_length=500, description="repeat: only these columns, in this order"),
    ] = None,
) -> Response | ResultPage:
    """Rows of one output with the total; sort by a column; filter on one or more columns.

    ``format=csv|xlsx|parquet`` downloads the same view (filters, sort, ``age_days`` and the
    chosen ``columns`` applied; the whole output when there are none) instead of a page.
    """
    run = get_run(session, run_id)
    if run.status != JobStatus.COMPLETED.value:
        raise ConflictError(f"run {run_id} is {run.status}; its results appear once it completes")
    view = ResultView(
        filters=_filters(filter_column or [], filter_op or [], filter_value or []),
        sort=sort,
        descending=order is SortOrder.DESC,
        age_from=age_from,
        columns=tuple(columns or ()),
    )
    path = Path(run.output_path) / f"{output.value}.parquet"
    if not path.is_file():
        if output is OutputName.AMBIGUOUS and format is ResultFormat.JSON:
            return ResultPage.model_validate(empty_page(offset, limit))
        raise NotFoundError(
            f"run {run_id} has no {output.value} output"
            + (" (nothing was ambiguous)" if output is OutputName.AMBIGUOUS else "")
        )
    name = f"{run_id}-{output.value}" + ("" if view.whole else "-filtered")
    try:
        return _respond(path, output, view, format, name, offset=offset, limit=limit)
    except KallaError:
        raise
    except Exception as exc:  # DataFusion refusing the filter/sort on this column type
        message = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise BadRequestError(f"cannot read this view: {message}") from None


def _filters(
    columns: list[str], ops: list[FilterOperator], values: list[str]
) -> tuple[ResultFilter, ...]:
    if len(values) != len(columns):
        raise BadRequestError(
            f"{len(columns)} filter_column(s) but {len(values)} filter_value(s): give one "
            "value per column"
        )
    if ops and len(ops) != len(columns):
        raise BadRequestError(
            f"{len(columns)} filter_column(s) but {len(ops)} filter_op(s): give one op per "
            "column, or none for eq"
        )
    ops = ops or [FilterOperator.EQ] * len(columns)
    return tuple(
        ResultFilter(column=c, op=o, value=v) for c, o, v in zip(columns, ops, values, strict=True)
    )


def _respond(
    path: Path,
    output: OutputName,
    view: ResultView,
    format: ResultFormat,
    name: str,
    *,
    offset: int,
    limit: int,
) -> Response | ResultPage:
    if format is ResultFormat.PARQUET:
        if view.whole:
            return FileResponse(path, media_type=PARQUET, filename=f"{name}.parquet")
        target = write_parquet_view(path, view)
        return FileResponse(
            target,
            media_type=PARQUET,
            filename=f"{name}.parquet",
            background=BackgroundTask(target.unlink, missing_ok=True),
        )
    if format is ResultFormat.CSV:
        chunks = csv_chunks(path, view)
        first = next(chunks)  # a bad filter fails here, before the response starts
        return StreamingResponse(
            itertools.chain([first], chunks),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    if format is ResultFormat.XLSX:
        target = write_xlsx(path, output.value, view)
        return FileResponse(
            target,
            media_type=XLSX,
            filename=f"{name}.xlsx",
            background=BackgroundTask(target.unlink, missing_ok=True),
        )
    page = read_page(path, view, offset=offset, limit=limit)
    return ResultPage.model_validate(page)
