"""An item's prompt is a string or a list of chat messages; these read it either way."""

from __future__ import annotations

from typing import Any


def prompt_messages(prompt: Any) -> list[dict[str, str]]:
    """The prompt as chat messages: a plain string is one user message."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


def prompt_text(prompt: Any) -> str:
    """The prompt as plain text: chat messages become ``role: content`` paragraphs."""
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in prompt)
