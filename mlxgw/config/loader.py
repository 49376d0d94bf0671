"""Read a gateway.yaml into plain data plus a map from each node's path to its line and column.

The map lets every later check point at the exact node it complains about
(`FILE:LINE:COL: path.to.field: message`) without carrying YAML objects around.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from mlxgw.errors import ConfigError, Problem

Path = tuple  # of str | int

# Limits that keep a hostile or broken file from exhausting `validate` (a "billion laughs" alias bomb
# ran for minutes and took 4 GB): no real gateway.yaml comes near them.
MAX_BYTES = 4 * 1024 * 1024
MAX_VALUES = 200_000  # values after YAML aliases are expanded
MAX_DEPTH = 64


class _TooBig(Exception):
    pass


def format_path(path: Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass
class Document:
    data: object
    file: str
    positions: dict = field(default_factory=dict)  # Path -> (line, col), 1-based

    def where(self, path: Path) -> tuple[int | None, int | None]:
        """The position of the node at `path`, or of its nearest ancestor that has one."""
        path = tuple(path)
        while True:
            if path in self.positions:
                return self.positions[path]
            if not path:
                return (1, 1)
            path = path[:-1]

    def problem(self, path: Path, message: str) -> Problem:
        line, col = self.where(path)
        return Problem(format_path(path), message, line, col, self.file)


class _Builder:
    """Turn composed YAML nodes into Python data, recording positions and duplicate keys."""

    def __init__(self, file: str):
        self.file = file
        self.positions: dict = {}
        self.problems: list[Problem] = []
        self.values = 0
        self._loader: yaml.SafeLoader | None = None

    def build(self, node: yaml.Node, path: Path = ()) -> object:
        self.values += 1
        if self.values > MAX_VALUES:
            raise _TooBig(f"the file expands to more than {MAX_VALUES:,} values (YAML aliases?)", node)
        if len(path) > MAX_DEPTH:
            raise _TooBig(f"the file nests deeper than {MAX_DEPTH} levels", node)
        self.positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise _TooBig("a mapping key must be a plain value, not a list or mapping", key_node)
                key = self._scalar(key_node)
                if not isinstance(key, str):
                    key = str(key)
                if key in out:
                    self.problems.append(
                        Problem(
                            format_path(path + (key,)),
                            f"duplicate key '{key}'; keep only one",
                            key_node.start_mark.line + 1,
                            key_node.start_mark.column + 1,
                            self.file,
                        )
                    )
                out[key] = self.build(value_node, path + (key,))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        return self._scalar(node)

    def _scalar(self, node: yaml.Node) -> object:
        # SafeLoader's constructors give YAML 1.1 scalars their usual types (int, bool, null...); one
        # loader for the whole file (making one per scalar cost more than the parse).
        if self._loader is None:
            self._loader = yaml.SafeLoader("")
        return self._loader.construct_object(node, deep=True)


def load_text(text: str, file: str = "<config>") -> Document:
    """Parse YAML text. Raises ConfigError (one problem, with position) on a syntax error, or when the
    file is beyond the limits above."""
    if len(text) > MAX_BYTES:
        raise ConfigError([Problem("", f"the file is larger than {MAX_BYTES // (1024 * 1024)} MiB", 1, 1, file)],
                          "a gateway.yaml is a few KB; check that this is the right file")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        raise ConfigError([Problem("", f"the file nests deeper than {MAX_DEPTH} levels", 1, 1, file)],
                          "the file is not a usable gateway.yaml") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = exc.problem or exc.context or "invalid YAML"
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise ConfigError(
            [Problem("", f"YAML syntax error: {reason}", line, col, file)], "the file is not valid YAML"
        ) from None
    except yaml.YAMLError as exc:  # e.g. a reader error on bad bytes
        raise ConfigError([Problem("", f"YAML error: {exc}", 1, 1, file)], "the file is not valid YAML") from None
    if root is None:
        return Document({}, file, {(): (1, 1)})
    builder = _Builder(file)
    try:
        data = builder.build(root)
    except _TooBig as exc:
        reason, node = exc.args
        raise ConfigError([Problem("", reason, node.start_mark.line + 1, node.start_mark.column + 1, file)],
                          "the file is not a usable gateway.yaml") from None
    if builder.problems:
        raise ConfigError(builder.problems)
    return Document(data, file, builder.positions)


def load_file(path: str) -> Document:
    """Read and parse a file; '-' reads standard input."""
    import sys

    try:
        if path == "-":
            text = sys.stdin.read(MAX_BYTES + 1)  # never more than the limit in memory
            display = "<stdin>"
        else:
            with open(path, encoding="utf-8") as fh:
                text = fh.read(MAX_BYTES + 1)
            display = path
    except FileNotFoundError:
        raise ConfigError([Problem("", "file not found; check the path given to -f", 1, 1, path)]) from None
    except IsADirectoryError:
        raise ConfigError([Problem("", "is a directory; give the path of a gateway.yaml", 1, 1, path)]) from None
    except PermissionError:
        raise ConfigError([Problem("", "permission denied reading the file", 1, 1, path)]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem("", f"not UTF-8 text ({exc.reason})", 1, 1, path)]) from None
    return load_text(text, display)
