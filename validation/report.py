"""Validation reports a person can open offline: one self-contained HTML page (and its JSON) per run, and an
index of all runs, newest first. No CDN assets: the CSS is inline."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

from validation.gate import SuiteResult

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, Segoe UI, sans-serif; margin: 2rem auto; max-width: 70rem; color: #1f2328; }
h1 { font-size: 1.4rem; margin-bottom: .2rem; } .meta { color: #59636e; margin-bottom: 1.2rem; }
table { border-collapse: collapse; width: 100%; } th, td { text-align: left; padding: .45rem .6rem; border-bottom: 1px solid #d1d9e0; vertical-align: top; }
th { background: #f6f8fa; } .pass { color: #1a7f37; font-weight: 600; } .fail { color: #cf222e; font-weight: 600; }
.warn { color: #9a6700; font-weight: 600; } .badge { display: inline-block; padding: .15rem .55rem; border-radius: 1rem; color: #fff; }
.badge.pass { background: #1a7f37; } .badge.fail { background: #cf222e; } code { font-size: 90%; }
"""


def html_page(title: str, body: str, extra_style: str = "") -> str:
    """A self-contained page: inline CSS, no external assets (readable offline)."""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{STYLE}{extra_style}</style></head><body>{body}</body></html>\n"
    )


def _status(check) -> str:
    if check.success:
        return '<span class="pass">passed</span>'
    return (
        '<span class="fail">FAILED</span>'
        if check.severity == "critical"
        else '<span class="warn">warning</span>'
    )


def _subject(subject: str) -> str:
    return f"<code>{escape(subject)}</code> · " if subject else ""


def render_result(result: SuiteResult) -> str:
    verdict = "pass" if result.success else "fail"
    rows = "".join(
        f"<tr><td>{_status(c)}</td><td>{escape(c.description)}<br><code>{escape(c.name)}</code></td>"
        f"<td>{escape(c.severity)}</td><td>{escape(c.observed)}</td></tr>"
        for c in sorted(result.checks, key=lambda c: (c.success, c.severity != "critical"))
    )
    body = (
        f"<h1>{escape(result.suite)} <span class='badge {verdict}'>{'passed' if result.success else 'failed'}</span></h1>"
        f"<div class='meta'>{_subject(result.subject)}batch <code>{escape(result.batch_id)}</code> · "
        f"{result.at:%Y-%m-%d %H:%M:%S} UTC · "
        f"{len(result.checks)} expectations, {len(result.failures)} failed, {len(result.warnings)} warnings · "
        f"<a href='index.html'>all reports</a></div>"
        f"<table><tr><th>status</th><th>expectation</th><th>severity</th><th>observed</th></tr>{rows}</table>"
    )
    return html_page(f"{result.suite} {result.batch_id}", body)


def write_report(result: SuiteResult, reports_dir: Path) -> Path:
    """Write the run's HTML and JSON under `reports_dir` (reports/validation), refresh the index; return the HTML path."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{result.at:%Y%m%dT%H%M%S%f}-{result.suite}-{result.batch_id}"
    html_path = reports_dir / f"{stem}.html"
    result.report_path = str(html_path)
    html_path.write_text(render_result(result))
    (reports_dir / f"{stem}.json").write_text(json.dumps(result.to_json(), indent=2, default=str))
    write_index(reports_dir)
    return html_path


def write_index(reports_dir: Path) -> Path:
    runs = []
    for path in reports_dir.glob("*.json"):
        data = json.loads(path.read_text())
        runs.append((data["at"], path.with_suffix(".html").name, data))
    runs.sort(key=lambda run: run[0], reverse=True)
    rows = "".join(
        f"<tr><td>{escape(at[:19].replace('T', ' '))}</td><td><a href='{escape(name)}'>{escape(d['suite'])}</a></td>"
        f"<td>{_subject(Path(d.get('subject') or '').name)}<code>{escape(d['batch_id'])}</code></td>"
        f"<td>{'<span class=pass>passed</span>' if d['success'] else '<span class=fail>failed</span>'}</td>"
        f"<td>{sum(1 for c in d['checks'] if not c['success'] and c['severity'] == 'critical')}</td>"
        f"<td>{sum(1 for c in d['checks'] if not c['success'] and c['severity'] == 'warning')}</td></tr>"
        for at, name, d in runs
    )
    body = (
        "<h1>segflow validation reports</h1><div class='meta'>newest first</div>"
        "<table><tr><th>at (UTC)</th><th>suite</th><th>batch</th><th>result</th><th>failed</th><th>warnings</th></tr>"
        f"{rows}</table>"
    )
    index_path = reports_dir / "index.html"
    index_path.write_text(html_page("segflow validation reports", body))
    return index_path
