// wawe ui: a live view of one environment.
// Built only from the JSON API in docs/ui-api.md; live updates come from the
// server-sent events of /api/stream (no polling). Every string from the
// server reaches the page as a text node (see `h`), never as HTML.
'use strict';

// ---------------------------------------------------------------- helpers

// h('div', {class, href, dataset, onclick, ...}, ...children) builds an
// element; strings and numbers become text nodes, arrays are flattened and
// null/false children are skipped.
function h(tag, attrs, ...kids) {
  return build(document.createElement(tag), attrs, kids);
}
// The same for SVG elements.
function s(tag, attrs, ...kids) {
  return build(document.createElementNS('http://www.w3.org/2000/svg', tag), attrs, kids);
}
function build(el, attrs, kids) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k === 'className' ? 'class' : k, v === true ? '' : String(v));
  }
  for (const k of kids.flat(Infinity)) {
    if (k == null || k === false) continue;
    el.append(k instanceof Node ? k : String(k));
  }
  return el;
}
const $ = (sel, root = document) => root.querySelector(sel);
const firstLine = (t) => String(t ?? '').split('\n')[0];
const pad = (n, w = 2) => String(n).padStart(w, '0');
const dash = () => h('span', { class: 'muted' }, '—');

// The server's clock, estimated from the last overview's `now`.
let clockOffset = 0;
const serverNow = () => Date.now() + clockOffset;

function fmtTime(ms, withMs) {
  if (!ms) return '—';
  const d = new Date(ms);
  let t = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  if (withMs) t += '.' + pad(d.getMilliseconds(), 3);
  if (d.toDateString() === new Date(serverNow()).toDateString()) return t;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${t}`;
}
function fmtDur(ms) {
  ms = Math.max(0, Math.round(ms));
  if (ms < 1000) return `${ms}ms`;
  const sec = Math.floor(ms / 1000);
  if (sec < 60) return `${sec}s`;
  const m = Math.floor(sec / 60);
  if (m < 60) return `${m}m ${pad(sec % 60)}s`;
  const hr = Math.floor(m / 60);
  if (hr < 24) return `${hr}h ${pad(m % 60)}m`;
  return `${Math.floor(hr / 24)}d ${hr % 24}h`;
}
function fmtRate(r) {
  if (!r) return '0/s';
  return r >= 100 ? `${Math.round(r)}/s` : r >= 1 ? `${r.toFixed(1)}/s` : `${r.toFixed(2)}/s`;
}
const iso = (ms) => (ms ? new Date(ms).toISOString() : '');
const timeEl = (ms, withMs) => (ms ? h('time', { title: iso(ms) }, fmtTime(ms, withMs)) : dash());
// Ages and countdowns are re-rendered by `tick` every half second.
const ageEl = (ms) => (ms ? h('span', { class: 'age', 'data-since': ms, title: iso(ms) }, ageText(ms)) : dash());
const untilEl = (ms) => (ms ? h('span', { class: 'until', 'data-until': ms, title: iso(ms) }, untilText(ms)) : dash());
const ageText = (ms) => `${fmtDur(serverNow() - ms)} ago`;
const untilText = (ms) => (ms - serverNow() > 0 ? `in ${fmtDur(ms - serverNow())}` : 'expired');
function tick() {
  for (const el of document.querySelectorAll('[data-since]')) el.textContent = ageText(+el.dataset.since);
  for (const el of document.querySelectorAll('[data-until]')) {
    el.textContent = untilText(+el.dataset.until);
    el.classList.toggle('expired', +el.dataset.until <= serverNow());
  }
}
setInterval(tick, 500);

// `detail` is a JSON object encoded as a string; never trust it to parse.
function parseDetail(text) {
  try {
    const v = JSON.parse(text);
    return v && typeof v === 'object' ? v : { value: v };
  } catch {
    return {};
  }
}
// Pretty-prints JSON text; anything else is shown as it is.
function pretty(text) {
  if (text == null) return '';
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return String(text);
  }
}

// Names journaled by the environment itself rather than by an agent.
const NOT_AGENTS = new Set(['', 'env', 'operator']);
function agentLink(id) {
  if (id == null) return dash();
  if (NOT_AGENTS.has(id)) return h('span', { class: 'mono sys' }, id || '—');
  return h('a', { class: 'mono', href: `#/agents/${encodeURIComponent(id)}` }, id);
}
const taskLink = (id) => h('a', { class: 'mono', href: `#/tasks/${id}` }, `#${id}`);
const badge = (state) => h('span', { class: `badge state-${state}` }, state);
function joinNodes(nodes, sep = ', ') {
  return nodes.flatMap((n, i) => (i ? [sep, n] : [n]));
}
// A link for a journal subject: tasks, agents, signals and values.
function subjectLink(subject) {
  const [kind, ...rest] = subject.split('/');
  const name = rest.join('/');
  const href = {
    task: /^\d+$/.test(name) && `#/tasks/${name}`,
    agent: name && `#/agents/${encodeURIComponent(name)}`,
    signal: `#/signals?prefix=${encodeURIComponent(name)}`,
    value: `#/values?prefix=${encodeURIComponent(name)}`,
    lease: '#/leases',
  }[kind];
  return href ? h('a', { class: 'mono', href }, subject) : h('span', { class: 'mono' }, subject);
}

// A crash reason: the first line is the message, the rest a wasm backtrace
// whose frame lines are indented and dimmed.
function reasonPre(text) {
  return h('pre', { class: 'reason' },
    String(text).split('\n').map((line, i) => {
      const cls = i === 0 ? 'msg' : /^\s/.test(line) ? 'frame' : /backtrace/.test(line) ? 'bt' : 'line';
      return h('span', { class: cls }, line || ' ');
    }));
}

// ------------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}
function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v != null && v !== '') p.set(k, v);
  const t = p.toString();
  return t ? `?${t}` : '';
}
async function request(method, path, params) {
  const headers = { Accept: 'application/json' };
  if (method === 'POST') headers['X-Wawe-Action'] = '1';
  const res = await fetch(path + qs(params), { method, headers, credentials: 'same-origin' });
  let body = null;
  try {
    body = await res.json();
  } catch {
    /* an empty or non-JSON body: reported below */
  }
  if (!res.ok) {
    let msg = (body && body.error) || `${res.status} ${res.statusText}`;
    if (res.status === 401) msg += ' (open the page with the URL wawe ui printed, which carries ?token=)';
    throw new ApiError(res.status, msg);
  }
  return body;
}
const api = (path, params) => request('GET', path, params);

// Runs `fn` at most once per `ms` and never twice at once: triggers during a
// run or the quiet period fold into one later run.
function refresher(fn, ms = 1000) {
  let last = 0, timer = null, running = false, again = false;
  async function run() {
    timer = null;
    if (running) { again = true; return; }
    running = true;
    last = Date.now();
    try { await fn(); } catch (e) { console.warn(e); }
    running = false;
    if (again) { again = false; trigger(); }
  }
  function trigger() {
    if (!timer) timer = setTimeout(run, Math.max(0, last + ms - Date.now()));
  }
  trigger.cancel = () => { clearTimeout(timer); timer = null; again = false; };
  return trigger;
}

// ------------------------------------------------------------ app state

let overview = null; // the last /api/overview object
let view = null;     // the current view's controller
let routeGen = 0;    // bumped on every navigation; stale loads check it

const TASK_STATES = ['blocked', 'ready', 'claimed', 'done', 'dead', 'cancelled'];
const AGENT_STATES = ['running', 'crashed', 'failed', 'lost', 'exited', 'stopped'];

