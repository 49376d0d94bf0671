"""Every exception mlxgw raises on purpose, in one place.

    MlxgwError                 base: `message` says what went wrong, `hint` says how to fix it
    ├── ConfigError            a gateway.yaml that cannot be used; carries a list of Problems
    ├── StoreError             the database cannot be opened, read or written
    │   ├── StoreLockedError   another process holds the write lock
    │   ├── StoreReadOnlyError the file or its folder is not writable
    │   └── SchemaVersionError the database was written by a newer mlxgw
    ├── SecretError            the master key is missing, malformed or cannot decrypt the store
    └── NotFoundError          a named provider/model/route does not exist

The CLI prints `message` and `hint` and exits non-zero; it never shows a traceback for these.
No message may contain a secret in clear: build messages from names and env-var references only.
"""

from __future__ import annotations

from dataclasses import dataclass


class MlxgwError(Exception):
    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


@dataclass(frozen=True)
class Problem:
    """One finding about a config file, pointing at the offending YAML node."""

    path: str  # e.g. "routes[1].match.regex"; "" for the document itself
    message: str
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based
    file: str | None = None

    def format(self) -> str:
        where = f"{self.file or '<config>'}:{self.line or 1}:{self.column or 1}"
        return f"{where}: {self.path or '(document)'}: {self.message}"

    def as_dict(self) -> dict:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "path": self.path,
            "message": self.message,
        }


class ConfigError(MlxgwError):
    def __init__(self, problems: list[Problem], message: str | None = None):
        n = len(problems)
        super().__init__(message or f"{n} problem{'s' if n != 1 else ''} in the configuration")
        self.problems = problems


class StoreError(MlxgwError):
    pass


class StoreLockedError(StoreError):
    pass


class StoreReadOnlyError(StoreError):
    pass


class SchemaVersionError(StoreError):
    pass


class SecretError(MlxgwError):
    pass


class NotFoundError(MlxgwError):
    pass
