//! The page shell both dashboards use: styles, a header, and a script that refreshes the page's
//! data and charts by itself every few seconds and draws the charts with uPlot. Everything is
//! served by the binary (uPlot from `/assets`, see [`crate::assets`]).

use axum::response::Html;

const STYLE: &str = r#"
:root { --ink: #1d232b; --muted: #6b7480; --line: #e3e6ea; --ok: #1a8a4a; --bad: #c0392b; --accent: #1f6fd1; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink); background: #f6f7f9; }
header { background: #14202e; color: #fff; padding: 14px 24px; display: flex; align-items: baseline; gap: 16px; }
header h1 { font-size: 19px; margin: 0; }
header .sub { color: #a9b6c4; font-size: 13px; }
main { max-width: 1100px; margin: 0 auto; padding: 18px 24px 40px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(190px, 1fr)); gap: 12px; margin-bottom: 16px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 22px; font-weight: 600; margin-top: 2px; word-break: break-all; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; margin-bottom: 16px; }
section h2 { font-size: 15px; margin: 0 0 10px; }
table { width: 100%; border-collapse: collapse; font-size: 14px; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); }
th { color: var(--muted); font-weight: 500; font-size: 12px; text-transform: uppercase; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.chart { min-height: 40px; } .chart .u-title { font-size: 14px; font-weight: 500; }
.ranges { float: right; }
.ranges button { border: 1px solid var(--line); background: #fff; border-radius: 5px; padding: 2px 9px; cursor: pointer; }
.ranges button.on { background: var(--accent); border-color: var(--accent); color: #fff; }
.up { color: var(--ok); font-weight: 600; } .down { color: var(--bad); font-weight: 600; }
.empty { color: var(--muted); }
form { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; }
input[type=number] { width: 140px; padding: 6px 8px; border: 1px solid var(--line); border-radius: 5px; }
input[type=search] { flex: 1; min-width: 260px; padding: 6px 8px; border: 1px solid var(--line); border-radius: 5px; font: 13px ui-monospace, monospace; }
.note { color: var(--muted); font-size: 13px; } code { word-break: break-all; }
button.act { background: var(--accent); color: #fff; border: 0; border-radius: 5px; padding: 7px 14px; cursor: pointer; }
textarea { width: 100%; min-height: 70px; margin-top: 8px; font: 12px ui-monospace, monospace; }
.msg { margin-top: 6px; font-size: 13px; } .msg.err { color: var(--bad); }
footer { color: var(--muted); font-size: 12px; text-align: center; }
"#;

/// The client side every page shares: `hp.refresh(fn)` runs `fn` now and every `secs`;
/// `hp.ranges(id, cb)` wires a 1h/24h/7d switch; `hp.charts(names)` wires the [`chart`]
/// sections of `names` and returns the function that redraws them (uPlot, from
/// `/chart/{name}.json`; the instances are in `hp.uplots`); `hp.si` writes a value with its SI
/// prefix; `hp.esc` escapes text for HTML; `hp.windows` fills the hashrate cards of
/// [`crate::hashrate_windows::cards`].
const SCRIPT: &str = r#"
const hp = {
  uplots: {},
  esc(s) { return String(s ?? '').replace(/[&<>"']/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c])); },
  si(v, unit) {
    if (v == null || !isFinite(v)) return '–';
    const p = ['', 'k', 'M', 'G', 'T', 'P', 'E'];
    let i = 0;
    while (Math.abs(v) >= 1000 && i < p.length - 1) { v /= 1000; i++; }
    return (Number.isInteger(v) ? v : v.toFixed(2)) + ' ' + p[i] + unit;
  },
  async json(url, options) {
    const r = await fetch(url, options);
    const body = await r.json().catch(() => ({ error: 'not JSON' }));
    if (!r.ok) throw new Error(body.error || r.statusText);
    return body;
  },
  // One chart: a line or bars with the value under the cursor in the legend, drag to zoom
  // (kept across refreshes), double-click to zoom out.
  async chart(name, range) {
    const box = document.getElementById(name + '-chart');
    const r = await fetch('/chart/' + name + '.json?range=' + range);
    if (!r.ok) { box.dataset.error = await r.text(); return; }
    const c = await r.json();
    let u = hp.uplots[name];
    if (c.points.length === 0) {
      if (u) { u.destroy(); delete hp.uplots[name]; }
      box.innerHTML = '<p class="empty">' + hp.esc(c.title) + ': no data yet</p>';
      return;
    }
    const data = [c.points.map(p => p[0]), c.points.map(p => p[1])];
    if (u && u.hpKey === c.kind + range) {
      u.setData(data, !u.hpZoomed);
      if (!u.hpZoomed) u.setScale('x', { min: c.from, max: c.to });
      return;
    }
    if (u) u.destroy();
    box.innerHTML = '';
    const bars = c.kind === 'bars';
    u = new uPlot({
      title: c.title,
      width: Math.max(box.clientWidth, 300),
      height: 260,
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.15 : 1] } },
      series: [
        { value: (u, t) => t == null ? '–' : new Date(t * 1000).toLocaleString() },
        {
          label: c.label,
          stroke: bars ? '#e08a1e' : '#1f6fd1',
          fill: bars ? 'rgba(224,138,30,0.7)' : 'rgba(31,111,209,0.08)',
          width: 2,
          paths: bars ? uPlot.paths.bars({ size: [0.9, 60], align: 1 }) : undefined,
          points: { show: false },
          value: (u, v) => hp.si(v, c.unit),
        },
      ],
      axes: [{}, { size: 80, values: (u, vals) => vals.map(v => hp.si(v, c.unit)) }],
      cursor: { drag: { x: true, y: false } },
      hooks: { setSelect: [u => { if (u.select.width > 0) u.hpZoomed = true; }] },
    }, data, box);
    u.hpKey = c.kind + range;
    u.hpZoomed = false;
    u.setScale('x', { min: c.from, max: c.to });
    u.over.addEventListener('dblclick', () => {
      u.hpZoomed = false;
      u.setScale('x', { min: c.from, max: c.to });
    });
    hp.uplots[name] = u;
  },
  ranges(id, cb) {
    const box = document.getElementById(id);
    box.querySelectorAll('button').forEach(b => b.addEventListener('click', () => {
      box.querySelectorAll('button').forEach(o => o.classList.toggle('on', o === b));
      cb(b.dataset.range);
    }));
  },
  charts(names) {
    const range = Object.fromEntries(names.map(n => [n, '1h']));
    const draw = () => Promise.all(names.map(n => hp.chart(n, range[n])));
    names.forEach(n => hp.ranges(n + '-ranges', r => { range[n] = r; draw(); }));
    window.addEventListener('resize', () => Object.entries(hp.uplots).forEach(([n, u]) => {
      const w = document.getElementById(n + '-chart').clientWidth;
      if (w > 0) u.setSize({ width: Math.max(w, 300), height: 260 });
    }));
    return draw;
  },
  refresh(secs, fn) {
    const run = () => fn().catch(e => console.warn(e)).finally(() => {
      document.getElementById('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
    });
    run();
    setInterval(run, secs * 1000);
  },
  state(up) { return up ? '<span class="up">up</span>' : '<span class="down">down</span>'; },
  // The hashrate cards (crate::hashrate_windows): each window's figure and what it covers.
  windows(list) {
    (list || []).forEach(w => {
      const value = document.getElementById('hashrate-' + w.window);
      const note = document.getElementById('hashrate-' + w.window + '-note');
      if (value) value.textContent = w.hashrate_text;
      if (note) note.textContent = w.note;
    });
  },
};
"#;

/// A whole page: `body` is the page's HTML, `script` its own code (run after [`SCRIPT`]).
pub fn page(title: &str, subtitle: &str, body: &str, script: &str) -> Html<String> {
    Html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><link rel="stylesheet" href="/assets/uplot.css"><style>{STYLE}</style>
<script src="/assets/uplot.js"></script></head>
<body><header><h1>{title}</h1><span class="sub">{subtitle}</span></header>
<main>{body}<footer id="updated">loading…</footer></main>
<script>{SCRIPT}
{script}</script></body></html>"#
    ))
}

/// The 1h / 24h / 7d switch for a chart.
pub fn ranges(id: &str) -> String {
    let buttons: String = crate::RANGES
        .iter()
        .enumerate()
        .map(|(i, (label, _))| {
            format!(
                r#"<button type="button" data-range="{label}"{}>{label}</button>"#,
                if i == 0 { r#" class="on""# } else { "" }
            )
        })
        .collect();
    format!(r#"<span class="ranges" id="{id}">{buttons}</span>"#)
}

/// A chart's section: `title`, its range switch (`{name}-ranges`) and the chart
/// (`{name}-chart`, drawn from `/chart/{name}.json` by `hp.charts`).
pub fn chart(title: &str, name: &str) -> String {
    format!(
        r#"<section><h2>{title} {}</h2><div class="chart" id="{name}-chart"></div></section>"#,
        ranges(&format!("{name}-ranges"))
    )
}