function setOverview(ov) {
  overview = ov;
  clockOffset = ov.now - Date.now();
  $('#where').textContent = `${ov.backend} · ${ov.location}`;
  $('#where').title = `durability ${ov.durability || 'set by each host'}, last seq ${ov.last_seq}`;
  for (const el of document.querySelectorAll('[data-nav-count]')) {
    const n = ov[el.dataset.navCount];
    el.textContent = n == null ? '' : String(n);
  }
}
let overviewAt = 0; // when /api/overview was last read (Date.now())
async function loadOverview() {
  setOverview(await api('/api/overview'));
  overviewAt = Date.now();
}
function markReady(name) {
  // The first view with its data on screen: "first paint", as benchmarks read it.
  if (!document.body.dataset.ready && performance.mark) performance.mark('wawe-ready');
  document.body.dataset.ready = '1';
  document.body.dataset.view = name;
}
function errorBox(err, retry) {
  return h('div', { class: 'error' },
    h('strong', null, 'Could not load: '), err.message || String(err), ' ',
    retry && h('button', { onclick: retry }, 'Try again'));
}

// A view is a function (ctx) => {load, onJournal?, onOverview?, destroy?};
// ctx.root is its element, ctx.q the hash's query, ctx.live() false once the
// person has navigated away (late answers are then dropped).
function route() {
  const hash = location.hash.replace(/^#\/?/, '');
  const [path, query = ''] = hash.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  const section = parts[0] || 'overview';
  if (view && view.destroy) view.destroy();
  const gen = ++routeGen;
  const root = h('div', { class: `view view-${section}` });
  $('#view').replaceChildren(h('div', { id: 'errors' }), root);
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.section === section);
  const ctx = { root, parts, q: new URLSearchParams(query), live: () => gen === routeGen };
  delete document.body.dataset.view; // set again once this view has its data
  const make = VIEWS[section] || notFoundView;
  document.title = `wawe · ${section}`;
  view = make(ctx);
  runLoad();
  window.scrollTo(0, 0);
}
// (Re)loads the current view, showing an error in it if that fails.
async function runLoad() {
  const v = view;
  try {
    await v.load();
    if (v === view) $('#errors').replaceChildren();
  } catch (e) {
    if (v === view) $('#errors').replaceChildren(errorBox(e, runLoad));
  }
}
function notFoundView(ctx) {
  return { load: async () => ctx.root.append(h('h1', null, 'Nothing here'), h('p', null, h('a', { href: '#/' }, 'Back to the overview'))) };
}
// Navigates to `section` with `params` (empty ones dropped).
function go(section, params) {
  const hash = `#/${section}${qs(params)}`;
  if (location.hash === hash) route(); // the same filter again: read it again
  else location.hash = hash;
}

// A filter form: inputs/selects given as [name, element]; submitting (or
// changing a select) navigates with the values as the hash query.
function filterForm(section, fields, extra) {
  const form = h('form', { class: 'filters' },
    fields.map(([label, el]) => h('label', null, label, ' ', el)),
    h('button', { type: 'submit' }, 'Apply'), extra);
  const submit = () => go(section, Object.fromEntries(fields.map(([, el]) => [el.name, el.value.trim()])));
  form.addEventListener('submit', (e) => { e.preventDefault(); submit(); });
  for (const [, el] of fields) if (el.tagName === 'SELECT') el.addEventListener('change', submit);
  return form;
}
function input(name, value, placeholder, attrs) {
  return h('input', { name, value: value || '', placeholder, autocomplete: 'off', spellcheck: 'false', ...attrs });
}
function select(name, value, options) {
  return h('select', { name }, options.map(([v, label]) =>
    h('option', { value: v, selected: v === (value || '') }, label)));
}
// "Next page" / "First page" links for cursor paging kept in the hash.
function pager(section, q, next) {
  const params = Object.fromEntries(q);
  return h('div', { class: 'pager' },
    q.get('after') && h('a', { href: `#/${section}${qs({ ...params, after: '' })}` }, '« first page'),
    next != null ? h('a', { href: `#/${section}${qs({ ...params, after: next })}` }, 'next page »') : h('span', { class: 'muted' }, 'end of list'));
}
// Column headers; those of number columns are right-aligned like their cells.
const NUM_COLS = new Set(['seq', 'restarts', 'priority', 'attempts', 'version', 'fence', 'token', ...TASK_STATES]);
const th = (t) => h('th', { class: NUM_COLS.has(t) ? 'num' : null }, t);
function table(headers, rows, cls) {
  return h('table', { class: cls || 'grid' },
    h('thead', null, h('tr', null, headers.map(th))),
    h('tbody', null, rows));
}
function emptyRow(cols, text) {
  return h('tr', { class: 'empty' }, h('td', { colspan: cols }, text));
}

// -------------------------------------------------------------- overview

// A throughput sparkline: the counter sampled at `at` (samples come only on
// changes, so between two the value is the earlier one) is read at the edges
// of `BINS` equal time bins up to `now`; each bin's slope is one bar.
function sparkline(at, vals, now, w = 120, hgt = 22) {
  const n = Math.min(at.length, vals.length);
  const a = at.slice(at.length - n), v = vals.slice(vals.length - n);
  if (n < 2) return h('span', { class: 'muted spark-empty' }, '—');
  const BINS = 30, t0 = a[0], end = Math.max(now, a[n - 1]), width = Math.max(1, (end - t0) / BINS);
  let i = 0;
  const valueAt = (t) => { while (i + 1 < n && a[i + 1] <= t) i++; return v[i]; };
  const rates = [];
  let prev = valueAt(t0);
  for (let b = 1; b <= BINS; b++) {
    const cur = valueAt(t0 + b * width);
    rates.push(Math.max(0, ((cur - prev) * 1000) / width));
    prev = cur;
  }
  const peak = Math.max(...rates, 1e-9);
  const bw = w / BINS;
  return s('svg', { class: 'spark', width: w, height: hgt, viewBox: `0 0 ${w} ${hgt}` },
    s('title', null, `peak ${fmtRate(peak)} over the last ${fmtDur(end - t0)}`),
    s('line', { x1: 0, x2: w, y1: hgt - 0.5, y2: hgt - 0.5, class: 'spark-base' }),
    rates.map((r, k) => r > 0 && s('rect', {
      x: (k * bw + 0.5).toFixed(1), width: Math.max(1, bw - 1).toFixed(1),
      y: (hgt - 1 - (r / peak) * (hgt - 2)).toFixed(1), height: ((r / peak) * (hgt - 2)).toFixed(1), class: 'spark-bar',
    })));
}
// The rate over about the last `win` ms.
function recentRate(at, vals, now, win = 10000) {
  const n = Math.min(at.length, vals.length);
  if (n < 2) return 0;
  const a = at.slice(at.length - n), v = vals.slice(vals.length - n);
  let j = n - 1;
  while (j > 0 && a[j] > now - win) j--;
  const dt = Math.max(now, a[n - 1]) - a[j];
  return dt > 0 ? ((v[n - 1] - v[j]) * 1000) / dt : 0;
}

// What a person looking for a stuck swarm should look at first, read from
// the overview's counts alone.
function attention(ov) {
  const t = ov.tasks || {}, a = ov.agents || {};
  const items = [];
  // A stopped host ended on purpose; a lost one, or an alive one silent past its ttl, needs a look.
  const lost = (ov.hosts || []).filter((x) => x.state === 'lost'
    || (x.state === 'alive' && x.heartbeat_age_ms > x.ttl_ms));
  if (lost.length) items.push([`${lost.length} host${lost.length > 1 ? 's' : ''} lost or silent: `, joinNodes(lost.map((x) => h('span', { class: 'mono' }, x.id)))]);
  const down = (a.crashed || 0) + (a.failed || 0) + (a.lost || 0);
  if (down) items.push([h('a', { href: '#/agents?state=crashed' }, `${down} agent${down > 1 ? 's' : ''}`), ' crashed, failed or lost']);
  if (t.dead) items.push([h('a', { href: '#/tasks?state=dead' }, `${t.dead} dead task${t.dead > 1 ? 's' : ''}`), ' (out of attempts)']);
  if (t.blocked && !t.ready && !t.claimed) items.push([h('a', { href: '#/tasks?state=blocked' }, `${t.blocked} blocked`), ' with nothing ready or claimed: are their dependencies dead?']);
  if (t.ready && !a.running) items.push([`${t.ready} ready task${t.ready > 1 ? 's' : ''} and no running agent`]);
  if (ov.waiters) items.push([h('a', { href: '#/leases' }, `${ov.waiters} waiting`), ' for leases']);
  return h('section', { class: 'card' }, h('h2', null, 'Needs a look'),
    h('ul', { class: 'attention' }, items.length ? items.map((x) => h('li', null, x)) : h('li', { class: 'ok' }, 'nothing stands out')));
}

