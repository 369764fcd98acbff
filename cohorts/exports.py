"""The dashboard's downloads: the progress as an Excel workbook (.xlsx), beside the CSV.
Excel opens it with Chinese names and step titles intact whatever the computer's code
page, numbers are numbers, and the header row stays in view."""
from __future__ import annotations

import io

from openpyxl import Workbook
from openpyxl.utils import get_column_letter

from cohorts.selectors import CSV_HEADER, progress_csv_rows

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# Column widths in characters (a CJK character counts two): wide enough for names and titles.
_WIDTHS = {"username": 16, "name": 18, "lab": 20, "step": 18, "step_title": 36, "state": 12}


def progress_xlsx(progress: dict, *, title: str) -> bytes:
    """The progress rows of progress_csv_rows as one worksheet named after the cohort."""
    book = Workbook()
    sheet = book.active
    # A sheet name is at most 31 characters and cannot hold []:*?/\ (Excel refuses the file).
    sheet.title = "".join("_" if c in "[]:*?/\\" else c for c in title)[:31] or "progress"
    sheet.append(CSV_HEADER)
    solution = CSV_HEADER.index("solution_used")
    for row in progress_csv_rows(progress):
        row[solution] = bool(row[solution])
        sheet.append(row)
    sheet.freeze_panes = "A2"
    for i, name in enumerate(CSV_HEADER, start=1):
        sheet.column_dimensions[get_column_letter(i)].width = _WIDTHS.get(name, 10)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
