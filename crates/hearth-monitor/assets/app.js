// The hearth dashboard: live snapshots over SSE, history and benchmarks from JSON endpoints.
'use strict';
const $ = (id) => document.getElementById(id);
const GIB = 1024 ** 3, MIB = 1024 ** 2;
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
const fmt = (v, d = 1) => (v == null || isNaN(v) ? '–' : Number(v).toFixed(d));

function headline(s) {
  return s.busy || s.tok_s > 0.05 ? `${fmt(s.tok_s)} tok/s` : 'idle';
}

function chart(canvas, values, max, color) {
  const ctx = canvas.getContext('2d');
  const w = (canvas.width = canvas.clientWidth * devicePixelRatio);
  const h = (canvas.height = 120 * devicePixelRatio);
  ctx.clearRect(0, 0, w, h);
  if (!values.length) return;
  const top = Math.max(max || Math.max(...values), 1e-9);
  ctx.strokeStyle = getComputedStyle(document.documentElement).getPropertyValue(color);
  ctx.lineWidth = 2 * devicePixelRatio;
  ctx.beginPath();
  values.forEach((v, i) => {
    const x = values.length === 1 ? w : (i / (values.length - 1)) * w;
    const y = h - (v / top) * (h - 4) - 2;
    i ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
  });
  ctx.stroke();
}

function renderEndpoints(s) {
  if (!s.endpoints.length) return '<p class="muted">no server found on the default ports</p>';
  return s.endpoints.map((e) => {
    const models = e.models.map((m) => esc(m.name) + (m.size_bytes ? ` (${fmt(m.size_bytes / MIB, 0)} MiB)` : '')).join(', ') || 'no model loaded';
    const state = e.up ? (e.busy ? `${fmt(e.tok_s)} tok/s` : 'idle') : `down: ${esc(e.error || '')}`;
    const rss = e.rss_bytes ? ` · RSS ${fmt(e.rss_bytes / MIB, 0)} MiB` : '';
    return `<div><span class="${e.up ? 'up' : 'down'}">●</span> <b>${esc(e.kind || '?')}</b>${e.name ? ` <b>${esc(e.name)}</b>` : ''} ${esc(e.url)} — ${state}<br><span class="muted">${models}${rss}</span></div>`;
  }).join('');
}

function renderSnapshot(s) {
  $('toks').textContent = headline(s);
  document.title = `${headline(s)} · hearth`;
  $('endpoints').innerHTML = renderEndpoints(s);
  if (s.memory) {
    const m = s.memory, pct = (100 * m.used_bytes) / Math.max(m.total_bytes, 1);
    $('memory').textContent = `memory ${fmt(m.used_bytes / GIB)} / ${fmt(m.total_bytes / GIB)} GiB (${fmt(pct, 0)}%)`;
    $('memory-bar').style.width = `${pct}%`;
    $('mem-head').textContent = `mem ${fmt(pct, 0)}%`;
  }
  if (s.gpus) {
    $('gpu').textContent = s.gpus.NoGpu ? s.gpus.NoGpu : 'GPU ' + s.gpus.Gpus.map((g) => `${g.name} ${g.utilization_percent ?? '?'}% ${fmt((g.memory_used_bytes || 0) / GIB)} GiB ${g.power_watts ? fmt(g.power_watts, 0) + ' W' : ''} ${g.temperature_c ?? ''}°C`).join('; ');
  }
  $('temps').textContent = s.temperatures.length ? 'temp ' + s.temperatures.slice(0, 4).map((t) => `${t.label} ${fmt(t.celsius, 0)}°C`).join(', ') : 'temp: no sensors';
  const hottest = s.temperatures.reduce((a, t) => Math.max(a, t.celsius), -Infinity);
  $('temp-head').textContent = isFinite(hottest) ? `${fmt(hottest, 0)}°C` : '';
  $('cache').textContent = s.cache ? `cache ${s.cache.models} models, ${fmt(s.cache.size_bytes / GIB, 2)} GiB, ${fmt(s.cache.bytes_saved / MIB, 0)} MiB saved` : 'cache: no model store found';
  chart($('tok-chart'), s.tok_series, 0, '--line');
  chart($('mem-chart'), s.memory_series, 1, '--line2');
}