function overviewView(ctx) {
  // Stable slots: render() refills them; the latest events card stays put
  // (re-attaching it would restart its rows' highlight).
  const head = h('div'), tasksSlot = h('div'), side = h('div', { class: 'side' });
  const recentCard = h('section', { class: 'card' },
    h('h2', null, 'Latest events ', h('a', { href: '#/journal', class: 'small' }, 'journal »')),
    table(['seq', 'time', 'agent', 'kind', 'subject', 'detail'], [], 'grid journal recent'));
  ctx.root.append(head, h('div', { class: 'cols' }, h('div', { class: 'wide' }, tasksSlot, recentCard), side));
  function stat(label, key, value, extra) {
    return h('div', { class: 'stat' },
      h('div', { class: 'stat-label' }, label),
      h('div', { class: 'stat-value' }, h('span', { 'data-count': key }, String(value ?? 0))), extra);
  }
  function render() {
    const ov = overview;
    const hist = ov.history || { at: [], seq: [], done: {} };
    const evRate = recentRate(hist.at, hist.seq, ov.now);
    const tasks = ov.tasks || {};
    const agents = ov.agents || {};
    const agentStates = [...AGENT_STATES, ...Object.keys(agents).filter((k) => !AGENT_STATES.includes(k))];
    const queueRows = (ov.queues || []).map((q) => {
      const done = (hist.done || {})[q.queue] || [];
      return h('tr', { 'data-queue': q.queue },
        h('td', null, h('a', { class: 'mono', href: `#/tasks${qs({ queue: q.queue })}` }, q.queue)),
        TASK_STATES.map((st) => h('td', { class: `num ${q[st] ? `c-${st}` : 'zero'}`, 'data-state': st },
          h('a', { href: `#/tasks${qs({ queue: q.queue, state: st })}` }, String(q[st] || 0)))),
        h('td', { class: 'spark-cell' }, sparkline(hist.at, done, ov.now),
          h('span', { class: 'rate' }, fmtRate(recentRate(hist.at, done, ov.now)))));
    });
    const hostRows = (ov.hosts || []).map((ho) => h('tr', null,
      h('td', { title: `pid ${ho.pid}, started ${fmtTime(ho.started_at)}` }, h('span', { class: 'mono' }, ho.id), ' ',
        h('span', { class: 'muted' }, `${ho.hostname}:${ho.pid}`)),
      h('td', { class: ho.heartbeat_age_ms > ho.ttl_ms ? 'warn' : '', title: `ttl ${fmtDur(ho.ttl_ms)}` }, ageEl(ov.now - ho.heartbeat_age_ms)),
      h('td', null, badge(ho.state))));
    head.replaceChildren(
      h('div', { class: 'env-line' },
        h('span', { class: 'mono strong' }, ov.location), ' ',
        h('span', { class: 'pill' }, ov.backend), h('span', { class: 'pill', title: ov.durability ? 'how hard each commit is pushed to disk' : 'each host running agents sets its own; this view runs apart from them' }, `durability: ${ov.durability || 'set by each host'}`),
        h('span', { class: 'pill' }, `last seq ${ov.last_seq}`),
        h('span', { class: `pill ${ov.actions ? 'pill-on' : ''}` }, ov.actions ? 'operator actions on' : 'read-only')),
      h('div', { class: 'stats' },
        stat('Journal events', 'events', ov.events,
          h('div', { class: 'stat-extra' }, sparkline(hist.at, hist.seq, ov.now, 110, 20), h('span', { class: 'rate' }, `${fmtRate(evRate).replace('/s', '')} ev/s`))),
        h('a', { href: '#/leases', class: 'stat-link' }, stat('Leases held', 'leases', ov.leases)),
        h('a', { href: '#/leases', class: 'stat-link' }, stat('Waiting in line', 'waiters', ov.waiters)),
        h('a', { href: '#/learnings', class: 'stat-link' }, stat('Learnings', 'learnings', ov.learnings)),
        h('a', { href: '#/signals', class: 'stat-link' }, stat('Signal trails', 'signals', ov.signals)),
        h('a', { href: '#/values', class: 'stat-link' }, stat('Values', 'values', ov.values))));
    tasksSlot.replaceChildren(h('section', { class: 'card' },
      h('h2', null, 'Tasks'),
      h('div', { class: 'chips' }, TASK_STATES.map((st) =>
        h('a', { class: `chip state-${st} ${tasks[st] ? '' : 'zero'}`, href: `#/tasks${qs({ state: st })}` },
          h('b', { 'data-count': `tasks.${st}` }, String(tasks[st] || 0)), ` ${st}`))),
      table(['queue', ...TASK_STATES, 'throughput (done/s)'],
        queueRows.length ? queueRows : emptyRow(8, 'no queues yet'), 'grid queues')));
    side.replaceChildren(
      h('section', { class: 'card' },
        h('h2', null, 'Agents'),
        h('div', { class: 'chips' }, agentStates.map((st) =>
          h('a', { class: `chip state-${st} ${agents[st] ? '' : 'zero'}`, href: `#/agents${qs({ state: st })}` },
            h('b', { 'data-count': `agents.${st}` }, String(agents[st] || 0)), ` ${st}`)))),
      attention(ov),
      h('section', { class: 'card' },
        h('h2', null, 'Hosts'),
        table(['host', 'last heartbeat', 'state'], hostRows.length ? hostRows : emptyRow(3, 'no hosts'))));
  }
  const RECENT = 12;
  const recentBody = () => $('tbody', recentCard);
  return {
    async load() {
      // (start and resync have just read the overview: no need to again)
      const fresh = overview && Date.now() - overviewAt < 1000;
      const [, r] = await Promise.all([fresh || loadOverview(), api('/api/events', { limit: RECENT })]);
      if (!ctx.live()) return;
      recentBody().replaceChildren(...r.events.map((e) => eventRow(e)));
      render();
      markReady('overview');
    },
    onOverview: render,
    onJournal(evs) {
      const body = recentBody();
      for (const e of evs.slice(-RECENT)) body.prepend(eventRow(e, true));
      while (body.children.length > RECENT) body.lastElementChild.remove();
    },
  };
}

// ---------------------------------------------------------------- agents

function agentsView(ctx) {
  if (ctx.parts[1] != null) return agentView(ctx, ctx.parts[1]);
  const q = ctx.q;
  const tbody = h('tbody');
  const foot = h('div');
  ctx.root.append(
    h('div', { class: 'head' }, h('h1', null, 'Agents'),
      filterForm('agents', [['state', select('state', q.get('state'), [['', 'any'], ...AGENT_STATES.map((x) => [x, x])])]])),
    h('table', { class: 'grid' },
      h('thead', null, h('tr', null, ['id', 'state', 'restarts', 'started', 'last seen', 'ended', 'end reason'].map(th))),
      tbody),
    foot);
  async function load() {
    const r = await api('/api/agents', { state: q.get('state'), after: q.get('after'), limit: 100 });
    if (!ctx.live()) return;
    tbody.replaceChildren(...(r.agents.length ? r.agents.map((a) => h('tr', { 'data-agent-id': a.id },
      h('td', null, agentLink(a.id)), h('td', null, badge(a.state)),
      h('td', { class: `num ${a.restarts ? '' : 'zero'}` }, a.restarts),
      h('td', null, timeEl(a.started_at)), h('td', null, a.state === 'running' ? ageEl(a.last_seen) : timeEl(a.last_seen)),
      h('td', null, timeEl(a.ended_at)),
      h('td', { class: 'clip', title: a.end_reason || '' }, a.end_reason ? firstLine(a.end_reason) : dash())))
      : [emptyRow(7, 'no agents')]));
    foot.replaceChildren(pager('agents', q, r.next));
    markReady('agents');
  }
  const refresh = refresher(load);
  return {
    load,
    onJournal: (evs) => { if (evs.some((e) => e.kind.startsWith('agent.'))) refresh(); },
    destroy: refresh.cancel,
  };
}

