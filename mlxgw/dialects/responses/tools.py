"""Tools between the Responses API and the backends (reference section 4).

Responses tools are flat (`{type: function, name, description, parameters, strict}`); chat completions
wrap them (`{type: function, function: {...}}`); Anthropic wants `{name, description, input_schema}`.
Two Responses-only kinds are mapped onto plain functions, reversibly, so the model's calls come back in
the form the client declared (Codex runs nothing else):
- a `namespace` tool's functions are flattened to `<namespace>__<name>` and split back into
  `function_call {name, namespace}`;
- a `custom` (freeform) tool becomes a function taking `{"input": string}` (its grammar, if any, goes into
  the description) and its calls come back as `custom_tool_call {input}`.
Names that do not fit the backends' `^[a-zA-Z0-9_-]{1,64}$` are shortened with a hash, deterministically,
so the map can be rebuilt from the request alone (`ToolMap.from_request`) on either side of a call.
Built-in tools are never forwarded (parse_request refused them, or the request passes through).
"""

from __future__ import annotations

import hashlib
import re

from mlxgw.dialects.jsonfast import DecodeError, dumps, loads
from mlxgw.dialects.responses.requests import RequestError

_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_BAD = re.compile(r"[^a-zA-Z0-9_-]")
EMPTY_SCHEMA = {"type": "object", "properties": {}}
CUSTOM_SCHEMA = {"type": "object", "properties": {"input": {"type": "string", "description": "The raw input."}},
                 "required": ["input"], "additionalProperties": False}  # fmt: skip


def flat_name(name: str, namespace: str | None = None) -> str:
    """The backend's name for a (namespaced) tool: valid and <= 64 characters, deterministic."""
    full = f"{namespace}__{name}" if namespace else name
    if _NAME.match(full):
        return full
    return f"{_BAD.sub('_', full)[:55]}_{hashlib.sha256(full.encode()).hexdigest()[:8]}"


