"""The route and provider view: one self-contained HTML page (inline CSS and script, no network).

    from mlxgw.ui import build
    html = build(store)          # what `mlxgw ui build` writes

`mlxgw.ui.data` turns a Snapshot and the audit log into plain data, `mlxgw.ui.render` into HTML,
`mlxgw.ui.jsregex` translates route regexes for the page's resolver; `GET /ui` (mlxgw.server.ui) reuses
all three with live state from the running server.
"""

from mlxgw.ui.render import build, fill

__all__ = ["build", "fill"]
