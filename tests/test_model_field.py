"""Issue 12, item 13: one rule for the response's `model` field on every path and dialect: the model that
answered, as the backend names it, not the alias the client asked for (README, "The model field")."""

from __future__ import annotations

import textwrap

import anthropic
import openai
import pytest

from mlxgw.server import ServerConfig
from tests.anthropic_upstream import anthropic_upstream, anthropic_upstream_server  # noqa: F401
from tests.gateway_harness import apply_config, running_gateway
from tests.upstream import upstream, upstream_server  # noqa: F401


@pytest.fixture
def gw(home, cli, tmp_path, upstream, anthropic_upstream):  # noqa: F811
    apply_config(cli, tmp_path, textwrap.dedent(f"""\
        version: 1
        providers:
          - {{name: up, kind: openai-compatible, base_url: '{upstream.base_url}'}}
          - {{name: claude, kind: anthropic, base_url: '{anthropic_upstream.base_url}', api_key: '${{env:ANTHROPIC_API_KEY}}'}}
        routes:
          - {{match: {{exact: fast-openai}}, target: up/up-model}}
          - {{match: {{exact: fast-claude}}, target: claude/claude-primary}}
    """))
    with running_gateway(ServerConfig()) as g:
        yield g


@pytest.mark.parametrize("alias, answered", [("fast-openai", "up-model"), ("fast-claude", "claude-primary")])
def test_both_dialects_name_the_model_that_answered(gw, alias, answered):
    msgs = [{"role": "user", "content": "hi"}]
    with openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0) as oc:
        assert oc.chat.completions.create(model=alias, messages=msgs).model == answered
        chunks = list(oc.chat.completions.create(model=alias, messages=msgs, stream=True))
        assert chunks and {c.model for c in chunks} == {answered}
    with anthropic.Anthropic(base_url=gw.origin, api_key="x", max_retries=0) as ac:
        assert ac.messages.create(model=alias, max_tokens=5, messages=msgs).model == answered
        with ac.messages.stream(model=alias, max_tokens=5, messages=msgs) as s:
            assert s.get_final_message().model == answered
