"""The CreateResponse body check (`parse_request`) and the normalised input items (`input_items`).

What is checked is what the gateway itself reads when it translates; every failure is a RequestError
whose `param` names the field (`input[3].call_id`, `tools[2].type`...), answered as a 400 in OpenAI's
error shape. Parsing is lenient where real clients deviate from the published schema: Codex sends
`client_metadata`, an `id` on every input item and `content: null` on reasoning items; the Agents SDK
sends messages without `type`. Unknown top-level fields are ignored (never forwarded: the translators
build the backend body from scratch).

Built-in (hosted) tools (web_search, file_search, code_interpreter, computer use, image generation,
local_shell, shell, apply_patch, mcp, tool_search...) cannot run on a chat-completions or Messages
backend: `parse_request` refuses them with a 400 naming the tool type, unless the caller passes
`allow_builtin_tools=True` (the request goes through to OpenAI's own Responses API). Codex declares
`web_search` by default: `web_search = "disabled"` in its config.toml removes it.
"""

from __future__ import annotations

import uuid

from mlxgw.dialects.jsonfast import BodyError, parse_body
from mlxgw.text import MAX_MODEL_NAME

BUILTIN_TOOL_TYPES = frozenset({
    "web_search", "web_search_preview", "web_search_preview_2025_03_11", "web_search_2025_08_26",
    "file_search", "code_interpreter", "computer", "computer_use", "computer_use_preview", "image_generation",
    "local_shell", "shell", "apply_patch", "mcp", "tool_search", "programmatic_tool_calling"})  # fmt: skip
CLIENT_TOOL_TYPES = frozenset({"function", "custom", "namespace"})
ROLES = frozenset({"user", "assistant", "system", "developer"})
PART_TYPES = frozenset({"input_text", "input_image", "input_file", "output_text", "refusal"})
# Items a chat/Messages backend has no use for: built-in tool traffic replayed by a client. Accepted and
# dropped on translation (kept in storage as sent).
DROPPED_ITEM_TYPES = frozenset({
    "web_search_call", "file_search_call", "computer_call", "computer_call_output", "code_interpreter_call",
    "image_generation_call", "local_shell_call", "local_shell_call_output", "shell_call", "shell_call_output",
    "apply_patch_call", "apply_patch_call_output", "mcp_list_tools", "mcp_approval_request",
    "mcp_approval_response", "mcp_call", "tool_search_call", "tool_search_output", "compaction", "program",
    "program_output"})  # fmt: skip
ITEM_TYPES = frozenset({"message", "function_call", "function_call_output", "reasoning", "item_reference",
                        "custom_tool_call", "custom_tool_call_output", "additional_tools"}) | DROPPED_ITEM_TYPES
UNSUPPORTED_FIELDS = {"conversation": "conversations are not supported by this gateway: use previous_response_id",
                      "prompt": "stored prompts are not supported by this gateway",
                      "background": "background responses are not supported by this gateway"}
ITEM_PREFIX = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs",
               "custom_tool_call": "ctc", "custom_tool_call_output": "ctco", "additional_tools": "at"}


class RequestError(ValueError):
    """A request the gateway refuses: `param` names the offending field, `code` is OpenAI's code."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None, status: int = 400):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.status = status


def previous_response_not_found(response_id: str) -> RequestError:
    """OpenAI's 400 for an unknown, deleted, expired or unstored `previous_response_id`."""
    return RequestError(f"Previous response with id '{response_id}' not found.", "previous_response_id",
                        "previous_response_not_found")


def response_not_found(response_id: str) -> RequestError:
    """OpenAI's 404 for GET/DELETE/input_items of an unknown or deleted response."""
    return RequestError(f"Response with id '{response_id}' not found.", None, None, status=404)


def deleted(response_id: str) -> dict:
    """The body of a successful DELETE /v1/responses/{id}."""
    return {"id": response_id, "object": "response", "deleted": True}


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _need(cond: bool, message: str, param: str, code: str = "invalid_type") -> None:
    if not cond:
        raise RequestError(message, param, code)


def _str_or_none(body: dict, key: str) -> None:
    v = body.get(key)
    _need(v is None or isinstance(v, str), f"'{key}' must be a string", key)


# --- items ----------------------------------------------------------------------------------------------


