"""CSV downloads of the panel: written as their rows are read, with cells a spreadsheet would
run as formulas written as text."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator

from fastapi.responses import StreamingResponse
from starlette.responses import Response

# Rows read per query while a CSV is written.
CSV_BATCH = 500


def csv_response(rows: AsyncIterator[list[str]], filename: str) -> Response:
    """A CSV download, written as its rows are read."""

    async def body() -> AsyncIterator[str]:
        async for row in rows:
            out = io.StringIO()
            csv.writer(out).writerow([_defuse(cell) for cell in row])
            yield out.getvalue()

    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _defuse(cell: str) -> str:
    """A cell a spreadsheet would run as a formula is written as text (numbers stay numbers)."""
    if cell[:1] in ("=", "+", "-", "@", "\t", "\r") and not cell.lstrip("+-").isdigit():
        return "'" + cell
    return cell