async function getJson(url) {
  const r = await fetch(url);
  const body = r.ok ? null : await r.text();
  if (r.status === 404 && body === 'no history database') throw new Error('no history: the dashboard runs with --no-history');
  if (!r.ok) throw new Error(`${url}: ${r.status} ${body}`);
  return r.json();
}

const when = (ms) => new Date(ms).toLocaleString();
const bytes = (b) => (b >= GIB ? `${fmt(b / GIB, 2)} GiB` : `${fmt(b / MIB, 0)} MiB`);
const unknown = '<span class="unknown" title="the server process was not found (remote, or not local to this machine)">unknown</span>';

// A line chart of (ms, value) points as inline SVG (parsed from markup, so no namespace URL is needed):
// the peak on top, the span's ends below, lines broken where the samples stop (the monitor was not running).
function lineChart(el, points, since, until, label, cls) {
  el.dataset.points = points.length;
  if (!points.length) { el.innerHTML = '<p class="muted">no samples in this range</p>'; return; }
  const w = Math.max(el.clientWidth, 300), h = 140, pad = 4, top = 18, bottom = 18;
  const max = Math.max(...points.map((p) => p[1]), 1e-9);
  const x = (t) => pad + ((t - since) / Math.max(until - since, 1)) * (w - 2 * pad);
  const y = (v) => top + (1 - v / max) * (h - top - bottom);
  // Samples older than a day are minute means: a gap is more than three minutes (or buckets) without one.
  const gap = Math.max((3 * (until - since)) / 600, 180000);
  const runs = [[]];
  points.forEach((p, i) => {
    if (i && p[0] - points[i - 1][0] > gap) runs.push([]);
    runs[runs.length - 1].push(`${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`);
  });
  const lines = runs.map((r) => (r.length > 1 ? `<polyline class="${cls}" points="${r.join(' ')}"/>` : `<circle class="${cls}" r="2" cx="${r[0].split(',')[0]}" cy="${r[0].split(',')[1]}"/>`)).join('');
  el.innerHTML = `<svg width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" role="img">
    <line class="grid" x1="${pad}" x2="${w - pad}" y1="${top}" y2="${top}"/><line class="grid" x1="${pad}" x2="${w - pad}" y1="${h - bottom}" y2="${h - bottom}"/>
    <text class="axis peak" x="${pad}" y="12">peak ${esc(label(max))}</text>
    <text class="axis" x="${pad}" y="${h - 4}">${esc(when(since))}</text><text class="axis" x="${w - pad}" y="${h - 4}" text-anchor="end">${esc(when(until))}</text>${lines}</svg>`;
}

// Output tok/s of the newest runs as horizontal bars, oldest on top; partial and failed runs in red.
function benchChart(el, runs) {
  const shown = runs.slice(0, 10).reverse();
  if (!shown.length) { el.innerHTML = '<p class="muted">no benchmarks yet: run hearth bench run, or press b in hearth dash</p>'; return; }
  const w = Math.max(el.clientWidth, 400), row = 22, labelW = 220, h = row * shown.length + 4;
  const max = Math.max(...shown.map((r) => r.output_tok_s), 1e-9);
  const bars = shown.map((r, i) => {
    const bw = Math.max(((w - labelW - 90) * r.output_tok_s) / max, 1);
    return `<text class="axis" x="0" y="${i * row + 15}">#${r.id} ${esc(r.model)} (${esc(r.status)})</text>
      <rect class="bench-bar${r.status === 'complete' ? '' : ' partial'}" x="${labelW}" y="${i * row + 4}" width="${bw.toFixed(1)}" height="${row - 8}"><title>${esc(r.endpoint)}</title></rect>
      <text class="axis" x="${labelW + bw + 6}" y="${i * row + 15}">${fmt(r.output_tok_s)} tok/s</text>`;
  }).join('');
  el.innerHTML = `<svg width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" role="img">${bars}</svg>`;
}

