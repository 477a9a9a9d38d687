"""The one error type of `cuma.data`: bad input, named by file, row, column and value."""

from __future__ import annotations

import numpy as np

from cuma.errors import CumaError

_UNSET = object()


class DataError(CumaError, ValueError):
    """Bad input data. The message names where it was found so the user can fix the file."""

    def __init__(
        self,
        message: str,
        *,
        source: object = None,
        row: object = None,
        column: object = None,
        value: object = _UNSET,
    ) -> None:
        where = [str(source)] if source is not None else []
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        text = f"{', '.join(where)}: {message}" if where else message
        if value is not _UNSET:
            value = value.item() if isinstance(value, np.generic) else value
            text += f" (value {value!r})"
        super().__init__(text)
        self.source, self.row, self.column = source, row, column
        self.value = None if value is _UNSET else value


def first_true(mask: object) -> int:
    """Position of the first true entry of a boolean mask (Series or array): the row to name in an error."""
    return int(np.flatnonzero(np.asarray(mask))[0])