function holdingsTable(holdings) {
  return table(['resource', 'mode', 'token', 'time left'],
    holdings.length ? holdings.map((l) => h('tr', null,
      h('td', { class: 'mono' }, l.resource),
      h('td', null, h('span', { class: `mode mode-${l.mode}` }, l.mode)),
      h('td', { class: 'num mono' }, l.token), h('td', null, untilEl(l.expires_at))))
      : emptyRow(4, 'no leases'));
}

function agentView(ctx, id) {
  const body = h('div');
  ctx.root.append(body);
  let claimed = new Set();
  async function load() {
    let r;
    try {
      r = await api(`/api/agents/${encodeURIComponent(id)}`);
    } catch (e) {
      if (e.status !== 404) throw e;
      body.replaceChildren(h('h1', null, 'Agent ', h('span', { class: 'mono' }, id)),
        h('p', null, e.message, '. It may be the environment or a tool rather than an agent: see ',
          h('a', { href: `#/journal${qs({ agent: id })}` }, 'its journal events'), '.'));
      markReady('agent');
      return;
    }
    if (!ctx.live()) return;
    const a = r.agent;
    claimed = new Set(r.tasks.map((t) => t.id));
    const kv = [
      ['name', a.name], ['replica', a.replica], ['host', h('span', { class: 'mono' }, a.host)],
      ['digest', h('span', { class: 'mono', title: a.digest }, String(a.digest || '').slice(0, 19))],
      ['started', [timeEl(a.started_at), ' (', ageEl(a.started_at), ')']],
      ['last seen', ageEl(a.last_seen)], ['ended', timeEl(a.ended_at)], ['restarts', a.restarts],
    ];
    body.replaceChildren(
      h('div', { class: 'head' }, h('h1', null, 'Agent ', h('span', { class: 'mono' }, a.id), ' ', badge(a.state)),
        h('a', { href: `#/journal${qs({ agent: a.id })}` }, 'its journal events »')),
      h('div', { class: 'cols' },
        h('section', { class: 'card' }, h('h2', null, 'Fields'),
          h('dl', { class: 'kv' }, kv.map(([k, v]) => [h('dt', null, k), h('dd', null, v ?? dash())]))),
        h('section', { class: 'card wide' }, h('h2', null, 'End reason'),
          a.end_reason ? reasonPre(a.end_reason) : h('p', { class: 'muted' }, a.state === 'running' ? 'still running' : 'none recorded'))),
      h('section', { class: 'card' }, h('h2', null, `Leases it holds (${r.leases.length})`), holdingsTable(r.leases)),
      h('section', { class: 'card' }, h('h2', null, `Tasks it has claimed (${r.tasks.length})`),
        table(['id', 'queue', 'state', 'attempts', 'claim expires', 'payload'],
          r.tasks.length ? r.tasks.map((t) => h('tr', { 'data-task-id': t.id },
            h('td', null, taskLink(t.id)), h('td', { class: 'mono' }, t.queue), h('td', null, badge(t.state)),
            h('td', { class: 'num' }, `${t.attempts}/${t.max_attempts}`), h('td', null, untilEl(t.claim_expires_at)),
            h('td', { class: 'clip mono' }, firstLine(t.payload))))
            : emptyRow(6, 'no claimed tasks'))));
    markReady('agent');
  }
  const refresh = refresher(load);
  return {
    load,
    onJournal(evs) {
      if (evs.some((e) => e.agent === id || e.subject === `agent/${id}` ||
        (e.subject.startsWith('task/') && claimed.has(+e.subject.slice(5))))) refresh();
    },
    destroy: refresh.cancel,
  };
}

// ---------------------------------------------------------------- leases

// 'src/main.rs' -> ['src/', 'src/main.rs']; 'a/b/' -> ['a/', 'a/b/'].
function resourcePath(res) {
  const out = [];
  let i = 0;
  for (let j = res.indexOf('/'); j >= 0 && j < res.length - 1; j = res.indexOf('/', i)) {
    out.push(res.slice(0, j + 1));
    i = j + 1;
  }
  out.push(res);
  return out;
}

function leasesView(ctx) {
  const q = ctx.q;
  const body = h('div');
  ctx.root.append(
    h('div', { class: 'head' }, h('h1', null, 'Leases'),
      filterForm('leases', [['resource prefix', input('prefix', q.get('prefix'), 'src/')]])),
    body);
  let seen = null; // overview counts when last loaded
  async function load() {
    const r = await api('/api/leases', { prefix: q.get('prefix'), after: q.get('after'), limit: 1000 });
    if (!ctx.live()) return;
    seen = overview && `${overview.leases}/${overview.waiters}`;
    // Build the resource tree: every node is one path prefix.
    const rootNode = { children: new Map() };
    const node = (res) => {
      let n = rootNode;
      for (const p of resourcePath(res)) {
        if (!n.children.has(p)) n.children.set(p, { path: p, name: p.slice(n.path ? n.path.length : 0), children: new Map(), holds: [], waits: [] });
        n = n.children.get(p);
      }
      return n;
    };
    for (const l of r.holdings) node(l.resource).holds.push(l);
    // Waiters keep their place in the whole line; with a prefix, only those
    // asking for something under it (or above it: 'src/' covers 'src/lib/').
    const prefix = q.get('prefix') || '';
    const near = (res) => res.startsWith(prefix) || prefix.startsWith(res);
    const line = r.waiters.map((w, i) => [i + 1, w]).filter(([, w]) => w.resources.some(near));
    for (const [pos, w] of line) for (const res of w.resources.filter(near)) node(res).waits.push([pos, w]);
    const renderNode = (n) => h('li', null,
      h('div', { class: `tnode ${n.path.endsWith('/') ? 'dir' : 'file'} ${n.holds.length ? 'held' : ''}` },
        h('span', { class: 'tname mono', title: n.path }, n.name),
        n.holds.map((l) => h('span', { class: `hold mode-${l.mode}` },
          h('span', { class: `mode mode-${l.mode}` }, l.mode === 'exclusive' ? 'excl' : 'shared'), ' ',
          agentLink(l.holder), h('span', { class: 'tok', title: `lease ${l.lease}, fencing token ${l.token}` }, ` token ${l.token} `),
          untilEl(l.expires_at))),
        n.waits.map(([pos, w]) => h('span', { class: 'waitchip', title: `waiter ${w.id}, ${w.mode}` },
          h('b', null, `#${pos}`), ' waiting: ', agentLink(w.agent), ` ${w.mode}`))),
      n.children.size ? h('ul', null, [...n.children.values()].sort((x, y) => x.path.localeCompare(y.path)).map(renderNode)) : null);
    const top = [...rootNode.children.values()].sort((x, y) => x.path.localeCompare(y.path));
    body.replaceChildren(
      h('div', { class: 'cols' },
        h('section', { class: 'card wide' },
          h('h2', null, `Held resources (${r.holdings.length})`),
          top.length ? h('ul', { class: 'tree' }, top.map(renderNode)) : h('p', { class: 'muted' }, 'nothing is held'),
          pager('leases', q, r.next)),
        h('section', { class: 'card side' },
          h('h2', null, `Waiting in line (${line.length})`),
          line.length ? h('ol', { class: 'waiters' }, line.map(([pos, w]) => h('li', null,
            h('span', { class: 'pos', title: 'place in line' }, pos), agentLink(w.agent), ' ', h('span', { class: `mode mode-${w.mode}` }, w.mode), ' ',
            joinNodes(w.resources.map((x) => h('span', { class: 'mono res' }, x))),
            h('div', { class: 'muted small' }, 'gives up ', untilEl(w.deadline)))))
            : h('p', { class: 'muted' }, 'nobody is waiting'))));
    markReady('leases');
  }
  const refresh = refresher(load);
  return {
    load,
    onJournal: (evs) => { if (evs.some((e) => e.kind.startsWith('lease.'))) refresh(); },
    // Waiters join and leave without journal events of their own.
    onOverview: (ov) => { if (seen !== `${ov.leases}/${ov.waiters}`) refresh(); },
    destroy: refresh.cancel,
  };
}