def _check_parts(content, where: str) -> None:
    if isinstance(content, str):
        return
    _need(isinstance(content, list), f"{where}.content must be a string or an array of content parts",
          f"{where}.content")
    for j, p in enumerate(content):
        at = f"{where}.content[{j}]"
        _need(isinstance(p, dict), f"{at} must be an object", at)
        kind = p.get("type")
        _need(isinstance(kind, str) and kind in PART_TYPES, f"{at}.type must be one of {', '.join(sorted(PART_TYPES))} (got {kind!r})",
              f"{at}.type", "invalid_value")
        if kind in ("input_text", "output_text"):
            _need(isinstance(p.get("text"), str), f"{at}.text must be a string", f"{at}.text")
        elif kind == "refusal":
            _need(isinstance(p.get("refusal"), str), f"{at}.refusal must be a string", f"{at}.refusal")
        elif kind == "input_image":
            url, file_id = p.get("image_url"), p.get("file_id")
            _need(isinstance(url, str) and bool(url) or isinstance(file_id, str),
                  f"{at} needs an image_url (a URL or a data URL) or a file_id", f"{at}.image_url",
                  "missing_required_parameter")


def _check_item(item, i: int) -> None:
    where = f"input[{i}]"
    _need(isinstance(item, dict), f"{where} must be an object", where)
    kind = item.get("type", "message" if "role" in item else None)
    _need(isinstance(kind, str) and kind in ITEM_TYPES, f"{where}.type {kind!r} is not a supported input item type", f"{where}.type",
          "invalid_value")
    if kind == "message":
        _need(isinstance(item.get("role"), str) and item["role"] in ROLES, f"{where}.role must be one of user, assistant, system, developer",
              f"{where}.role", "invalid_value")
        _check_parts(item.get("content"), where)
    elif kind in ("function_call", "custom_tool_call"):
        _need(isinstance(item.get("call_id"), str) and bool(item["call_id"]), f"{where}.call_id must be a string",
              f"{where}.call_id")
        _need(isinstance(item.get("name"), str) and bool(item["name"]), f"{where}.name must be a string",
              f"{where}.name")
        field = "arguments" if kind == "function_call" else "input"
        _need(isinstance(item.get(field), str), f"{where}.{field} must be a string", f"{where}.{field}")
    elif kind in ("function_call_output", "custom_tool_call_output"):
        _need(isinstance(item.get("call_id"), str) and bool(item["call_id"]), f"{where}.call_id must be a string",
              f"{where}.call_id")
        out = item.get("output")
        _need(isinstance(out, (str, list)), f"{where}.output must be a string or an array", f"{where}.output")
    elif kind == "reasoning":
        for key in ("summary", "content"):
            _need(item.get(key) is None or isinstance(item[key], list), f"{where}.{key} must be an array",
                  f"{where}.{key}")
    elif kind == "item_reference":
        _need(isinstance(item.get("id"), str) and bool(item["id"]), f"{where}.id must be a string", f"{where}.id")
    elif kind == "additional_tools":
        _need(isinstance(item.get("tools"), list), f"{where}.tools must be an array", f"{where}.tools")


# --- tools ----------------------------------------------------------------------------------------------


def _check_tool(tool, where: str, allow_builtin: bool, nested: bool = False) -> None:
    _need(isinstance(tool, dict), f"{where} must be an object", where)
    kind = tool.get("type")
    _need(kind is None or isinstance(kind, str), f"{where}.type must be a string", f"{where}.type")  # a list would not hash
    if kind in BUILTIN_TOOL_TYPES or (kind not in CLIENT_TOOL_TYPES and isinstance(kind, str)):
        if allow_builtin:
            return
        raise RequestError(f"Tool type '{kind}' is not supported by this gateway's backends: only function, "
                           "custom and namespace tools can be used (for Codex: set web_search = \"disabled\" "
                           "in config.toml)", f"{where}.type", "unsupported_tool_type")
    _need(isinstance(kind, str), f"{where}.type is required", f"{where}.type", "missing_required_parameter")
    _need(isinstance(tool.get("name"), str) and bool(tool["name"]), f"{where}.name must be a non-empty string",
          f"{where}.name")
    if kind == "function":
        params = tool.get("parameters")
        _need(params is None or isinstance(params, dict), f"{where}.parameters must be an object",
              f"{where}.parameters")
    elif kind == "namespace":
        _need(not nested, f"{where}: namespaces cannot be nested", f"{where}.type", "invalid_value")
        _need(isinstance(tool.get("tools"), list), f"{where}.tools must be an array", f"{where}.tools")
        for j, sub in enumerate(tool["tools"]):
            _check_tool(sub, f"{where}.tools[{j}]", False, nested=True)


