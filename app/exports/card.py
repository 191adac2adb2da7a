"""The dataset card (README.md) that ships with every snapshot."""

from __future__ import annotations

from typing import Any

from app.exports.formats import DESCRIPTIONS, ExportFormat

SOURCE_WORDS = {
    "gold": "gold answers an admin set",
    "adjudicated": "reviewer decisions on items whose labelers disagreed",
    "ai_reviewed": "AI judge labels a reviewer approved, overrode or edited",
    "human": "human labels, aggregated",
    "ai_accepted": "AI judge labels, confident and consistent in both orders, not reviewed",
}


def dataset_card(manifest: dict[str, Any]) -> str:
    counts = manifest["counts"]
    files = manifest["files"]
    split_names = [f["name"].split(".")[0] for f in files]
    ext = "json" if manifest["container"] == "jsonl" else "parquet"
    lines = [
        "---",
        "configs:",
        "- config_name: default",
        "  data_files:",
        *[f"  - split: {name}\n    path: {f['name']}" for name, f in
          zip(split_names, files, strict=True)],
        "tags:",
        "- preference",
        "- tandem",
        "---",
        "",
        f"# {manifest['project']['name']}: {manifest['name']} (version {manifest['version']})",
        "",
        f"Format: **{manifest['format']}** — {DESCRIPTIONS[ExportFormat(manifest['format'])]}.",
        f"Load it with `datasets.load_dataset(\"{ext}\", data_files=...)` or from this folder.",
        "",
        "## Counts",
        "",
        f"- rows: {counts['rows']} "
        + "(" + ", ".join(f"{k}: {v}" for k, v in counts["rows_per_split"].items()) + ")",
        f"- items: {counts['items']}; preference pairs: {counts['pairs']}",
        f"- ties left out: {counts['ties_left_out']}; items awaiting adjudication (left out): "
        f"{counts['awaiting_adjudication']}",
        "",
        "Pairs by where the preference came from:",
        "",
        *[f"- {src}: {n} — {SOURCE_WORDS.get(src, src)}"
          for src, n in counts["pairs_by_source"].items()],
        "",
        "## How the labels were made",
        "",
        "Each item's final preference follows a fixed precedence: an admin's gold answer, "
        "then a reviewer's adjudication, then a reviewer's review of the AI judge's label, "
        "then the human labels (majority per response pair, Bradley–Terry for the order of a "
        "ranking, optionally weighted by each labeler's Dawid–Skene reliability), then an AI "
        "label the judge gave consistently in both response orders and with confidence. "
        "Items whose human labels disagree beyond the project's threshold, or rank in a "
        "circle, wait for a reviewer and are not in this file. A ranking becomes all its "
        "ordered pairs; a human edit is preferred over the response it came from.",
        "",
        "`margin` (when present) is the preference strength on a 0–2 scale: the labelers' "
        "mean \"slightly\" (1) or \"clearly\" (2) better, or 2·(2p−1) for a judge probability "
        "p; decisions without a strength count 1.",
        "",
        "## Provenance",
        "",
        f"- filters: `{manifest['filters']}`",
        f"- split: `{manifest['split']}` (by prompt: every pair of one prompt on one side)",
        f"- made by {manifest['code_version']} at {manifest['created_at']}",
        "",
        "| file | rows | bytes | sha256 |",
        "|---|---|---|---|",
        *[f"| {f['name']} | {f['rows']} | {f['bytes']} | `{f['sha256']}` |" for f in files],
        "",
    ]
    return "\n".join(lines)