// ----------------------------------------------------------------- tasks

function tasksView(ctx) {
  if (ctx.parts[1] != null) return taskView(ctx, ctx.parts[1]);
  const q = ctx.q;
  const queues = new Set((overview?.queues || []).map((x) => x.queue));
  if (q.get('queue')) queues.add(q.get('queue'));
  const tbody = h('tbody');
  const foot = h('div');
  ctx.root.append(
    h('div', { class: 'head' }, h('h1', null, 'Tasks'),
      filterForm('tasks', [
        ['queue', select('queue', q.get('queue'), [['', 'any'], ...[...queues].sort().map((x) => [x, x])])],
        ['state', select('state', q.get('state'), [['', 'any'], ...TASK_STATES.map((x) => [x, x])])]])),
    h('table', { class: 'grid' },
      h('thead', null, h('tr', null, ['id', 'queue', 'state', 'priority', 'attempts', 'claimed by', 'updated', 'last error'].map(th))),
      tbody),
    foot);
  let shown = new Set(), maxShown = 0, full = false;
  const LIMIT = 100;
  async function load() {
    const r = await api('/api/tasks', { queue: q.get('queue'), state: q.get('state'), after: q.get('after'), limit: LIMIT });
    if (!ctx.live()) return;
    shown = new Set(r.tasks.map((t) => t.id));
    maxShown = Math.max(0, ...shown);
    full = r.tasks.length >= LIMIT;
    tbody.replaceChildren(...(r.tasks.length ? r.tasks.map((t) => h('tr', { 'data-task-id': t.id },
      h('td', null, taskLink(t.id)), h('td', { class: 'mono' }, t.queue), h('td', null, badge(t.state)),
      h('td', { class: `num ${t.priority ? '' : 'zero'}` }, t.priority),
      h('td', { class: `num ${t.attempts > 1 ? 'warn' : ''}` }, `${t.attempts}/${t.max_attempts}`),
      h('td', null, t.claimed_by ? agentLink(t.claimed_by) : dash()),
      h('td', null, ageEl(t.updated_at)),
      h('td', { class: 'clip', title: t.last_error || '' }, t.last_error ? firstLine(t.last_error) : dash())))
      : [emptyRow(8, 'no tasks match')]));
    foot.replaceChildren(pager('tasks', q, r.next));
    markReady('tasks');
  }
  const refresh = refresher(load);
  return {
    load,
    onJournal(evs) {
      for (const e of evs) {
        const m = /^task\/(\d+)$/.exec(e.subject);
        if (!m) continue;
        const id = +m[1];
        if (shown.has(id)) return refresh();
        // A task not shown matters only on the first page, where it would fit.
        if (q.get('after') || (full && id > maxShown)) continue;
        const dq = parseDetail(e.detail).queue;
        if (q.get('queue') && dq && dq !== q.get('queue')) continue;
        return refresh();
      }
    },
    destroy: refresh.cancel,
  };
}

// The dependency graph: what it waits for on the left, the task in the
// middle, what waits for it on the right; each node links to its task.
function taskGraph(task, deps, dependents) {
  const MAX = 8, W = 150, H = 30, GAP = 10, COLS = [8, 236, 464], WIDTH = 622;
  const cut = (list) => (list.length > MAX ? [...list.slice(0, MAX - 1), { more: list.length - MAX + 1 }] : list);
  const cols = [cut(deps), [{ id: task.id, queue: task.queue, state: task.state, self: true }], cut(dependents)];
  const rows = Math.max(1, ...cols.map((c) => c.length));
  const height = rows * (H + GAP) + GAP;
  const pos = cols.map((c) => c.map((_, i) => (height - c.length * (H + GAP) + GAP) / 2 + i * (H + GAP)));
  const edge = (x1, y1, x2, y2) => s('path', { class: 'gedge', d: `M${x1} ${y1} C${x1 + 40} ${y1} ${x2 - 40} ${y2} ${x2} ${y2}`, 'marker-end': 'url(#arrow)' });
  const cy = pos[1][0] + H / 2;
  const edges = [
    ...pos[0].map((y) => edge(COLS[0] + W, y + H / 2, COLS[1] - 2, cy)),
    ...pos[2].map((y) => edge(COLS[1] + W, cy, COLS[2] - 2, y + H / 2)),
  ];
  const node = (n, x, y) => {
    if (n.more) return s('text', { x: x + W / 2, y: y + H / 2 + 4, class: 'gmore', 'text-anchor': 'middle' }, `+${n.more} more`);
    const q = n.queue.length > 11 ? `${n.queue.slice(0, 10)}…` : n.queue;
    const g = s('g', { class: `gnode state-${n.state} ${n.self ? 'self' : ''}` },
      s('title', null, `task ${n.id} (${n.queue}): ${n.state}`),
      s('rect', { x, y, width: W, height: H, rx: 5 }),
      s('text', { x: x + 8, y: y + 19, class: 'gid' }, `#${n.id}`),
      s('text', { x: x + 8 + 9 * String(n.id).length + 12, y: y + 19, class: 'gq' }, q),
      s('text', { x: x + W - 7, y: y + 19, class: 'gst', 'text-anchor': 'end' }, n.state));
    return n.self ? g : s('a', { href: `#/tasks/${n.id}` }, g);
  };
  return s('svg', { id: 'task-graph', class: 'graph', width: WIDTH, height, viewBox: `0 0 ${WIDTH} ${height}` },
    s('defs', null, s('marker', { id: 'arrow', viewBox: '0 0 8 8', refX: 7, refY: 4, markerWidth: 7, markerHeight: 7, orient: 'auto' },
      s('path', { d: 'M0 0 L8 4 L0 8 z', class: 'garrow' }))),
    edges,
    cols.map((c, ci) => c.map((n, i) => node(n, COLS[ci], pos[ci][i]))),
    !deps.length && s('text', { x: COLS[0] + W / 2, y: cy + 4, class: 'gmore', 'text-anchor': 'middle' }, 'depends on nothing'),
    !dependents.length && s('text', { x: COLS[2] + W / 2, y: cy + 4, class: 'gmore', 'text-anchor': 'middle' }, 'nothing depends on it'));
}