class ToolMap:
    """The client's function/custom/namespace tools, keyed by the flat name the backend sees."""

    __slots__ = ("tools", "_by_flat")

    def __init__(self) -> None:
        self.tools: list[dict] = []  # {flat, kind: function|custom, name, namespace, description, parameters, strict}
        self._by_flat: dict[str, dict] = {}

    @classmethod
    def from_request(cls, body: dict, items: list[dict] | None = None) -> ToolMap:
        """The map of `tools` plus the tools of `additional_tools` input items (Codex puts them there)."""
        m = cls()
        for tool in body.get("tools") or []:
            m._add(tool, None)
        for it in items if items is not None else (body.get("input") if isinstance(body.get("input"), list) else []):
            if isinstance(it, dict) and it.get("type") == "additional_tools":
                for tool in it.get("tools") or []:
                    m._add(tool, None)
        return m

    def _add(self, tool, namespace: str | None) -> None:
        if not isinstance(tool, dict):
            return
        kind = tool.get("type")
        if kind == "namespace" and namespace is None:
            for sub in tool.get("tools") or []:
                self._add(sub, tool.get("name"))
            return
        if kind not in ("function", "custom") or not isinstance(tool.get("name"), str):
            return  # built-in tools never reach a backend
        desc = tool.get("description") if isinstance(tool.get("description"), str) else ""
        if kind == "custom":
            params = CUSTOM_SCHEMA
            fmt = tool.get("format") if isinstance(tool.get("format"), dict) else {}
            if fmt.get("type") == "grammar" and isinstance(fmt.get("definition"), str):
                desc = (f"{desc}\n\n" if desc else "") + (f"Pass the raw input as the `input` string. It must match "
                                                        f"this {fmt.get('syntax', 'lark')} grammar:\n{fmt['definition']}")
        else:
            params = tool.get("parameters") if isinstance(tool.get("parameters"), dict) else EMPTY_SCHEMA
        entry = {"flat": flat_name(tool["name"], namespace), "kind": kind, "name": tool["name"],
                 "namespace": namespace, "description": desc, "parameters": params,
                 "strict": tool.get("strict") if kind == "function" else None}
        if entry["flat"] not in self._by_flat:
            self._by_flat[entry["flat"]] = entry
            self.tools.append(entry)

    def __bool__(self) -> bool:
        return bool(self.tools)

    def lookup(self, flat: str) -> dict | None:
        return self._by_flat.get(flat)

    # -- towards the backends --

    def chat_tools(self) -> list[dict]:
        out = []
        for t in self.tools:
            fn = {"name": t["flat"], "parameters": t["parameters"]}
            if t["description"]:
                fn["description"] = t["description"]
            if t["strict"] is not None:
                fn["strict"] = t["strict"]
            out.append({"type": "function", "function": fn})
        return out

    def anthropic_tools(self) -> list[dict]:
        out = []
        for t in self.tools:
            tool = {"name": t["flat"], "input_schema": t["parameters"]}
            if t["description"]:
                tool["description"] = t["description"]
            out.append(tool)
        return out

    def _forced(self, choice: dict) -> str:
        name = choice.get("name")
        flat = flat_name(name, choice.get("namespace")) if isinstance(name, str) else ""
        if flat not in self._by_flat:
            raise RequestError(f"tool_choice names '{name}', which is not among the request's tools",
                               "tool_choice.name", "invalid_value")
        return flat

    def _allowed(self, choice: dict) -> list[str]:
        names = []
        for t in choice.get("tools") or []:
            if isinstance(t, dict) and isinstance(t.get("name"), str):
                names.append(flat_name(t["name"], t.get("namespace")))
        return names

    def chat_choice(self, choice) -> tuple[object, list[str] | None]:
        """(chat tool_choice or None to omit, the flat names to keep when the choice narrows the tools)."""
        if choice is None:
            return None, None
        if isinstance(choice, dict) and choice.get("type") in ("auto", "none", "required"):
            choice = choice["type"]
        if isinstance(choice, str):
            return choice, None
        if choice.get("type") in ("function", "custom"):
            return {"type": "function", "function": {"name": self._forced(choice)}}, None
        if choice.get("type") == "allowed_tools":
            return choice.get("mode", "auto"), self._allowed(choice)
        raise RequestError(f"tool_choice type '{choice.get('type')}' cannot be used with this backend",
                           "tool_choice.type", "unsupported_tool_type")

    def anthropic_choice(self, choice, parallel) -> tuple[dict | None, list[str] | None]:
        """(Anthropic tool_choice or None, the flat names to keep); `parallel` False disables parallel use."""
        chat, keep = self.chat_choice(choice)
        if isinstance(chat, dict):
            out = {"type": "tool", "name": chat["function"]["name"]}
        else:
            out = {"auto": {"type": "auto"}, "none": {"type": "none"}, "required": {"type": "any"}}.get(chat)
        if parallel is False and self.tools:
            out = {**(out or {"type": "auto"}), "disable_parallel_tool_use": True}
            if out["type"] == "none":
                out.pop("disable_parallel_tool_use")
        return out, keep

    def call_name(self, item: dict) -> str:
        """The backend's name for a replayed function_call / custom_tool_call item."""
        return flat_name(item["name"], item.get("namespace"))

    # -- back from the backends --

    def output_item(self, flat: str, call_id: str, arguments: str, item_id: str, status: str = "completed") -> dict:
        """The client's item for a backend tool call: function_call (namespace split back) or custom_tool_call
        (the `input` string unwrapped; a call that is not `{"input": ...}` JSON passes its raw text)."""
        entry = self._by_flat.get(flat)
        if entry is not None and entry["kind"] == "custom":
            return {"type": "custom_tool_call", "id": item_id, "status": status, "call_id": call_id,
                    "name": entry["name"], "input": unwrap_custom(arguments),
                    **({"namespace": entry["namespace"]} if entry["namespace"] else {})}
        item = {"type": "function_call", "id": item_id, "status": status, "call_id": call_id,
                "name": entry["name"] if entry else flat, "arguments": arguments}
        if entry is not None and entry["namespace"]:
            item["namespace"] = entry["namespace"]
        return item


def unwrap_custom(arguments: str) -> str:
    """A freeform tool's raw input from the `{"input": ...}` arguments the backend produced (tolerating
    other single-string objects and bare text)."""
    try:
        value = loads(arguments) if arguments else ""
    except DecodeError:
        return arguments
    if isinstance(value, dict):
        if isinstance(value.get("input"), str):
            return value["input"]
        strings = [v for v in value.values() if isinstance(v, str)]
        if len(strings) == 1:
            return strings[0]
    return value if isinstance(value, str) else arguments


def wrap_custom(raw: str) -> str:
    """A replayed custom_tool_call's input as the function arguments the backend saw."""
    return dumps({"input": raw}).decode()
