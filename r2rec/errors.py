"""Errors the stages raise on purpose; the CLI prints these as one readable line."""


class R2RecError(Exception):
    """Base class: an error whose message is meant for the operator, not a traceback."""


class SchemaMismatchError(R2RecError):
    """Data written to a table does not match the table's contract."""

    def __init__(self, table: str, column: str, problem: str):
        self.table, self.column, self.problem = table, column, problem
        super().__init__(f"table '{table}': column '{column}' {problem}")


class TableNotFoundError(R2RecError):
    pass


class DataQualityError(R2RecError):
    """A job's output or input failed a check; the job must fail so Airflow retries/alerts."""