// One story event as a sentence (a list of nodes) plus, for long errors, the
// whole text to expand.
const CRASH = /^agent (\S+) (crashed|failed|lost|stopped|exited)(?::\s*([\s\S]*))?$/;
function storySentence(ev) {
  const d = parseDetail(ev.detail);
  const by = agentLink(ev.agent);
  const when = (ms) => h('time', { title: iso(ms) }, fmtTime(ms));
  const deps = Array.isArray(d.depends_on) ? d.depends_on : [];
  switch (ev.kind) {
    case 'task.pushed':
      return [['pushed by ', by, d.queue ? ` to ${d.queue}` : '', d.priority ? ` (priority ${d.priority})` : '',
        deps.length ? [', waiting for ', joinNodes(deps.map(taskLink))] : '',
        d.not_before > ev.at ? [', not before ', when(d.not_before)] : '']];
    case 'task.claimed':
      return [['claimed by ', by, ` (attempt ${d.attempt ?? '?'}, token ${d.token ?? '?'})`]];
    case 'task.extended':
      return [['claim extended by ', by, d.expires_at ? [' until ', when(d.expires_at)] : '']];
    case 'task.retried': {
      const err = String(d.error ?? '');
      const m = ev.agent === 'env' && CRASH.exec(err);
      const head = m
        ? [agentLink(m[1]), ` ${m[2]} holding it`, m[3] ? [': ', h('span', { class: 'err' }, firstLine(m[3]))] : '']
        : ['failed by ', by, err ? [': ', h('span', { class: 'err' }, firstLine(err))] : ''];
      const tail = h('div', { class: 'sub' }, 'retried after backoff until ', when(d.not_before),
        d.attempts != null ? ` (${d.attempts} attempt${d.attempts === 1 ? '' : 's'} so far)` : '');
      return [[head, tail], err.includes('\n') ? err : null];
    }
    case 'task.returned':
      return [['returned: ', d.why ?? 'its agent stopped', NOT_AGENTS.has(ev.agent) ? '' : [' (', by, ')']]];
    case 'task.completed':
      return [['completed by ', by]];
    case 'task.dead': {
      const err = String(d.error ?? '');
      return [[`dead after ${d.attempts ?? '?'} attempt${d.attempts === 1 ? '' : 's'}`,
        err ? [': ', h('span', { class: 'err' }, firstLine(err))] : ''], err.includes('\n') ? err : null];
    }
    case 'task.cancelled':
      if (d.because != null) return [['cancelled: it depends on ', taskLink(d.because), ', which will not finish']];
      if (d.by) return [['cancelled by ', agentLink(d.by), d.was ? ` (was ${d.was})` : '']];
      return [['cancelled']];
    case 'task.requeued':
      return [['put back by ', agentLink(d.by ?? ev.agent), d.was ? ` (was ${d.was}, now ${d.state})` : '']];
    case 'task.ready':
      return [['ready: ', d.after != null ? [taskLink(d.after), ' is done'] : 'its dependencies are done']];
    default:
      return [[ev.kind, ' by ', by, ' ', h('span', { class: 'mono muted' }, ev.detail)]];
  }
}
function storyItem(ev, prevAt) {
  const [sentence, full] = storySentence(ev);
  return h('li', { 'data-kind': ev.kind, 'data-seq': ev.seq, class: `k-${ev.kind.split('.').pop()}` },
    h('div', { class: 'when' }, h('time', { title: iso(ev.at) }, fmtTime(ev.at, true)),
      prevAt ? h('span', { class: 'delta' }, `+${fmtDur(ev.at - prevAt)}`) : null),
    h('div', { class: 'what' },
      h('span', { class: 'kind mono' }, ev.kind), ' ', h('span', { class: 'seq mono' }, `#${ev.seq}`),
      h('div', { class: 'sentence' }, sentence),
      full && h('details', null, h('summary', null, 'whole error'), reasonPre(full))));
}

function taskView(ctx, idText) {
  const id = Number(idText);
  const page = h('div', { id: 'task-page', 'data-task-id': idText });
  const top = h('div');
  const story = h('ol', { id: 'story', class: 'story' });
  const storyCount = h('span', { class: 'muted' });
  const storyNote = h('p', { class: 'muted', hidden: true });
  const storyCard = h('section', { class: 'card story-card' }, h('h2', null, 'Story ', storyCount), storyNote, story);
  ctx.root.append(page);
  page.append(top);
  // Story and details side by side when there is room.
  page.classList.add('task-layout');
  let lastSeq = 0, lastAt = 0, seen = new Set();
  function appendStory(evs) {
    for (const ev of evs) {
      if (ev.seq <= lastSeq) continue;
      story.append(storyItem(ev, lastAt));
      lastSeq = ev.seq; lastAt = ev.at; seen.add(ev.seq);
    }
    storyCount.textContent = `(${seen.size} event${seen.size === 1 ? '' : 's'})`;
  }
  // The fetched story is complete: rebuild it if the stream skipped some.
  function setStory(evs) {
    if (evs.some((e) => !seen.has(e.seq))) {
      story.replaceChildren();
      lastSeq = 0; lastAt = 0; seen = new Set();
    }
    appendStory(evs);
  }
  const actMsg = h('span', { class: 'act-msg' });
  async function act(what, btn) {
    btn.disabled = true;
    actMsg.textContent = '';
    try {
      await request('POST', `/api/tasks/${id}/${what}`);
    } catch (e) {
      actMsg.textContent = `${what} failed: ${e.message}`;
    }
    await load();
  }
  function renderTop(r) {
    const t = r.task;
    const actions = overview?.actions;
    const pre = (label, text, cls) => h('section', { class: 'card' }, h('h2', null, label),
      text != null && text !== '' ? h('pre', { class: `box ${cls || ''}` }, pretty(text)) : h('p', { class: 'muted' }, 'none'));
    const kv = [
      ['queue', h('a', { class: 'mono', href: `#/tasks${qs({ queue: t.queue })}` }, t.queue)],
      ['attempts', `${t.attempts} of ${t.max_attempts}`], ['priority', t.priority],
      ['claimed by', t.claimed_by ? [agentLink(t.claimed_by), ' · claim ends ', untilEl(t.claim_expires_at)] : dash()],
      ['not before', t.not_before > serverNow() ? [timeEl(t.not_before), ' (', untilEl(t.not_before), ')'] : timeEl(t.not_before)],
      ['dedupe key', t.dedupe_key ? h('span', { class: 'mono' }, t.dedupe_key) : dash()],
      ['created', [timeEl(t.created_at), ' (', ageEl(t.created_at), ')']],
      ['updated', [timeEl(t.updated_at), ' (', ageEl(t.updated_at), ')']],
    ];
    top.replaceChildren(
      h('div', { class: 'head' },
        h('h1', null, 'Task ', h('span', { class: 'mono' }, `#${t.id}`), ' ', badge(t.state)),
        actions && ['dead', 'cancelled'].includes(t.state) && h('button', { class: 'act', onclick: (e) => act('retry', e.currentTarget) }, 'Retry'),
        actions && ['blocked', 'ready', 'claimed'].includes(t.state) && h('button', { class: 'act danger', onclick: (e) => act('cancel', e.currentTarget) }, 'Cancel'),
        actMsg),
      h('section', { class: 'card' }, h('dl', { class: 'kv' }, kv.map(([k, v]) => [h('dt', null, k), h('dd', null, v)]))),
      h('section', { class: 'card' }, h('h2', null, 'Dependencies'),
        h('div', { class: 'graph-wrap' }, taskGraph(t, r.depends_on || [], r.dependents || []))),
      t.last_error ? h('section', { class: 'card' }, h('h2', null, 'Last error'), reasonPre(t.last_error)) : null,
      pre('Payload', t.payload),
      t.state === 'done' || t.result != null ? pre('Result', t.result) : null);
  }
  async function load() {
    const r = await api(`/api/tasks/${encodeURIComponent(idText)}`);
    if (!ctx.live()) return;
    document.title = `wawe · task ${r.task.id}`;
    renderTop(r);
    if (!storyCard.isConnected) page.append(storyCard);
    setStory(r.story || []);
    storyNote.hidden = !r.story_cut_short;
    storyNote.replaceChildren('Only the start of this story is shown: the task lived through more journal events than one look reads. ',
      h('a', { href: `#/journal${qs({ subject: `task/${id}` })}` }, 'The journal filtered by its subject'), ' has all of it.');
    markReady('task');
  }
  const refresh = refresher(load);
  return {
    load,
    onJournal(evs) {
      const mine = evs.filter((e) => e.subject === `task/${id}`);
      if (!mine.length) return;
      appendStory(mine);
      refresh();
    },
    destroy: refresh.cancel,
  };
}