def _check_tool_choice(choice, allow_builtin: bool) -> None:
    if choice is None or choice in ("none", "auto", "required"):
        return
    _need(isinstance(choice, dict), "'tool_choice' must be none, auto, required or an object", "tool_choice",
          "invalid_value")
    kind = choice.get("type")
    if kind in ("function", "custom"):
        _need(isinstance(choice.get("name"), str), "tool_choice.name must be a string", "tool_choice.name")
    elif kind == "allowed_tools":
        _need(choice.get("mode") in ("auto", "required"), "tool_choice.mode must be auto or required",
              "tool_choice.mode", "invalid_value")
        _need(isinstance(choice.get("tools"), list), "tool_choice.tools must be an array", "tool_choice.tools")
    # {"type": "auto" | "none" | "required"}: the object spelling some clients use, accepted as it is
    elif kind not in ("auto", "none", "required") and not allow_builtin:
        raise RequestError(f"tool_choice type '{kind}' is not supported by this gateway's backends",
                           "tool_choice.type", "unsupported_tool_type")


# --- the body -------------------------------------------------------------------------------------------


def parse_request(raw: bytes, *, allow_builtin_tools: bool = False) -> dict:
    """The CreateResponse body as a dict (as sent); RequestError naming the field when it is not usable.
    `model` and `input` are required (`input` may be an empty list with `previous_response_id`)."""
    try:
        body = parse_body(raw)
    except BodyError as exc:
        raise RequestError(f"We could not parse the JSON body of your request: {exc.reason}. The body must be "
                           "valid JSON.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise RequestError("The request body must be a JSON object.", code="invalid_json")
    model = body.get("model")
    _need(model is not None, "you must provide a model parameter", "model", "missing_required_parameter")
    _need(isinstance(model, str) and bool(model.strip()), "'model' must be a non-empty string", "model")
    _need(len(model) <= MAX_MODEL_NAME, f"'model' is longer than {MAX_MODEL_NAME} characters", "model")
    for key, message in UNSUPPORTED_FIELDS.items():
        if body.get(key) not in (None, False):
            raise RequestError(message, key, "unsupported_parameter")
    inp = body.get("input")
    _need(inp is not None, "'input' is a required property", "input", "missing_required_parameter")
    _need(isinstance(inp, (str, list)), "'input' must be a string or an array of input items", "input")
    if isinstance(inp, list):
        _need(bool(inp) or isinstance(body.get("previous_response_id"), str), "'input' must not be empty",
              "input", "empty_array")
        for i, item in enumerate(inp):
            _check_item(item, i)
    ins = body.get("instructions")
    _need(ins is None or isinstance(ins, str), "'instructions' must be a string", "instructions")
    tools = body.get("tools")
    _need(tools is None or isinstance(tools, list), "'tools' must be an array", "tools")
    for i, tool in enumerate(tools or []):
        _check_tool(tool, f"tools[{i}]", allow_builtin_tools)
    if isinstance(inp, list):
        for i, item in enumerate(inp):
            if isinstance(item, dict) and item.get("type") == "additional_tools":
                for j, tool in enumerate(item["tools"]):
                    _check_tool(tool, f"input[{i}].tools[{j}]", allow_builtin_tools)
    _check_tool_choice(body.get("tool_choice"), allow_builtin_tools)
    for key in ("parallel_tool_calls", "store", "stream"):
        v = body.get(key)
        _need(v is None or isinstance(v, bool), f"'{key}' must be a boolean", key)
    _check_text(body.get("text"))
    reasoning = body.get("reasoning")
    _need(reasoning is None or isinstance(reasoning, dict), "'reasoning' must be an object", "reasoning")
    if reasoning:
        for key in ("effort", "summary", "context", "generate_summary"):
            v = reasoning.get(key)
            _need(v is None or isinstance(v, str), f"reasoning.{key} must be a string", f"reasoning.{key}")
    mot = body.get("max_output_tokens")
    if mot is not None:
        _need(_is_int(mot), "'max_output_tokens' must be an integer", "max_output_tokens")
        _need(mot >= 16, f"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, "
              f"but got {mot} instead.", "max_output_tokens", "integer_below_min_value")
    for key, hi in (("temperature", 2), ("top_p", 1)):
        v = body.get(key)
        if v is not None:
            _need(_is_num(v) and 0 <= v <= hi, f"'{key}' must be a number between 0 and {hi}", key,
                  "invalid_value")
    tl = body.get("top_logprobs")
    _need(tl is None or _is_int(tl) and 0 <= tl <= 20, "'top_logprobs' must be an integer from 0 to 20",
          "top_logprobs")
    _check_metadata(body.get("metadata"))
    for key in ("user", "safety_identifier", "prompt_cache_key", "previous_response_id"):
        _str_or_none(body, key)
    inc = body.get("include")
    _need(inc is None or isinstance(inc, list) and all(isinstance(x, str) for x in inc),
          "'include' must be an array of strings", "include")
    _need(body.get("truncation") in (None, "auto", "disabled"), "'truncation' must be auto or disabled",
          "truncation", "invalid_value")
    return body


def _check_text(text) -> None:
    if text is None:
        return
    _need(isinstance(text, dict), "'text' must be an object", "text")
    fmt = text.get("format")
    if fmt is None:
        return
    _need(isinstance(fmt, dict), "text.format must be an object", "text.format")
    kind = fmt.get("type")
    _need(kind in ("text", "json_schema", "json_object"), "text.format.type must be text, json_schema or "
          "json_object", "text.format.type", "invalid_value")
    if kind == "json_schema":
        _need(isinstance(fmt.get("name"), str) and bool(fmt["name"]), "text.format.name is required",
              "text.format.name", "missing_required_parameter")
        _need(isinstance(fmt.get("schema"), dict), "text.format.schema must be an object", "text.format.schema")


def _check_metadata(meta) -> None:
    if meta is None:
        return
    _need(isinstance(meta, dict), "'metadata' must be an object of string values", "metadata")
    _need(len(meta) <= 16, "'metadata' may hold at most 16 pairs", "metadata", "invalid_value")
    for k, v in meta.items():
        _need(len(k) <= 64, f"metadata key {k[:70]!r} is longer than 64 characters", "metadata", "invalid_value")
        _need(isinstance(v, str) and len(v) <= 512, f"metadata[{k!r}] must be a string of at most 512 characters",
              "metadata", "invalid_value")


# --- normalised input -----------------------------------------------------------------------------------


def input_items(body: dict) -> list[dict]:
    """The request's input as a list of typed items, each with an `id` (minted where the client gave none),
    ready to be stored and listed by input_items: a string becomes one user message, a message without
    `type` gets it, string content becomes one input_text (output_text for the assistant) part."""
    inp = body.get("input")
    if isinstance(inp, str):
        return [{"type": "message", "id": new_id("msg"), "role": "user", "status": "completed",
                 "content": [{"type": "input_text", "text": inp}]}]
    out = []
    for item in inp or []:
        kind = item.get("type", "message")
        it = {**item, "type": kind}
        if kind == "message":
            content = it.get("content")
            if isinstance(content, str):
                part = "output_text" if it["role"] == "assistant" else "input_text"
                it["content"] = [{"type": part, "text": content}]
            if it["role"] == "assistant":
                it["content"] = [{**p, "annotations": p.get("annotations") or [], "logprobs": p.get("logprobs") or []}
                                 if p.get("type") == "output_text" else p for p in it["content"]]
            it.setdefault("status", "completed")
        if kind != "item_reference" and not isinstance(it.get("id"), str):
            it["id"] = new_id(ITEM_PREFIX.get(kind, "item"))
        out.append(it)
    return out


def item_references(items: list[dict]) -> list[str]:
    """The ids of `item_reference` items, for the caller to look up in the store."""
    return [it["id"] for it in items if it.get("type") == "item_reference"]


def resolve_references(items: list[dict], found: dict[str, dict]) -> list[dict]:
    """The items with each `item_reference` replaced by the stored item; RequestError (404, param input)
    for an id the store does not hold, as OpenAI answers."""
    out = []
    for it in items:
        if it.get("type") == "item_reference":
            ref = found.get(it["id"])
            if ref is None:
                raise RequestError(f"Item with id '{it['id']}' not found.", "input", None, status=404)
            out.append(ref)
        else:
            out.append(it)
    return out
