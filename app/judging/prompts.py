"""Judge prompts: admin-written Jinja2 templates, rendered in a sandbox."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from app.core.errors import BadRequest
from app.items.chat import prompt_messages

DEFAULT_TEMPLATE = """\
You are an expert judge comparing two assistant responses to the same conversation.
{% if rules %}Judge them by these rules, most severe first:
{% for rule in rules %}- [{{ rule.id }}] ({{ rule.severity }}) {{ rule.text }}
{% endfor %}{% endif %}
Conversation:
{% for m in messages %}{{ m.role | upper }}: {{ m.content }}
{% endfor %}
Response A:
{{ response_a }}

Response B:
{{ response_b }}

Which response is better? Answer with a single letter, A or B."""

RULE_TEMPLATE = """\
Rule: {{ rule.text }}

Conversation:
{% for m in messages %}{{ m.role | upper }}: {{ m.content }}
{% endfor %}
Response:
{{ response }}

Does the response follow the rule? Answer with a single word, Yes or No."""

SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}

_env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False,
                                     keep_trailing_newline=False)


@dataclass(frozen=True)
class Question:
    """One call to a judge: chat messages, and the two answers whose odds we read."""

    messages: list[dict[str, str]]
    choices: tuple[str, str]  # ("A", "B") or ("Yes", "No")
    # For a pair question: the conversation and the responses shown first and second, so a
    # provider that scores responses on their own (a reward model) needs no template.
    conversation: tuple[dict[str, str], ...] | None = field(default=None, compare=False)
    first: str | None = field(default=None, compare=False)
    second: str | None = field(default=None, compare=False)


def _render(source: str, context: dict[str, Any]) -> str:
    try:
        return _env.from_string(source).render(**context)
    except SecurityError as exc:
        raise BadRequest(f"The judge template was refused by the sandbox: {exc}") from None
    except TemplateError as exc:
        raise BadRequest(f"The judge template does not render: {exc}") from None


def check_template(source: str) -> None:
    """Render the template on a dummy item, so a broken one is refused when saved."""
    render_pair(source, rules=[{"id": "R1", "text": "Be kind.", "severity": "medium"}],
                prompt="Hello?", response_a="Hi!", response_b="Hello.")


def render_pair(source: str, *, rules: list[dict[str, str]], prompt: Any, response_a: str,
                response_b: str) -> Question:
    ordered = sorted(rules, key=lambda r: SEVERITY_ORDER.get(r.get("severity", ""), 1))
    text = _render(source, {"rules": ordered, "prompt": prompt, "messages": prompt_messages(prompt),
                            "response_a": response_a, "response_b": response_b})
    return Question(messages=[{"role": "user", "content": text}], choices=("A", "B"),
                    conversation=tuple(prompt_messages(prompt)), first=response_a,
                    second=response_b)


def render_rule(rule: dict[str, str], *, prompt: Any, response: str) -> Question:
    text = _render(RULE_TEMPLATE, {"rule": rule, "messages": prompt_messages(prompt),
                                   "response": response})
    return Question(messages=[{"role": "user", "content": text}], choices=("Yes", "No"))