// --------------------------------------------------------------- signals

function signalsView(ctx) {
  const q = ctx.q;
  const list = h('div', { class: 'signals' });
  const note = h('p', { class: 'muted small' });
  ctx.root.append(
    h('div', { class: 'head' }, h('h1', null, 'Signals'),
      filterForm('signals', [['trail prefix', input('prefix', q.get('prefix'), 'found/')]])),
    note,
    h('section', { class: 'card' }, list));
  let rows = [], fetched = 0, scale = 1;
  // Redraws every bar at its strength now: strength * 0.5^(elapsed/half-life).
  function animate() {
    const dt = Date.now() - fetched;
    for (const r of rows) {
      const v = r.half_life_ms > 0 ? r.strength * 0.5 ** (dt / r.half_life_ms) : r.strength;
      r.fill.style.width = `${Math.max(0, (v / scale) * 100).toFixed(2)}%`;
      r.num.textContent = v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(2) : v.toFixed(3);
    }
  }
  const timer = setInterval(animate, 100);
  async function load() {
    const r = await api('/api/signals', { prefix: q.get('prefix'), limit: 500 });
    if (!ctx.live()) return;
    fetched = Date.now();
    scale = Math.max(1e-9, ...r.signals.map((x) => x.strength));
    rows = r.signals.map((x) => ({ ...x, fill: h('div', { class: 'fill' }), num: h('span', { class: 'snum mono' }) }));
    list.replaceChildren(...(rows.length ? rows.map((x) => h('div', { class: 'srow' },
      h('a', { class: 'strail mono', href: `#/journal${qs({ subject: `signal/${x.trail}` })}`, title: x.trail }, x.trail),
      h('div', { class: 'bar' }, x.fill), x.num,
      h('span', { class: 'muted small hl' }, `half-life ${fmtDur(x.half_life_ms)}`)))
      : [h('p', { class: 'muted' }, 'no signal trails')]));
    note.textContent = `${rows.length} trail${rows.length === 1 ? '' : 's'}, strongest first, bars scaled to the strongest when read; they fade as you watch.`;
    animate();
    markReady('signals');
  }
  const refresh = refresher(load);
  return {
    load,
    onJournal: (evs) => { if (evs.some((e) => e.kind.startsWith('signal.'))) refresh(); },
    destroy: () => { clearInterval(timer); refresh.cancel(); },
  };
}

// ------------------------------------------------------------- learnings

function learningsView(ctx) {
  const q = ctx.q;
  const list = h('div', { class: 'learnings' });
  ctx.root.append(
    h('div', { class: 'head' }, h('h1', null, 'Learnings'),
      filterForm('learnings', [['search', input('q', q.get('q'), 'words to search for', { type: 'search', size: 32 })]],
        q.get('q') && h('a', { href: '#/learnings' }, 'newest'))),
    list);
  async function load() {
    const r = await api('/api/learnings', { q: q.get('q'), limit: 100 });
    if (!ctx.live()) return;
    list.replaceChildren(...(r.learnings.length ? r.learnings.map((l) => h('article', { class: 'card learning' },
      h('div', { class: 'lhead' }, h('span', { class: 'topic' }, l.topic),
        h('span', { class: 'muted small' }, 'by ', agentLink(l.author), ' · ', ageEl(l.created_at),
          ` · ${l.endorsements} endorsement${l.endorsements === 1 ? '' : 's'}`,
          q.get('q') ? ` · score ${Number(l.score).toFixed(3)}` : '')),
      h('div', { class: 'lbody' }, l.body),
      l.tags.length ? h('div', { class: 'tags' }, l.tags.map((t) => h('span', { class: 'tag' }, t))) : null))
      : [h('p', { class: 'muted' }, q.get('q') ? 'nothing matches' : 'no learnings yet')]));
    markReady('learnings');
  }
  const refresh = refresher(load);
  return {
    load,
    onJournal: (evs) => { if (evs.some((e) => e.kind.startsWith('learning.'))) refresh(); },
    destroy: refresh.cancel,
  };
}

// ---------------------------------------------------------------- values

function valuesView(ctx) {
  const q = ctx.q;
  const tbody = h('tbody');
  const foot = h('div');
  ctx.root.append(
    h('div', { class: 'head' }, h('h1', null, 'Values'),
      filterForm('values', [['key prefix', input('prefix', q.get('prefix'), 'config/')]])),
    h('table', { class: 'grid' },
      h('thead', null, h('tr', null, ['key', 'value', 'version', 'fence', 'updated by', 'updated'].map(th))),
      tbody),
    foot);
  let keys = new Set();
  // Long values show their start; a click shows them whole (pretty if JSON).
  function valueCell(v) {
    const text = String(v);
    if (text.length <= 100 && !text.includes('\n')) return h('td', { class: 'mono val' }, text);
    const cell = h('td', { class: 'mono val' });
    const short = () => cell.replaceChildren(h('span', null, `${text.replace(/\s+/g, ' ').slice(0, 100)}… `),
      h('button', { class: 'link', onclick: full }, `more (${text.length} chars)`));
    const full = () => cell.replaceChildren(h('pre', { class: 'box' }, pretty(text)), h('button', { class: 'link', onclick: short }, 'less'));
    short();
    return cell;
  }
  async function load() {
    const r = await api('/api/values', { prefix: q.get('prefix'), after: q.get('after'), limit: 100 });
    if (!ctx.live()) return;
    keys = new Set(r.values.map((v) => v.key));
    tbody.replaceChildren(...(r.values.length ? r.values.map((v) => h('tr', { 'data-key': v.key },
      h('td', { class: 'mono' }, v.key), valueCell(v.value), h('td', { class: 'num' }, v.version),
      h('td', { class: `num ${v.fence ? '' : 'zero'}` }, v.fence), h('td', null, agentLink(v.updated_by)),
      h('td', null, ageEl(v.updated_at))))
      : [emptyRow(6, 'no values')]));
    foot.replaceChildren(pager('values', q, r.next));
    markReady('values');
  }
  const refresh = refresher(load);
  return {
    load,
    onJournal(evs) {
      if (evs.some((e) => e.kind.startsWith('value.') && (!q.get('after') || keys.has(e.subject.slice(6))))) refresh();
    },
    destroy: refresh.cancel,
  };
}

// --------------------------------------------------------------- journal

// One journal event as a table row; a click unfolds its detail.
function eventRow(e, fresh) {
  return h('tr', { 'data-seq': e.seq, class: fresh ? 'fresh' : null, onclick: (ev) => {
    if (ev.target.tagName !== 'A') ev.currentTarget.classList.toggle('open');
  } },
  h('td', { class: 'num mono' }, e.seq), h('td', { class: 'mono nowrap' }, timeEl(e.at, true)),
  h('td', null, agentLink(e.agent)), h('td', { class: `mono kind k-${e.kind.split('.')[0]}` }, e.kind),
  h('td', null, subjectLink(e.subject)), h('td', { class: 'mono detail', title: e.detail }, e.detail));
}

