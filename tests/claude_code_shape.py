"""Claude Code's real request shape (see /work/shared/reference/clients.md, "Claude Code -> POST
/v1/messages"), built here rather than captured: a `system` array (the billing attribution block, the
identity line and a long prompt, with cache_control), 24 tools in Anthropic's `input_schema` form (with
`$schema` and `additionalProperties: false`, Grep's `-A`/`-B`/`-C`/`-n`/`-i` properties), a first user
turn that is a content array of `<system-reminder>` blocks then the user's text, `metadata.user_id` as a
JSON string, `thinking` with `max_tokens: 32000`, and `stream: true`.

`request(model, scale=1.0)` is about 100 KB at scale 1 (Claude Code's interactive bodies are 17-83 KB,
some 28k tokens); `scale` shrinks or grows the prose (the tools and their schemas keep their number).
"""

from __future__ import annotations

import json

TOOL_NAMES = (
    "Agent", "Bash", "Glob", "Grep", "ExitPlanMode", "Read", "Edit", "MultiEdit", "Write", "NotebookEdit",
    "WebFetch", "TodoWrite", "WebSearch", "BashOutput", "KillShell", "SlashCommand", "Skill", "AskUserQuestion",
    "ListMcpResources", "ReadMcpResource", "EnterPlanMode", "TaskOutput", "mcp__ide__getDiagnostics",
    "mcp__ide__executeCode",
)

# A Qwen-style chat template that renders every tool's JSON schema (`tojson`), as agent-capable models'
# templates do (the tests' tiny model's own template ignores tools).
TOOLS_TEMPLATE = (
    "{%- if tools %}<|im_start|>system\n{% if messages[0].role == 'system' %}{{ messages[0].content }}{% endif %}"
    "\n# Tools\n<tools>{% for tool in tools %}\n{{ tool | tojson }}{% endfor %}\n</tools><|im_end|>\n{% endif %}"
    "{%- for message in messages %}{% if not (tools and loop.first and message.role == 'system') %}"
    "{{ '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}{% endif %}{% endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


PROSE = (
    "You are an interactive CLI tool that helps users with software engineering tasks. Use the instructions "
    "below and the tools available to you to assist the user. Never generate or guess URLs unless you are "
    "confident they help the user with programming. When the user asks for help, read the relevant files "
    "first, keep your answers short and concise, and prefer editing existing files to creating new ones. "
    "Follow the conventions of the code base: look at neighbouring files, the tests and the build set-up "
    "before you change anything, and run the tests your change touches. Explain non-trivial commands "
    "before you run them, especially commands that change the user's system. "
)


def _prose(chars: int) -> str:
    return (PROSE * (chars // len(PROSE) + 1))[:chars]


def _schema(name: str) -> dict:
    props = {
        "description": {"type": "string", "description": f"A short description of what this {name} call does."},
        "path": {"type": "string", "description": "The absolute path to work on."},
        "timeout": {"type": "number", "minimum": 0, "maximum": 600000, "description": "Milliseconds."},
        "mode": {"type": "string", "enum": ["content", "files_with_matches", "count"], "default": "content"},
        "items": {"type": "array", "minItems": 1, "maxItems": 20,
                  "items": {"type": "object", "additionalProperties": False,
                            "properties": {"content": {"type": "string"}, "status": {"type": "string"}},
                            "required": ["content", "status"]}},
    }
    if name == "Grep":
        props.update({"-A": {"type": "number"}, "-B": {"type": "number"}, "-C": {"type": "number"},
                      "-n": {"type": "boolean"}, "-i": {"type": "boolean"}, "pattern": {"type": "string"}})
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
            "additionalProperties": False, "properties": props, "required": ["description"]}


def request(model: str, scale: float = 1.0, *, max_tokens: int = 32000, stream: bool = True) -> dict:
    """Claude Code's body for one first turn (see the module docstring)."""
    tools = [{"name": n, "description": f"{n}: " + _prose(int(2400 * scale)), "input_schema": _schema(n)}
             for n in TOOL_NAMES]
    reminder = "<system-reminder>\nAs you answer the user's questions, you can use the following context:\n" \
               "# claudeMd\n" + _prose(int(3000 * scale)) + "\n</system-reminder>"
    return {
        "model": model,
        "max_tokens": max_tokens,
        "stream": stream,
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.197; cc_entrypoint=cli; cch=1;"},
            {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude.",
             "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": _prose(int(25000 * scale)), "cache_control": {"type": "ephemeral"}},
        ],
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": reminder},
            {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}},
        ]}],
        "tools": tools,
        "metadata": {"user_id": json.dumps({"device_id": "0" * 64, "account_uuid": "",
                                            "session_id": "5b0c4f2e-7c1a-4c43-9f3e-2d9a8f1b6e70"})},
        "thinking": {"type": "enabled", "budget_tokens": 31999},
        "temperature": 1,
    }
