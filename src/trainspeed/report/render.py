"""Write the report files: report.csv, and report.md / report.html from one list of blocks, so the two always
say the same thing. Every file is written atomically (trainspeed.record.atomic)."""

from __future__ import annotations

import base64
import csv
import html
import io

from trainspeed.record.atomic import write_atomic  # noqa: F401 - the report's files are written with it
from trainspeed.report import significance_text
from trainspeed.report.aggregate import ConfigResult
from trainspeed.report.significance import Significance

CSV_COLUMNS = [
    "config",
    "runs",
    "reached",
    "pruned",
    "diverged",
    "failed",
    "median_seconds",
    "median_steps",
    "val_acc_best_median",
    "rank",
]

# A block is ("h1" | "h2" | "p", text), ("table", headers, rows) or ("img", alt, file name under plots/).
Block = tuple


def fmt(value: float | None, digits: int = 4) -> str:
    """A number for a table; empty when there is none."""
    return "" if value is None else f"{value:.{digits}g}"


def fmt_range(lo: float | None, hi: float | None) -> str:
    return "" if lo is None or hi is None else f"{fmt(lo)}–{fmt(hi)}"


def csv_text(ranked: list[ConfigResult], significance: Significance | None = None) -> str:
    """One row per configuration, best first; with `significance`, its columns (significance_text) at the end."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    extra = significance_text.CSV_COLUMNS if significance is not None else []
    writer.writerow(CSV_COLUMNS + extra)
    for c in ranked:
        writer.writerow(
            [
                c.config,
                c.n_runs,
                c.reached,
                c.pruned,
                c.diverged,
                c.failed,
                fmt(c.median_seconds, 6),
                fmt(c.median_steps, 6),
                fmt(c.val_acc_best_median, 6),
                c.rank,
                *(significance_text.csv_cells(significance, c) if significance is not None else []),
            ]
        )
    return buf.getvalue()


def _md_cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind == "h1":
            out.append(f"# {block[1]}")
        elif kind == "h2":
            out.append(f"## {block[1]}")
        elif kind == "p":
            out.append(block[1])
        elif kind == "table":
            headers, rows = block[1], block[2]
            out.append("| " + " | ".join(map(_md_cell, headers)) + " |")
            out.append("|" + "---|" * len(headers))
            out += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in rows]
        elif kind == "img":
            out.append(f"![{block[1]}](plots/{block[2]})")
        out.append("")
    return "\n".join(out)


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
img { max-width: 100%; display: block; margin: 1em 0; }
"""


def html_page(blocks: list[Block], images: dict[str, bytes], title: str) -> str:
    """A self-contained page: styles inline, figures as base64 PNG data URIs, no external reference."""
    esc = html.escape
    out = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
    ]
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2"):
            out.append(f"<{kind}>{esc(block[1])}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{esc(block[1])}</p>")
        elif kind == "table":
            head = "".join(f"<th>{esc(str(h))}</th>" for h in block[1])
            body = "".join(
                "<tr>" + "".join(f"<td>{esc(str(v))}</td>" for v in row) + "</tr>" for row in block[2]
            )
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif kind == "img" and block[2] in images:
            data = base64.b64encode(images[block[2]]).decode("ascii")
            out.append(f"<img alt='{esc(block[1])}' src='data:image/png;base64,{data}'>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