function journalView(ctx) {
  const q = ctx.q;
  const f = { kind: q.get('kind') || '', agent: q.get('agent') || '', subject: q.get('subject') || '' };
  const MAX_ROWS = 2000, PAGE = 200;
  const matches = (e) => e.kind.startsWith(f.kind) && (!f.agent || e.agent === f.agent) && e.subject.startsWith(f.subject);
  const tbody = h('tbody');
  const foot = h('div', { class: 'pager' });
  const pauseBtn = h('button', { id: 'journal-pause', type: 'button', onclick: togglePause }, 'Pause');
  const status = h('span', { class: 'muted small' });
  const kinds = h('datalist', { id: 'kinds' },
    ['task.', 'lease.', 'agent.', 'host.', 'signal.', 'value.', 'learning.'].map((k) => h('option', { value: k })));
  ctx.root.append(
    h('div', { class: 'head' }, h('h1', null, 'Journal'),
      filterForm('journal', [
        ['kind', input('kind', f.kind, 'task.', { list: 'kinds', size: 14 })],
        ['agent', input('agent', f.agent, 'exact id', { size: 18 })],
        ['subject', input('subject', f.subject, 'task/7', { size: 14 })]],
        [(f.kind || f.agent || f.subject) && h('a', { href: '#/journal' }, 'clear'), kinds]),
      pauseBtn, status),
    h('table', { class: 'grid journal' },
      h('thead', null, h('tr', null, ['seq', 'time', 'agent', 'kind', 'subject', 'detail'].map(th))),
      tbody),
    foot);

  // While paused, new events wait in `pending` (and are only counted past
  // MAX_ROWS: resuming then reads the page again).
  let paused = false, pending = [], pendingCount = 0, pendingSkipped = 0;
  let maxSeq = 0, older = null, moreOlder = false, loading = true, early = [];
  const row = eventRow;
  function showFoot() {
    const shown = tbody.querySelectorAll('tr[data-seq]').length;
    status.textContent = `${shown} shown${paused ? '' : ', live'}`;
    if (!moreOlder) return foot.replaceChildren(h('span', { class: 'muted' }, 'start of the journal'));
    const noneYet = !tbody.querySelector('tr[data-seq]');
    foot.replaceChildren(h('button', { type: 'button', onclick: loadOlder },
      noneYet ? `Nothing matched yet: keep looking from seq ${older}` : `Older (before seq ${older})`));
  }
  function skippedRow(n) {
    return h('tr', { class: 'skipped' }, h('td', { colspan: 6 },
      `${n} event${n === 1 ? ' was' : 's were'} not streamed here (the page fell behind). `,
      h('button', { type: 'button', class: 'link', onclick: runLoad }, 'reload')));
  }
  // Live events arrive oldest first: the newest ends on top.
  function insert(evs, skipped) {
    const frag = document.createDocumentFragment();
    for (const e of evs) {
      if (e.seq <= maxSeq) continue;
      maxSeq = e.seq;
      frag.prepend(row(e, true));
    }
    if (skipped) frag.append(skippedRow(skipped));
    tbody.prepend(frag);
    tbody.querySelector('tr.empty')?.remove();
    let dropped = false;
    while (tbody.children.length > MAX_ROWS) { tbody.lastElementChild.remove(); dropped = true; }
    if (dropped) {
      const last = [...tbody.querySelectorAll('tr[data-seq]')].pop();
      older = last ? +last.dataset.seq : older;
      moreOlder = true;
    }
    showFoot();
  }
  function togglePause() {
    paused = !paused;
    if (!paused) {
      const evs = pending, sk = pendingSkipped, overflow = pendingCount > evs.length;
      pending = []; pendingCount = 0; pendingSkipped = 0;
      if (overflow) runLoad(); else insert(evs, sk);
    }
    updatePause();
  }
  function updatePause() {
    pauseBtn.textContent = paused ? (pendingCount ? `Resume (${pendingCount} new)` : 'Resume') : 'Pause';
    pauseBtn.classList.toggle('on', paused);
    showFoot();
  }
  async function fetchPage(before) {
    const r = await api('/api/events', { before, kind: f.kind, agent: f.agent, subject: f.subject, limit: PAGE });
    const seqs = r.events.map((e) => e.seq);
    // Read further back from whichever is lower: the oldest event or where the scan stopped.
    older = Math.min(r.scanned_to ?? Infinity, ...seqs);
    if (!Number.isFinite(older)) older = before ?? 0;
    moreOlder = !!r.more && older > 1;
    return r;
  }
  async function load() {
    loading = true;
    early = [];
    pending = []; pendingCount = 0; pendingSkipped = 0;
    const r = await fetchPage();
    if (!ctx.live()) return;
    maxSeq = Math.max(0, ...r.events.map((e) => e.seq));
    tbody.replaceChildren(...(r.events.length ? r.events.map((e) => row(e)) : [emptyRow(6, 'no events match (yet)')]));
    loading = false;
    insert(early, 0); // whatever the stream sent meanwhile
    early = [];
    updatePause();
    markReady('journal');
  }
  async function loadOlder() {
    const r = await fetchPage(older);
    if (!ctx.live()) return;
    tbody.querySelector('tr.empty')?.remove();
    tbody.append(...r.events.map((e) => row(e)));
    showFoot();
  }
  return {
    load,
    onJournal(data) {
      const evs = data.events.filter(matches);
      if (loading) return early.length < MAX_ROWS && early.push(...evs);
      if (paused) {
        pendingCount += evs.length;
        if (pending.length < MAX_ROWS) pending.push(...evs);
        pendingSkipped += data.skipped || 0;
        return updatePause();
      }
      if (evs.length || data.skipped) insert(evs, data.skipped || 0);
    },
    wantsRaw: true,
  };
}

// ---------------------------------------------------------------- stream

const VIEWS = {
  overview: overviewView, agents: agentsView, leases: leasesView, tasks: tasksView,
  signals: signalsView, learnings: learningsView, values: valuesView, journal: journalView,
};

function setLive(on, text) {
  const el = $('#conn');
  el.className = `conn ${on ? 'on' : 'off'}`;
  el.textContent = text;
  if (on) document.body.dataset.live = '1';
  else delete document.body.dataset.live;
}

// Everything the page shows is re-read after a resync or a reconnection.
async function resync() {
  try {
    await loadOverview();
    if (view && view.onOverview) view.onOverview(overview);
  } catch (e) {
    console.warn(e);
  }
  runLoad();
}

let retryMs = 1000;
let broken = false; // the stream dropped since the page last had it
let stream = null;
// A page the browser hides (navigated away, kept in its back/forward cache)
// gives its stream back: browsers allow six connections per server, and a
// kept stream would hold one of them for every page left behind.
window.addEventListener('pagehide', () => {
  if (stream) stream.close();
  stream = null;
});
window.addEventListener('pageshow', (e) => {
  if (e.persisted && !stream) {
    broken = true;
    connect();
  }
});
function connect() {
  const es = new EventSource('/api/stream');
  stream = es;
  es.addEventListener('open', () => {
    setLive(true, 'live');
    retryMs = 1000;
    if (broken) resync(); // events may have been missed while away
    broken = false;
  });
  es.addEventListener('error', () => {
    broken = true;
    setLive(false, 'reconnecting…');
    // The browser retries by itself unless the server refused the stream.
    if (es.readyState === EventSource.CLOSED && stream === es) {
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 30000);
    }
  });
  es.addEventListener('journal', (msg) => {
    let data;
    try { data = JSON.parse(msg.data); } catch { return; }
    if (!data || !Array.isArray(data.events)) return;
    if (!view || !view.onJournal) return;
    try {
      view.onJournal(view.wantsRaw ? data : data.events);
    } catch (e) {
      console.warn(e);
    }
  });
  es.addEventListener('overview', (msg) => {
    try {
      setOverview(JSON.parse(msg.data));
    } catch {
      return;
    }
    if (view && view.onOverview) view.onOverview(overview);
  });
  es.addEventListener('resync', () => resync());
}

async function start() {
  window.addEventListener('hashchange', route);
  // The stream first: every change after it joins reaches the page, so
  // nothing committed while the first data loads is missed.
  connect();
  try {
    await loadOverview();
  } catch (e) {
    // The views still try (and show the error) so the person sees why.
    console.warn(e);
  }
  route();
}
start();
