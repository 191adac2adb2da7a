"""Dataset formats: one function per format turns a decided item into rows.

All formats but the full-fidelity one are read from an item's consensus pairs
([chosen, rejected, P(chosen better), margin]); see app.consensus for how they are made.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from enum import StrEnum
from typing import Any

from app.exports.records import Record
from app.items.chat import prompt_messages, prompt_text
from app.models.items import ResponseSource


class ExportFormat(StrEnum):
    STANDARD = "standard"  # TRL preference: prompt / chosen / rejected as strings
    CONVERSATIONAL = "conversational"  # the same as lists of chat messages
    KTO = "kto"  # TRL unpaired: prompt / completion / label, strings
    KTO_CONVERSATIONAL = "kto_conversational"  # the same as chat messages
    SFT = "sft"  # demonstrations from human edits: messages
    OPENAI = "openai"  # OpenAI preference fine-tuning: input / preferred / non_preferred
    TANDEM = "tandem"  # every label, its source and labeler; Tandem imports it again


class Container(StrEnum):
    JSONL = "jsonl"
    PARQUET = "parquet"


DESCRIPTIONS = {
    ExportFormat.STANDARD: "TRL preference, standard: prompt, chosen and rejected as strings",
    ExportFormat.CONVERSATIONAL: "TRL preference, conversational: chat message lists",
    ExportFormat.KTO: "TRL unpaired (KTO): prompt, completion, label (true = desirable)",
    ExportFormat.KTO_CONVERSATIONAL: "TRL unpaired (KTO) as chat message lists",
    ExportFormat.SFT: "SFT demonstrations from human edits: messages",
    ExportFormat.OPENAI: "OpenAI preference fine-tuning: input, preferred_output, "
                         "non_preferred_output",
    ExportFormat.TANDEM: "Tandem full fidelity: every label with its source, labeler, rule "
                         "verdicts and probabilities; Tandem imports it again",
}
PREFERENCE_FORMATS = (ExportFormat.STANDARD, ExportFormat.CONVERSATIONAL)


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def _pairs(record: Record) -> Iterator[tuple[str, str, float, float]]:
    for chosen, rejected, p, margin in record.pairs:
        a, b = record.responses.get(chosen), record.responses.get(rejected)
        if a is not None and b is not None:
            yield a.text, b.text, float(p), float(margin)


def standard(record: Record, margin: bool) -> Iterator[dict[str, Any]]:
    prompt = prompt_text(record.prompt)
    for chosen, rejected, _, m in _pairs(record):
        row = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
        if margin:
            row["margin"] = m
        yield row


def conversational(record: Record, margin: bool) -> Iterator[dict[str, Any]]:
    prompt = prompt_messages(record.prompt)
    for chosen, rejected, _, m in _pairs(record):
        row = {"prompt": prompt, "chosen": _assistant(chosen), "rejected": _assistant(rejected)}
        if margin:
            row["margin"] = m
        yield row


def _unpaired(record: Record) -> Iterator[tuple[str, bool]]:
    """Each response once: desirable if it wins more of its pairs than it loses, undesirable
    if it loses more; a response that wins as often as it loses says nothing and is left out."""
    net: dict[int, int] = {}
    for chosen, rejected, _, _ in record.pairs:
        if chosen in record.responses and rejected in record.responses:
            net[chosen] = net.get(chosen, 0) + 1
            net[rejected] = net.get(rejected, 0) - 1
    for rid, score in sorted(net.items()):
        if score:
            yield record.responses[rid].text, score > 0


def kto(record: Record, margin: bool) -> Iterator[dict[str, Any]]:
    prompt = prompt_text(record.prompt)
    for text, good in _unpaired(record):
        yield {"prompt": prompt, "completion": text, "label": good}


def kto_conversational(record: Record, margin: bool) -> Iterator[dict[str, Any]]:
    prompt = prompt_messages(record.prompt)
    for text, good in _unpaired(record):
        yield {"prompt": prompt, "completion": _assistant(text), "label": good}


def sft(record: Record, margin: bool) -> Iterator[dict[str, Any]]:
    """A human edit is a demonstration: the conversation, then the edited answer."""
    prompt = prompt_messages(record.prompt)
    for r in sorted(record.responses.values(), key=lambda r: r.id):
        if r.source == ResponseSource.HUMAN_EDIT:
            yield {"messages": prompt + _assistant(r.text)}


def openai(record: Record, margin: bool) -> Iterator[dict[str, Any]]:
    messages = prompt_messages(record.prompt)
    for chosen, rejected, _, _ in _pairs(record):
        yield {"input": {"messages": messages}, "preferred_output": _assistant(chosen),
               "non_preferred_output": _assistant(rejected)}


ROWS: dict[ExportFormat, Callable[[Record, bool], Iterator[dict[str, Any]]]] = {
    ExportFormat.STANDARD: standard,
    ExportFormat.CONVERSATIONAL: conversational,
    ExportFormat.KTO: kto,
    ExportFormat.KTO_CONVERSATIONAL: kto_conversational,
    ExportFormat.SFT: sft,
    ExportFormat.OPENAI: openai,
}