function renderSessions(sessions) {
  if (!sessions.length) return '<tr><td colspan="7" class="muted">no sessions in this range</td></tr>';
  return sessions.map((s) => `<tr><td>${esc(when(s.start_ms))}</td><td>${esc(s.model)}</td><td>${esc(s.endpoint)}</td><td>${esc(s.source)}</td><td>${s.tokens}</td><td>${fmt(s.server_tok_s ?? s.avg_tok_s)}</td><td>${s.peak_memory_bytes == null ? unknown : bytes(s.peak_memory_bytes)}</td></tr>`).join('');
}

async function loadHistory() {
  try {
    const v = await getJson(`/api/history?minutes=${$('range').value}`);
    lineChart($('tok-history'), v.tok_s, v.since_ms, v.until_ms, (m) => `${fmt(m)} tok/s`, 'line');
    lineChart($('mem-history'), v.memory_used_bytes, v.since_ms, v.until_ms, bytes, 'line2');
    $('sessions').tBodies[0].innerHTML = renderSessions(v.sessions);
  } catch (e) {
    for (const id of ['tok-history', 'mem-history']) $(id).innerHTML = `<p class="muted">${esc(e.message)}</p>`;
  }
}

async function loadTables() {
  try {
    const stats = await getJson('/api/models');
    $('model-stats').tBodies[0].innerHTML = stats.map((m) => `<tr><td>${esc(m.model)}</td><td>${m.sessions}</td><td>${m.tokens}</td><td>${fmt(m.avg_tok_s)}</td><td>${m.peak_memory_bytes == null ? unknown : bytes(m.peak_memory_bytes)}</td></tr>`).join('');
    const runs = await getJson('/api/benchmarks');
    benchChart($('bench-chart'), runs);
    $('benchmarks').tBodies[0].innerHTML = runs.map((r, i) => `<tr><td><input type="radio" name="a" value="${r.id}" ${i === 1 ? 'checked' : ''}></td><td><input type="radio" name="b" value="${r.id}" ${i === 0 ? 'checked' : ''}></td><td>${r.id}</td><td>${esc(r.model)}</td><td>${esc(r.endpoint)}</td><td>${esc(r.status)}</td><td>${fmt(r.output_tok_s)}</td><td>${fmt(r.ttft_ms.p50, 0)} ms</td><td>${fmt(r.tpot_ms.p50)} ms</td><td>${fmt(r.e2e_ms.p50, 0)} ms</td><td>${r.completed}/${r.requests}</td></tr>`).join('');
  } catch (e) {
    $('benchmarks').tBodies[0].innerHTML = `<tr><td colspan="11" class="muted">${esc(e.message)}</td></tr>`;
  }
}

$('compare-btn').addEventListener('click', async () => {
  const a = document.querySelector('input[name=a]:checked'), b = document.querySelector('input[name=b]:checked');
  if (!a || !b) return;
  const rows = await getJson(`/api/compare?a=${a.value}&b=${b.value}`);
  $('comparison').tHead.innerHTML = `<tr><th>metric</th><th>A #${esc(a.value)}</th><th>B #${esc(b.value)}</th><th>B/A</th><th>noise</th></tr>`;
  $('comparison').tBodies[0].innerHTML = rows.map((r) => `<tr><td>${esc(r.metric)}</td><td>${fmt(r.a, 2)}</td><td>${fmt(r.b, 2)}</td><td>${fmt(r.ratio, 2)}×</td><td>±${fmt(r.noise * 100)}%${r.within_noise ? ' (within noise)' : ''}</td></tr>`).join('');
});

const source = new EventSource('/api/events');
source.addEventListener('snapshot', (ev) => { $('conn').textContent = ''; renderSnapshot(JSON.parse(ev.data)); });
source.onerror = () => { $('conn').textContent = 'reconnecting…'; };
$('range').addEventListener('change', loadHistory);
loadTables();
loadHistory();
setInterval(() => { loadTables(); loadHistory(); }, 10000);
