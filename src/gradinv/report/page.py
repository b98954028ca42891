"""The audit page: one self-contained HTML file (CSS inline, images as base64 PNG data URIs, no
scripts, no external resources) rendered from the audit's report dict and its images."""

from __future__ import annotations

import base64
import io
import math
from html import escape
from typing import Any

import torch

from .figures import grid_image

COLUMNS = 16
MAX_REASON = 240  # characters of a refusal shown in the verdict table
EXACT_DB = 60.0  # at or above: the reconstruction equals the image up to float rounding
LEVEL_CLASS = {
    "leaked": "bad", "partly": "warn", "not recovered": "good", "bound": "warn", "wrong": "good",
    "told": "bad", "refused": "muted", "skipped": "muted", "not run": "muted", "error": "err",
    "interrupted": "warn", "n/a": "muted", "not measured": "muted",
}  # fmt: skip
LEVEL_WORD = {"refused": "does not apply", "bound": "lower bound", "wrong": "wrong estimate"}

CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f3f4f7;color:#1d2433;font:15px/1.5 -apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,"Noto Sans","DejaVu Sans",sans-serif}
header.top{background:linear-gradient(120deg,#17213a,#263a63);color:#fff;padding:28px 0 30px}
.wrap{max-width:1160px;margin:0 auto;padding:0 28px}
.kicker{text-transform:uppercase;letter-spacing:.12em;font-size:12px;color:#aebbd8}
h1{margin:6px 0 8px;font-size:28px;font-weight:650;letter-spacing:-.01em}
.sub{color:#d7def0;margin:0;font-size:15px}
.sub b{color:#fff;font-weight:600}
main .wrap{padding-top:22px;padding-bottom:40px}
section{margin:0 0 26px}
h2{font-size:19px;margin:0 0 10px;font-weight:650;color:#17213a}
h3{font-size:15px;margin:0 0 6px}
.panel{background:#fff;border-radius:10px;box-shadow:0 1px 3px rgba(20,30,60,.08),
0 4px 14px rgba(20,30,60,.05);padding:16px 20px}
.cards{display:grid;grid-template-columns:repeat(4,1fr);gap:14px}
.card{background:#fff;border-radius:10px;padding:14px 16px 14px;border-top:5px solid #9aa3b5;
box-shadow:0 1px 3px rgba(20,30,60,.08),0 4px 14px rgba(20,30,60,.05)}
.card.bad{border-top-color:#d0342c}.card.warn{border-top-color:#e0a100}
.card.good{border-top-color:#2e9e5b}.card.muted{border-top-color:#9aa3b5}
.card .what{font-size:12px;text-transform:uppercase;letter-spacing:.08em;color:#5b6478}
.card .big{font-size:30px;font-weight:700;margin:2px 0 0;letter-spacing:-.02em}
.card .small{font-size:13px;color:#4a5366;margin-top:4px}
.pill{display:inline-block;padding:1px 9px;border-radius:999px;font-size:12px;font-weight:600;
white-space:nowrap;vertical-align:1px}
.pill.bad{background:#fde4e2;color:#a51f18}.pill.warn{background:#fff1cc;color:#8a5a00}
.pill.good{background:#dcf3e5;color:#1b6e3d}.pill.muted{background:#eceef3;color:#5b6478}
.pill.err{background:#4a0d0d;color:#fff}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:18px}
ul.tm{margin:4px 0 0;padding-left:20px}ul.tm li{margin:2px 0}
.tm-sees h3{color:#a51f18}.tm-not h3{color:#1b6e3d}
table{border-collapse:collapse;width:100%;font-size:13.5px}
th{text-align:left;font-weight:600;color:#5b6478;font-size:12px;text-transform:uppercase;
letter-spacing:.05em;border-bottom:2px solid #e3e6ee;padding:7px 8px}
td{border-bottom:1px solid #eceef3;padding:7px 8px;vertical-align:top}
tr.defense-head td{background:#f6f7fb;font-weight:600;color:#263a63}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.reason{color:#5b6478;font-size:12.5px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:14px}
.fig{background:#fff;border-radius:10px;padding:12px 14px;box-shadow:0 1px 3px rgba(20,30,60,.08)}
.fig .head{display:flex;justify-content:space-between;align-items:baseline;gap:8px}
.fig .name{font-weight:650;min-width:0;overflow-wrap:break-word}.fig .head .pill{flex-shrink:0}
.grid.wide{grid-template-columns:1fr}
.dl{display:flex;justify-content:space-between;gap:6px;align-items:baseline;font-size:13px;
color:#4a5366;margin-top:5px}.dl .spec{overflow-wrap:anywhere}
.dl .v{white-space:nowrap;font-weight:650;font-variant-numeric:tabular-nums}
.v.bad{color:#b3261e}.v.warn{color:#9a6700}.v.good{color:#1b6e3d}.v.muted{color:#6a7386}
.pair.side{grid-template-columns:auto auto;justify-content:start;gap:3px 10px}
.pair.side .lab{writing-mode:horizontal-tb;transform:none}
.lead{font-size:15.5px;margin:0 0 16px;background:#fff;border-radius:10px;padding:14px 18px;
box-shadow:0 1px 3px rgba(20,30,60,.08);border-left:5px solid #263a63}
.lead p{margin:0 0 4px}.lead p:last-child{margin:0}
.fig .score{font-size:13px;color:#4a5366;margin:2px 0 8px}
.pair{display:grid;grid-template-columns:auto 1fr;gap:4px 8px;align-items:center}
.pair .lab{font-size:11px;color:#7a8295;text-transform:uppercase;letter-spacing:.06em;
writing-mode:vertical-rl;transform:rotate(180deg)}
img.px{image-rendering:pixelated;image-rendering:crisp-edges;max-width:100%;height:auto;
display:block;border-radius:3px}
.per{font-size:11.5px;color:#6a7386;margin-top:6px;font-variant-numeric:tabular-nums}
svg.curve{display:block;margin-top:8px;background:#f7f8fb;border-radius:4px}
.truthbox{display:flex;gap:18px;align-items:center}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:3px 16px;margin:0;font-size:13.5px}
dl.kv dt{color:#5b6478}dl.kv dd{margin:0;word-break:break-word}
code{font:12.5px/1.4 ui-monospace,"DejaVu Sans Mono",Menlo,monospace;background:#eef0f5;
padding:1px 5px;border-radius:4px}
.note{background:#fff8e1;border-left:4px solid #e0a100;padding:8px 12px;border-radius:6px;
margin:6px 0;font-size:13.5px}
.alert{background:#fde4e2;border-left:4px solid #d0342c;padding:8px 12px;border-radius:6px;
margin:0 0 14px;font-weight:600}
.muted{color:#6a7386}
footer{color:#6a7386;font-size:12.5px;text-align:center;padding:0 0 30px}
@media (max-width:900px){.cards{grid-template-columns:1fr 1fr}.cols{grid-template-columns:1fr}}
"""


def data_uri(images: torch.Tensor) -> tuple[str, int, int]:
    """A batch (B, C, H, W) in [0,1] as one PNG grid (native resolution, 1-px white gaps)."""
    picture = grid_image(images, scale=1, columns=COLUMNS, pad=1)
    buf = io.BytesIO()
    picture.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(), *picture.size


def img(images: torch.Tensor, alt: str, target: int | None = None) -> str:
    """An <img> of the batch, each image about `target` pixels wide on the page."""
    uri, w, h = data_uri(images)
    side = images.shape[-1]
    target = target or (112 if images.shape[0] <= 4 else 56)
    scale = max(1, min(8, round(target / max(1, side))))
    return (
        f'<img class="px" src="{uri}" alt="{escape(alt)}" width="{w * scale}" height="{h * scale}">'
    )


def pill(level: str | None) -> str:
    level = level or "n/a"
    return (
        f'<span class="pill {LEVEL_CLASS.get(level, "muted")}">'
        f"{escape(LEVEL_WORD.get(level, level))}</span>"
    )


def fmt(value: Any, digits: int = 1, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def sparkline(points: list[list[float]], width: int = 228, height: int = 40) -> str:
    """The matching loss against iteration (log scale) as an inline SVG polyline."""
    pts = [(i, v) for i, v in points if v > 0]
    if len(pts) < 2:
        return ""
    last = int(points[-1][0]) + 1
    pts = [(x, math.log10(v)) for x, v in pts]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    sx = (width - 8) / max(1e-9, x1 - x0)
    sy = (height - 10) / max(1e-9, y1 - y0)
    line = " ".join(f"{4 + (x - x0) * sx:.1f},{5 + (y1 - y) * sy:.1f}" for x, y in pts)
    return (
        f'<svg class="curve" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="matching loss"><polyline fill="none" stroke="#3566c9" '
        f'stroke-width="1.4" points="{line}"/><text x="{width - 4}" y="11" font-size="9" '
        f'text-anchor="end" fill="#7a8295">matching loss (log), {last} it.</text></svg>'
    )


def _step_by_id(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in report["steps"]}


def figure(
    step: dict[str, Any], row: dict[str, Any] | None, images: dict[str, torch.Tensor]
) -> str:
    """One attack's card: truth above its reconstruction (matched order), scores, loss curve."""
    m = step.get("metrics") or {}
    truth = images.get("truth")
    rec = images.get(step["id"])
    name = escape(step["attack"] or step["id"])
    breakable = name.replace(",", ",<wbr>").replace(":", ":<wbr>")  # long defense specs
    title = escape(step["title"].split(": ", 1)[-1])
    level = (row or {}).get("level", step["status"])
    head = f'<div class="head"><span class="name">{breakable}</span>{pill(level)}</div>'
    if rec is None or truth is None:
        reason = escape(step.get("reason") or "")
        return (
            f'<div class="fig">{head}<div class="score">{title}</div>'
            f'<div class="per">{reason}</div></div>'
        )
    info = m.get("info") or {}
    chosen = f" · chose <b>{escape(str(info['chosen']))}</b>" if info.get("chosen") else ""
    acc = m.get("label_accuracy")
    extra = "" if acc is None else f" · labels {acc:.2f}"
    scores = (
        f'<div class="score"><b>{fmt(m.get("psnr"), 1, " dB")}</b> · SSIM {fmt(m.get("ssim"), 3)}'
        f"{extra}{chosen} · {fmt(step['seconds'], 1, ' s')}</div>"
    )
    per = m.get("psnr_per_image") or []
    per_line = ""
    if 1 < len(per) <= COLUMNS:
        per_line = (
            '<div class="per">per image: ' + " · ".join(f"{p:.1f}" for p in per) + " dB</div>"
        )
    elif len(per) > COLUMNS:
        s = sorted(per)
        per_line = (
            f'<div class="per">per image: min {s[0]:.1f}, median {s[len(s) // 2]:.1f}, '
            f"max {s[-1]:.1f} dB</div>"
        )
    if truth.shape[0] == 1:  # side by side, captions above
        pair = (
            '<div class="pair side"><span class="lab">truth</span><span class="lab">attack</span>'
            f"{img(truth, 'private batch', 100)}{img(rec, f'reconstruction by {name}', 100)}</div>"
        )
    else:
        pair = (
            f'<div class="pair"><span class="lab">truth</span>{img(truth, "private batch")}'
            f'<span class="lab">attack</span>{img(rec, f"reconstruction by {name}")}</div>'
        )
    return (
        f'<div class="fig">{head}<div class="score">{title}</div>{scores}'
        f"{pair}{per_line}{sparkline(m.get('loss_curve') or [])}</div>"
    )


def _card(level: str, what: str, big: str, lines: list[str]) -> str:
    body = "".join(f'<div class="small">{line}</div>' for line in lines)
    return (
        f'<div class="card {LEVEL_CLASS.get(level, "muted")}"><div class="what">{escape(what)}'
        f'</div><div class="big">{big}</div>{body}</div>'
    )


def cards(report: dict[str, Any]) -> str:
    v = report["verdict"]
    im, lab, bs = v["images"], v["labels"], v["batch_size"]
    chose = f" → {escape(str(im['default_chose']))}" if im.get("default_chose") else ""
    psnr = im["strongest_psnr"]
    exact = " (numerically exact)" if psnr is not None and psnr >= EXACT_DB else ""
    if im["strongest_attack"] is None:
        lines = [f"{pill(im['level'])} no attack applied (see the verdict table)"]
    else:
        name = escape(str(im["strongest_attack"]))
        lines = [
            f"{pill(im['level'])} strongest: <b>{name}</b>{exact}",
            f"default attack (auto{chose}): {fmt(im['default_psnr'], 1, ' dB')}",
        ]
    out = [_card(im["level"], "Images", fmt(psnr, 1, " dB"), lines)]
    big = escape(lab["result"].split(" ")[0]) if lab.get("result") else "—"
    told = "told to the server" if lab["told"] else "hidden from the server"
    lines = [f"{pill(lab['level'])} counts recovered from the update", f"labels {told}"]
    out.append(_card(lab["level"], "Labels", big, lines))
    shows = escape(bs.get("result") or bs.get("reason") or "—")
    if bs["told"]:
        lines = [f"{pill('told')} told to the server", f"the update alone shows: {shows}"]
        out.append(_card("told", "Batch size", str(bs["true"]), lines))
    else:
        big = "—"
        if bs.get("estimate") is not None:
            big = str(bs["estimate"])
        elif bs.get("at_least") is not None:
            big = f"≥ {bs['at_least']}"
        lines = [f"{pill(bs['level'])} hidden from the server", f"the update shows: {shows}"]
        out.append(_card(bs["level"], "Batch size", big, lines))
    defs = v["defenses"]
    measured = [d for d in defs if d["strongest_psnr"] is not None]
    if measured:
        best = min(measured, key=lambda d: d["strongest_psnr"])
        rows = "".join(
            f'<div class="dl" title="{escape(d["level"])}"><span class="spec">'
            f'{escape(d["defense"])}</span><span class="v {LEVEL_CLASS.get(d["level"], "muted")}">'
            f"{fmt(d['strongest_psnr'], 1, ' dB')}</span></div>"
            for d in defs
        )
        out.append(
            f'<div class="card {LEVEL_CLASS.get(best["level"], "muted")}"><div class="what">'
            f'With a defense added</div><div class="big">{fmt(best["strongest_psnr"], 1, " dB")}'
            f'</div><div class="small">{pill(best["level"])} with the best-protecting defense'
            f" tried; images per defense:</div>{rows}</div>"
        )
    else:
        why = "no attack applied under the defenses tried" if defs else "no defense was tried"
        out.append(_card("n/a", "With a defense added", "—", [why]))
    lead = "".join(f"<p>{escape(s)}</p>" for s in v.get("summary") or [])
    return f'<div class="lead">{lead}</div><section class="cards">{"".join(out)}</section>'


def threat(report: dict[str, Any]) -> str:
    tm = report["threat_model"]
    sees = "".join(f"<li>{escape(s)}</li>" for s in tm["sees"])
    nots = "".join(f"<li>{escape(s)}</li>" for s in tm["does_not_see"])
    return (
        '<section><h2>Threat model</h2><div class="panel">'
        f"<p style='margin-top:0'>{escape(tm['summary'])}</p>"
        f'<div class="cols"><div class="tm-sees"><h3>The server sees</h3><ul class="tm">{sees}'
        f'</ul></div><div class="tm-not"><h3>The server does not see</h3><ul class="tm">{nots}'
        "</ul></div></div></div></section>"
    )


def table(report: dict[str, Any]) -> str:
    head = (
        "<tr><th>leaks</th><th>measurement</th><th>verdict</th><th>how well</th>"
        "<th>assumptions (what the attack was given)</th><th>defense</th><th>time</th></tr>"
    )
    body = []
    current = None
    for r in report["rows"]:
        group = r["id"].split("/")[0] if "/" in r["id"] else None
        if group != current:
            current = group
            if group:
                body.append(
                    f'<tr class="defense-head"><td colspan="7">defense added: {escape(group)}'
                    "</td></tr>"
                )
        how = r.get("result") or ""
        if r.get("chosen"):
            how += f" (chose {r['chosen']})"
        if r.get("label_accuracy") is not None:
            how += f"; labels {r['label_accuracy']:.2f}"
        if r["status"] not in ("ok", "interrupted"):
            how = r.get("reason") or ""
            if len(how) > MAX_REASON:  # e.g. auto listing every candidate's refusal
                how = how[: MAX_REASON - 1].rsplit(" ", 1)[0] + " … (full text in report.json)"
        body.append(
            f"<tr><td>{escape(r['what'])}</td><td>{escape(r['title'])}</td>"
            f"<td>{pill(r.get('level'))}</td>"
            f'<td class="{"reason" if r["status"] not in ("ok", "interrupted") else ""}">'
            f"{escape(how)}</td><td>{escape(r.get('assumptions') or '')}</td>"
            f"<td>{escape(r['defense'])}</td>"
            f'<td class="num">{fmt(r["seconds"], 1, " s")}</td></tr>'
        )
    return (
        '<section><h2>Verdict</h2><div class="panel" style="padding:8px 12px">'
        f"<table>{head}{''.join(body)}</table></div></section>"
    )


def gallery(report: dict[str, Any], images: dict[str, torch.Tensor]) -> str:
    steps = _step_by_id(report)
    rows = {r["id"]: r for r in report["rows"]}
    base = [s for s in report["steps"] if "/" not in s["id"] and s["id"] in images]
    defended = [s for s in report["steps"] if "/" in s["id"] and s["id"] in images]
    parts = []
    truth = images.get("truth")
    wide = " wide" if truth is not None and truth.shape[0] > 4 else ""
    if truth is not None:
        b = truth.shape[0]
        d = report["deployment"]
        parts.append(
            '<section><h2>The private batch</h2><div class="panel truthbox">'
            f"{img(truth, 'private batch')}<div>{b} image{'s' if b > 1 else ''} of "
            f"{escape(d['data'])} at {d['image_size']}×{d['image_size']}, labels "
            f"{escape(str(sorted(steps['round']['metrics']['labels_true'])))} — what the "
            "client keeps to itself. Every reconstruction below is shown under the image it "
            "matched best (Hungarian assignment on pixel error, for scoring only).</div></div>"
            "</section>"
        )
    if base:
        parts.append(
            f'<section><h2>Reconstructions</h2><div class="grid{wide}">'
            + "".join(figure(s, rows.get(s["id"]), images) for s in base)
            + "</div></section>"
        )
    if defended:
        parts.append(
            "<section><h2>Reconstructions under the defenses tried</h2>"
            f'<div class="grid{wide}">'
            + "".join(
                figure({**s, "attack": s["id"].replace("/", " · ")}, rows.get(s["id"]), images)
                for s in defended
            )
            + "</div></section>"
        )
    return "".join(parts)


def reading() -> str:
    return (
        '<section><h2>How to read this page</h2><div class="panel"><ul class="tm">'
        "<li><b>PSNR</b> (dB) compares a reconstruction with the private image in [0,1] pixel "
        "space after matching reconstructions to images; ≥ 25 dB is marked <i>leaked</i> "
        "(recognisable), 18–25 dB <i>partly</i> (colours, layout, some shapes), below 18 dB "
        "<i>not recovered</i>. <b>SSIM</b> (0–1) measures structure: above ~0.8 the picture is "
        "clearly the same.</li>"
        "<li><b>Count accuracy</b>: the share of the batch's labels recovered, as a multiset "
        "(which classes and how many of each), from the update alone.</li>"
        "<li>The <b>default attack</b> (<code>auto</code>) is what a server would run: it "
        "picks among the attacks that apply by how well each explains the update, never by "
        "the private images. The <b>strongest</b> figure is the best PSNR of the whole battery "
        "— a server could not know which attack that is, so it is an upper bound on what this "
        "battery shows.</li>"
        "<li><b>Does not apply</b>: a closed-form or generative attack that refuses this "
        "model, batch or protocol, with its reason. <b>Skipped</b>: an attack the audit was "
        "not given what it needs for (a generator, an inverter).</li>"
        "<li><b>Defense-aware</b>: the attacker knows the defense's settings (they are part of "
        "the protocol) and re-applies its deterministic part to its own simulated update.</li>"
        "<li>A low PSNR is <b>not a proof of privacy</b>: it says these attacks at this budget "
        "did not rebuild the images. Stronger budgets (<code>--budget standard</code>), "
        "generative priors or trained inverters can do better.</li>"
        "</ul></div></section>"
    )


def run_details(report: dict[str, Any]) -> str:
    env, s, d = report["environment"], report["settings"], report["deployment"]
    items = [
        ("gradinv", f"{env['gradinv']}" + (f" (commit {env['commit']})" if env.get("commit") else "")),
        ("torch / python", f"{env['torch']} / {env['python']}"),
        ("opacus", env.get("opacus") or "not installed"),
        ("machine", f"{env['platform']}, {env['machine']}, {env['cpus']} CPUs"),
        ("threads", str(env["threads"])),
        ("seeds", f"batch and attacks {d['seed']}, model {d['model_seed']}"),
        ("budget", s["budget"]),
        ("started (UTC)", report["started"]),
        ("total time", f"{report['seconds']:.1f} s wall clock, "
         f"{fmt(report.get('cpu_seconds'), 1, ' s')} CPU (this process)"
         + ("" if report.get("load_average") is None
            else f"; load average {report['load_average']:.1f} at the start")),
        ("model", f"{d['model']} {d['model_options'] or ''}".strip()),
        ("data", f"{d['data']}, {d['image_size']}×{d['image_size']}, composition {d['composition']}"),
        ("clients", f"{d['clients']} × batch {d['batch_size']}"
         + (" (secure aggregation)" if d["secure_aggregation"] else "")),
        ("protocol", d["protocol"] + (f", {d['local_epochs']} local epochs, lr {d['local_lr']}"
                                      if d["protocol"] == "fedavg" else "")),
        ("loss", d["loss"]),
        ("model trained before the round", f"{d['train_epochs']} epochs"),
        ("deployment defenses", ", ".join(d["defenses"]) or "none"),
        ("defenses tried", ", ".join(report["defenses_tried"]) or "none"),
        ("generator", s.get("generator") or "none"),
        ("inverter", s.get("inverter") or "none"),
        ("dtype / device", f"{d['dtype']} / {d['device']}"),
        ("command", s.get("command") or ""),
    ]  # fmt: skip
    for spec, p in (report.get("privacy") or {}).items():
        if "epsilon" in p:
            items.append((f"privacy of {spec}", f"ε = {fmt(p['epsilon'], 2)} at δ = {p['delta']} "
                          f"(one round, {p.get('accountant', '')})"))  # fmt: skip
    kv = "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in items)
    notes = "".join(f'<div class="note">{escape(n)}</div>' for n in report.get("notes") or [])
    return (
        f'<section><h2>Run</h2><div class="panel">{notes}<dl class="kv">{kv}</dl>'
        "<p class='muted' style='margin:10px 0 0;font-size:12.5px'>The same content as data: "
        "<code>report.json</code>; the private batch and every reconstruction: "
        "<code>images.safetensors</code>.</p></div></section>"
    )


def render_audit(report: dict[str, Any], images: dict[str, torch.Tensor]) -> str:
    """The page for one audit (see gradinv.audit.run_audit)."""
    d = report["deployment"]
    sub = [
        f"<b>{escape(d['model'])}</b>",
        f"<b>{escape(d['data'])}</b> at {d['image_size']} px",
        f"batch of <b>{d['batch_size']}</b>" + (f" × {d['clients']} clients" if d["clients"] > 1 else ""),
        escape(d["protocol"].replace("fedsgd", "FedSGD").replace("fedavg", "FedAvg")),
        f"loss {escape(d['loss'])}",
        "labels " + ("<b>told</b>" if d["labels_told"] else "hidden"),
        "batch size " + ("<b>told</b>" if d["batch_size_told"] else "hidden"),
    ]  # fmt: skip
    if d["defenses"]:
        sub.append("defenses " + escape(", ".join(d["defenses"])))
    alert = ""
    if report.get("interrupted"):
        alert = (
            '<div class="alert">Interrupted (Ctrl-C): this page shows the steps finished before '
            "the interruption; the others are marked “not run”.</div>"
        )
    errors = [s for s in report["steps"] if s["status"] == "error"]
    if errors:
        alert += (
            f'<div class="alert">{len(errors)} step(s) failed with an unexpected error: '
            + escape(", ".join(s["id"] for s in errors))
            + " (details in report.json).</div>"
        )
    env = report["environment"]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(report['title'])}</title><style>{CSS}</style></head><body>"
        '<header class="top"><div class="wrap">'
        f'<div class="kicker">gradinv {escape(env["gradinv"])} · leakage audit · '
        f"{escape(report['started'])}</div>"
        "<h1>What a curious server rebuilds from one client update</h1>"
        f'<p class="sub">{" · ".join(sub)}</p></div></header>'
        f'<main><div class="wrap">{alert}{cards(report)}{threat(report)}{table(report)}'
        f"{gallery(report, images)}{reading()}{run_details(report)}</div></main>"
        f"<footer>gradinv {escape(env['gradinv'])} · budget {escape(report['settings']['budget'])}"
        f" · {report['seconds']:.0f} s on {env['threads']} thread(s)</footer></body></html>"
    )
