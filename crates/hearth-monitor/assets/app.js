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
    return `<div><span class="${e.up ? 'up' : 'down'}">●</span> <b>${esc(e.kind || '?')}</b> ${esc(e.url)} — ${state}<br><span class="muted">${models}${rss}</span></div>`;
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
  if (r.status === 404 && url.startsWith('/api/models')) throw new Error('no history: the dashboard runs with --no-history');
  if (!r.ok) throw new Error(`${url}: ${r.status} ${await r.text()}`);
  return r.json();
}

async function loadTables() {
  try {
    const stats = await getJson('/api/models');
    $('model-stats').tBodies[0].innerHTML = stats.map((m) => `<tr><td>${esc(m.model)}</td><td>${m.sessions}</td><td>${m.tokens}</td><td>${fmt(m.avg_tok_s)}</td><td>${m.peak_memory_bytes ? fmt(m.peak_memory_bytes / MIB, 0) + ' MiB' : '–'}</td></tr>`).join('');
    const runs = await getJson('/api/benchmarks');
    $('benchmarks').tBodies[0].innerHTML = runs.map((r, i) => `<tr><td><input type="radio" name="a" value="${r.id}" ${i === 1 ? 'checked' : ''}></td><td><input type="radio" name="b" value="${r.id}" ${i === 0 ? 'checked' : ''}></td><td>${r.id}</td><td>${esc(r.model)}</td><td>${esc(r.endpoint)}</td><td>${esc(r.status)}</td><td>${fmt(r.output_tok_s)}</td><td>${fmt(r.ttft_ms.p50, 0)} ms</td><td>${fmt(r.tpot_ms.p50)} ms</td><td>${fmt(r.e2e_ms.p50, 0)} ms</td><td>${r.completed}/${r.requests}</td></tr>`).join('');
  } catch (e) {
    $('benchmarks').tBodies[0].innerHTML = `<tr><td colspan="11" class="muted">${esc(e.message)}</td></tr>`;
  }
}

$('compare-btn').addEventListener('click', async () => {
  const a = document.querySelector('input[name=a]:checked'), b = document.querySelector('input[name=b]:checked');
  if (!a || !b) return;
  const rows = await getJson(`/api/compare?a=${a.value}&b=${b.value}`);
  $('comparison').tBodies[0].innerHTML = rows.map((r) => `<tr><td>${esc(r.metric)}</td><td>${fmt(r.a, 2)}</td><td>${fmt(r.b, 2)}</td><td>${fmt(r.ratio, 2)}×</td><td>±${fmt(r.noise * 100)}%${r.within_noise ? ' (within noise)' : ''}</td></tr>`).join('');
});

const source = new EventSource('/api/events');
source.addEventListener('snapshot', (ev) => { $('conn').textContent = ''; renderSnapshot(JSON.parse(ev.data)); });
source.onerror = () => { $('conn').textContent = 'reconnecting…'; };
loadTables();
setInterval(loadTables, 10000);
