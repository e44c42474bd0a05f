"""Assemble a report: a self-contained HTML page (figures embedded) and a Markdown file with PNGs beside it,
from whatever results the given paths hold."""
import base64
import html
import io
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from highway.reports.claims import NOT_TESTED, claims_table
from highway.reports.figure_style import report_style
from highway.reports.harness_figures import kernel_count_figures, per_layer_figures, population_figures, \
    precision_figures, stack_target_figures, throughput_figures, weight_streaming_figures
from highway.reports.loading import load_results
from highway.reports.study_figures import carry_figures, convergence_figures, gate_bias_figures, gate_figures
from highway.reports.summaries import compile_summary

CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{border-bottom:2px solid #0072b2}figure{margin:1.5em 0}img{max-width:100%}figcaption{color:#555;font-size:.9em}
table{border-collapse:collapse;font-size:.85em;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .5em}
th{background:#f0f4f8}.holds{color:#067d3a;font-weight:600}.fails{color:#b00020;font-weight:600}.untested{color:#8a6d00}
nav{font-size:.9em;columns:2;background:#f8fafc;padding:.5em 1em;border:1px solid #e2e8f0}nav ul{margin:.2em 0}
nav>ul>li{break-inside:avoid}"""


def _md_table(df: pd.DataFrame) -> str:
    cells = [[str(c) for c in df.columns]] + [[str(v).replace("|", "\\|") for v in row] for row in df.itertuples(index=False)]
    lines = ["| " + " | ".join(cells[0]) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(r) + " |" for r in cells[1:]]
    return "\n".join(lines)


def _environment_table(runs) -> pd.DataFrame:
    keys = ["timestamp", "device", "driver", "cuda", "torch", "triton", "commit", "command"]
    df = pd.DataFrame(runs)
    if df.empty:
        return df
    return df[[k for k in keys if k in df.columns]].drop_duplicates(subset=["device", "commit", "command"])


def build_report(paths, out, title: str = "Highway networks: depth, speed and gates", progress: bool = True) -> Path:
    """Write `out/report.html` and `out/report.md` (with `out/figures/*.png`); return the HTML's path.
    With `progress`, a line per figure as it is drawn and saved."""
    data = load_results(paths)
    if data.empty:
        raise ValueError(f"no results.csv, converge.csv, population.csv, gates.npz or compile_check.csv under "
                         f"{', '.join(map(str, paths))}")
    out = Path(out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    say = print if progress else (lambda *a, **k: None)
    with report_style():
        say("  drawing the convergence figures", flush=True)
        sections = [("Optimization: plain vs highway at growing depth", convergence_figures(data.converge))]
        say("  drawing the gate-bias figures", flush=True)
        sections.append(("The transform-gate bias and depth",
                         gate_bias_figures(data.converge) + carry_figures(data.carry)))
        say(f"  drawing the gates of {len(data.analyses)} trained net(s)", flush=True)
        sections.append(("Inside trained highway nets", [f for a in data.analyses for f in gate_figures(a)]))
        say("  drawing the throughput figures", flush=True)
        sections.append(("Throughput and memory", stack_target_figures(data.throughput)
                         + throughput_figures(data.throughput) + per_layer_figures(data.throughput)
                         + weight_streaming_figures(data.throughput) + kernel_count_figures(data.throughput)
                         + precision_figures(data.throughput)))
        say("  drawing the population figures", flush=True)
        sections.append(("Population training", population_figures(data.population)))
        total, done = sum(len(figures) for _, figures in sections), 0
        claims = claims_table(data)
        env = _environment_table(data.runs)

        sections = [(heading, figures) for heading, figures in sections if figures]
        tally = _verdict_tally(claims)
        kernels = compile_summary(data.compile_check)
        tables = [("compile-check", COMPILE_HEADING)] if len(kernels) else []
        md = [f"# {title}", "", f"Made from: {', '.join(data.sources)}", "", *_contents_md(sections, tables), "",
              "## Claims", "", f"**{tally}**", "", CLAIMS_NOTE, "", _md_table(claims), ""]
        body = [f"<h1>{html.escape(title)}</h1>", f"<p>Made from: {html.escape(', '.join(data.sources))}</p>",
                _contents_html(sections, tables), "<h2 id='claims'>Claims</h2>",
                f"<p><strong>{html.escape(tally)}</strong></p>", f"<p>{html.escape(CLAIMS_NOTE)}</p>",
                _claims_html(claims)]
        for heading, figures in sections:
            md += [f"## {heading}", ""]
            body.append(f"<h2>{html.escape(heading)}</h2>")
            for f in figures:
                done += 1
                say(f"  figure {done}/{total}: {f.title}", flush=True)
                png = _png(f.fig)
                (out / "figures" / f"{f.slug}.png").write_bytes(png)
                # an anchor of our own: the contents link to it in HTML and in Markdown alike
                md += [f'<a id="{f.slug}"></a>', "", f"### {f.title}", "", f"![{f.title}](figures/{f.slug}.png)", "",
                       f.caption, ""]
                body.append(f"<figure id='{f.slug}'><h3>{html.escape(f.title)}</h3><img alt='{html.escape(f.title)}' "
                            f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
                            f"<figcaption>{html.escape(f.caption)}</figcaption></figure>")
    if len(kernels):
        md += ['<a id="compile-check"></a>', "", f"## {COMPILE_HEADING}", "", COMPILE_NOTE, "", _md_table(kernels), ""]
        body += [f"<h2 id='compile-check'>{html.escape(COMPILE_HEADING)}</h2>", f"<p>{html.escape(COMPILE_NOTE)}</p>",
                 kernels.to_html(index=False, escape=True)]
    if not env.empty:
        md += ["## Environment", "", _md_table(env), ""]
        body += ["<h2>Environment</h2>", env.to_html(index=False, escape=True)]
    # a figure of an earlier draw into this folder that this one did not draw is gone from the page: drop its PNG
    drawn = {f"{f.slug}.png" for _, figures in sections for f in figures}
    for stale in (out / "figures").glob("*.png"):
        if stale.name not in drawn:
            stale.unlink()
    (out / "report.md").write_text("\n".join(md))
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>" \
           f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>"
    (out / "report.html").write_text(page)
    return out / "report.html"


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


CLAIMS_NOTE = (f"Each claim is tested on the data named in its basis. A claim that fails on a smaller study than "
               f"the paper's (fewer than its 100 trials a net, or a horizon too short for the shallow plain nets "
               f"to reach its loss of 1e-4) reads '{NOT_TESTED}': such a budget cannot refute it.")


def _verdict_tally(claims: pd.DataFrame) -> str:
    """'12 claims: 9 hold, 1 does not hold, 2 not tested at this budget, ...': the table at a glance."""
    counts = claims["verdict"].value_counts()
    words = {"holds": "hold", "does not hold": "do not hold"}
    parts = [f"{n} {words.get(v, v) if n > 1 else v}" for v, n in
             ((v, int(counts.get(v, 0))) for v in ("holds", "does not hold", NOT_TESTED, "no data")) if n]
    return f"{len(claims)} claims: " + ", ".join(parts)


COMPILE_HEADING = "GPU readiness: every kernel compiled for sm_80 and sm_90"
COMPILE_NOTE = ("From `highway-bench compile-check`, which compiles every autotune config of every kernel in bf16, "
                "tf32 and fp32 with the ptxas in the triton wheel, no GPU needed. Per kernel, over the configs its "
                "autotuner may try on both archs and in every dtype: the most registers a thread, the most bytes "
                "spilled (in which dtypes, and how many configs spill inside a loop, where local memory is read and "
                "written every iteration, not once a program), the blocks an SM holds at once and the share of its "
                "64 warps that fills, the tensor-core instructions of the bf16 configs, and the configs "
                "compile-check flagged.")


def _contents_md(sections, tables=()) -> list[str]:
    lines = ["- [Claims](#claims)"]
    for heading, figures in sections:
        lines.append(f"- {heading}")
        lines += [f"  - [{f.title}](#{f.slug})" for f in figures]
    return lines + [f"- [{heading}](#{anchor})" for anchor, heading in tables]


def _contents_html(sections, tables=()) -> str:
    items = ["<li><a href='#claims'>Claims</a></li>"]
    for heading, figures in sections:
        links = "".join(f"<li><a href='#{f.slug}'>{html.escape(f.title)}</a></li>" for f in figures)
        items.append(f"<li>{html.escape(heading)}<ul>{links}</ul></li>")
    items += [f"<li><a href='#{anchor}'>{html.escape(heading)}</a></li>" for anchor, heading in tables]
    return f"<nav><ul>{''.join(items)}</ul></nav>"


def _claims_html(claims: pd.DataFrame) -> str:
    rows = []
    for r in claims.itertuples(index=False):
        cls = {"holds": "holds", "does not hold": "fails", NOT_TESTED: "untested"}.get(r.verdict, "")
        rows.append(f"<tr><td>{html.escape(r.claim)}</td><td>{html.escape(str(r.measured))}</td>"
                    f"<td class='{cls}'>{html.escape(r.verdict)}</td><td>{html.escape(str(r.basis))}</td></tr>")
    return ("<table><tr><th>claim</th><th>measured</th><th>verdict</th><th>basis</th></tr>" + "".join(rows)
            + "</table>")
