// pushgate console: plain JavaScript, no framework. The admin key lives in this tab's
// sessionStorage and travels only in an Authorization header (the live stats stream is
// read with fetch() and a stream reader, not EventSource, which cannot send headers).
'use strict';

const KEY_STORE = 'pushgate.adminKey';
const $ = (sel) => document.querySelector(sel);
const CHART_SECONDS = 300;

const state = {
  key: sessionStorage.getItem(KEY_STORE),
  statsAbort: null,
  series: [], // deliveries/s, one per second, oldest first
  clientsTimer: null,
  cmdTimer: null,
  tenant: '',
};

// ---------------------------------------------------------------------------------
// small helpers

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v === true) e.setAttribute(k, '');
    else if (v !== false && v != null) e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function fillTable(table, rows) {
  const heads = [...table.tHead.rows[0].cells].map((th) => th.textContent);
  const tb = table.tBodies[0];
  tb.replaceChildren(...rows.map((cells) => el('tr', {}, ...cells.map((c, i) => el('td', { 'data-label': heads[i] }, c)))));
}

function fmtTime(ms) {
  if (ms == null) return '–';
  const d = new Date(ms);
  return d.toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'medium' });
}

function fmtRate(x) {
  return x >= 100 ? Math.round(x).toString() : x.toFixed(1);
}

/** Parses JSON text; returns {value} or {error}. Empty text is {value: undefined}. */
function parseJson(text) {
  if (!text.trim()) return { value: undefined };
  try {
    return { value: JSON.parse(text) };
  } catch (e) {
    return { error: e.message };
  }
}

function setError(id, msg) {
  const p = document.getElementById(id);
  if (!p) return;
  p.textContent = msg || '';
  const input = document.querySelector(`[aria-describedby~="${id}"]`);
  if (input) input.setAttribute('aria-invalid', msg ? 'true' : 'false');
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Calls the node's API with the admin key. Resolves the parsed body (null when empty). */
async function api(method, path, body, extraHeaders = {}) {
  const headers = { ...extraHeaders, Authorization: `Bearer ${state.key}` };
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  const text = await res.text();
  let doc = null;
  try { doc = text ? JSON.parse(text) : null; } catch { doc = { error: text }; }
  // a 403 here may be a tenant-bound key asking for another tenant: shown, not signed out
  // (the stats stream signs out when the key itself is refused)
  if (!res.ok) throw new ApiError(res.status, (doc && doc.error) || `HTTP ${res.status}`);
  return { status: res.status, doc, headers: res.headers };
}

// ---------------------------------------------------------------------------------
// sign in / out, navigation

async function signIn(key) {
  state.key = key;
  try {
    await api('GET', '/api/nodes');
  } catch (e) {
    state.key = null;
    throw e;
  }
  sessionStorage.setItem(KEY_STORE, key);
  showApp();
}

function signOut(message) {
  state.key = null;
  sessionStorage.removeItem(KEY_STORE);
  if (state.statsAbort) state.statsAbort.abort();
  state.statsAbort = null;
  clearInterval(state.clientsTimer);
  $('#app').hidden = true;
  $('#sign-out').hidden = true;
  $('#sign-in').hidden = false;
  $('#node-status').textContent = '';
  $('#sign-in-error').textContent = message || '';
  $('#api-key').value = '';
  $('#api-key').focus();
}

function showApp() {
  $('#sign-in').hidden = true;
  $('#app').hidden = false;
  $('#sign-out').hidden = false;
  startStats();
  route();
}

const VIEWS = ['overview', 'clients', 'compose', 'streams', 'devices'];

function route() {
  if (!state.key) return;
  const name = VIEWS.includes(location.hash.slice(1)) ? location.hash.slice(1) : 'overview';
  for (const v of VIEWS) {
    $(`#${v}`).hidden = v !== name;
    const tab = $(`#tab-${v}`);
    if (v === name) tab.setAttribute('aria-current', 'page');
    else tab.removeAttribute('aria-current');
  }
  clearInterval(state.clientsTimer);
  state.clientsTimer = null;
  if (name === 'clients') {
    loadClients();
    state.clientsTimer = setInterval(() => { if ($('#cl-auto').checked) loadClients(); }, 2000);
  }
  if (name === 'devices') loadDevices();
}

// ---------------------------------------------------------------------------------
// overview: the live stats stream

/** Reads text/event-stream from a fetch body; calls onEvent(type, data) per event. */
async function readSse(res, onEvent) {
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += dec.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
    let cut;
    while ((cut = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      let type = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (!line || line.startsWith(':')) continue;
        const i = line.indexOf(':');
        const field = i < 0 ? line : line.slice(0, i);
        const val = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
        if (field === 'event') type = val;
        else if (field === 'data') data.push(val);
      }
      if (data.length) onEvent(type, data.join('\n'));
    }
  }
}

async function startStats() {
  if (state.statsAbort) state.statsAbort.abort();
  const ctl = new AbortController();
  state.statsAbort = ctl;
  const live = $('#live');
  while (!ctl.signal.aborted && state.key) {
    try {
      const res = await fetch('/api/admin/stats/stream', {
        headers: { Authorization: `Bearer ${state.key}` }, signal: ctl.signal, cache: 'no-store',
      });
      if (res.status === 403) { signOut('The key was refused (403).'); return; }
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      live.textContent = 'live';
      live.className = 'badge ok';
      await readSse(res, (type, data) => { if (type === 'stats') showStats(JSON.parse(data)); });
    } catch (e) {
      if (ctl.signal.aborted) return;
    }
    live.textContent = 'reconnecting…';
    live.className = 'badge warn';
    $('#node-status').textContent = 'node unreachable';
    await new Promise((r) => setTimeout(r, 2000));
  }
}

function showStats(s) {
  const clients = Object.values(s.connections.byTransport).reduce((a, b) => a + b, 0);
  $('#st-health').textContent = s.health;
  $('#st-health').className = `value ${s.health === 'ready' ? 'good' : 'bad'}`;
  $('#st-clients').textContent = clients;
  $('#st-pushes').textContent = fmtRate(s.pushes.perSecond);
  $('#st-deliveries').textContent = fmtRate(s.deliveries.perSecond);
  $('#st-slow').textContent = s.slowConsumerCloses;
  $('#st-devq').textContent = `${s.devices.queued} queued, ${s.devices.inFlight} in flight`;
  $('#node-status').textContent = `node ${s.nodeId}: ${s.health}`;
  fillTable($('#nodes-table'), s.nodes.map((n) => [n.nodeId, n.applicationId, n.workers, n.connections]));
  const byT = Object.entries(s.connections.byTransport).sort();
  fillTable($('#transport-table'), byT.length ? byT : [['(none)', 0]]);
  const byTen = Object.entries(s.connections.byTenant).sort().map(([t, n]) => [t || '(no tenant)', n]);
  fillTable($('#tenant-table'), byTen.length ? byTen : [['(none)', 0]]);
  const missing = s.connections.nodesMissing || [];
  $('#stats-missing').hidden = missing.length === 0;
  $('#stats-missing').textContent = missing.length ? `nodesMissing: ${missing.join(', ')} (their clients are not counted)` : '';
  state.series.push(s.deliveries.perSecond);
  if (state.series.length > CHART_SECONDS) state.series.shift();
  drawChart();
}

function drawChart() {
  const c = $('#chart');
  const w = c.clientWidth || 800;
  const h = c.clientHeight || 160;
  const dpr = window.devicePixelRatio || 1;
  if (c.width !== Math.round(w * dpr)) { c.width = Math.round(w * dpr); c.height = Math.round(h * dpr); }
  const g = c.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const data = state.series;
  const max = Math.max(1, ...data);
  const css = getComputedStyle(document.documentElement);
  g.strokeStyle = css.getPropertyValue('--line').trim() || '#ccc';
  g.fillStyle = css.getPropertyValue('--muted').trim() || '#666';
  g.font = '12px system-ui, sans-serif';
  g.lineWidth = 1;
  for (const f of [0, 0.5, 1]) {
    const y = Math.round(h - 16 - f * (h - 28)) + 0.5;
    g.beginPath(); g.moveTo(40, y); g.lineTo(w, y); g.stroke();
    g.fillText(fmtRate(max * f), 2, y + 4);
  }
  g.fillText(`−${CHART_SECONDS / 60} min`, 40, h - 2);
  g.fillText('now', w - 26, h - 2);
  if (data.length > 1) {
    const step = (w - 40) / (CHART_SECONDS - 1);
    const x0 = w - (data.length - 1) * step;
    g.strokeStyle = css.getPropertyValue('--accent').trim() || '#06c';
    g.lineWidth = 2;
    g.beginPath();
    data.forEach((v, i) => {
      const x = x0 + i * step;
      const y = h - 16 - (v / max) * (h - 28);
      if (i) g.lineTo(x, y); else g.moveTo(x, y);
    });
    g.stroke();
  }
  const last = data.length ? data[data.length - 1] : 0;
  $('#chart-desc').textContent = `Now ${fmtRate(last)} deliveries/s; peak ${fmtRate(Math.max(0, ...data))} over the last ${Math.ceil(data.length / 60)} min.`;
}

// ---------------------------------------------------------------------------------
// clients

const PATTERN_FIELDS = [
  ['clientIdPattern', 'cl-client', 'pr-client'],
  ['rolePattern', 'cl-role', 'pr-role'],
  ['sessionIdPattern', 'cl-session', 'pr-session'],
];

/** Puts a 422 "<field>: message" at its field; returns whether it found one. */
function fieldError(message, map) {
  for (const [name, id] of Object.entries(map)) {
    if (message.startsWith(name + ':') || message.startsWith(name + ' ') || message.startsWith(name + '.')) {
      setError(id, message);
      return true;
    }
  }
  return false;
}

async function loadClients() {
  const q = new URLSearchParams();
  const errMap = {};
  for (const [name, id] of PATTERN_FIELDS) {
    const v = $(`#${id}`).value;
    if (v) q.set(name, v);
    errMap[name] = `${id}-err`;
    setError(`${id}-err`, '');
  }
  try {
    const { doc } = await api('GET', `/api/connections${q.size ? '?' + q : ''}`);
    // merged over the cluster: every node's rows, each with its node
    const list = doc.connections.sort((a, b) => a.connectedAt - b.connectedAt);
    fillTable($('#clients-table'), list.map((c) => [c.clientId, c.sessionId, c.user || '–', c.roles.join(', '),
      c.tenant || '–', c.transport + (c.topicsOnly ? ' (channels only)' : ''), c.node || '–', fmtTime(c.connectedAt)]));
    const n = doc.matched ?? list.length;
    const channelsOnly = list.filter((c) => c.topicsOnly).length;
    let text = `${n} client${n === 1 ? ' matches' : 's match'}: a push request with these patterns would reach ${n === 1 ? 'it' : 'them'}.`;
    if (channelsOnly) text += ` ${channelsOnly} of them subscribe to channels only and get channel pushes, not push requests.`;
    if (doc.truncated) text += ` Showing the first ${list.length}.`;
    if (doc.nodes !== undefined) text += ` Nodes answering: ${doc.nodes}.`;
    $('#clients-count').textContent = text;
    const missing = doc.nodesMissing || [];
    const warn = $('#clients-missing');
    warn.hidden = missing.length === 0;
    warn.textContent = missing.length ? `nodesMissing: ${missing.join(', ')} (their clients are not listed)` : '';
  } catch (e) {
    if (!fieldError(e.message, errMap)) $('#clients-count').textContent = e.message;
  }
}

// ---------------------------------------------------------------------------------
// compose

function validatePayload() {
  const r = parseJson($('#pr-payload').value);
  const msg = r.error ? `not valid JSON: ${r.error}` :
    (r.value === undefined || typeof r.value !== 'object' || Array.isArray(r.value) || r.value === null) ?
      'serviceRequest must be a JSON object' : '';
  setError('pr-payload-err', msg);
  return msg ? null : r.value;
}

async function sendPushRequest(ev) {
  ev.preventDefault();
  setError('pr-error', '');
  const payload = validatePayload();
  const timeout = Number($('#pr-timeout').value);
  const tmsg = Number.isInteger(timeout) && timeout >= 1 && timeout <= 60000 ? '' : 'timeout must be 1 to 60000 ms';
  setError('pr-timeout-err', tmsg);
  if (!payload || tmsg) return;
  const body = { serviceRequest: payload, options: { awaitAcks: $('#pr-acks').checked, timeoutMs: timeout, report: 'full' } };
  const errMap = { serviceRequest: 'pr-payload-err', options: 'pr-timeout-err' };
  for (const [name, , id] of PATTERN_FIELDS) {
    const v = $(`#${id}`).value;
    if (v) body[name] = v;
    errMap[name] = `${id}-err`;
    setError(`${id}-err`, '');
  }
  const btn = $('#pr-send');
  btn.disabled = true;
  btn.textContent = body.options.awaitAcks ? 'Waiting for acks…' : 'Sending…';
  try {
    const { doc } = await api('POST', '/api/push-requests', body);
    showReport(doc);
  } catch (e) {
    if (!fieldError(e.message, errMap)) setError('pr-error', e.message);
  } finally {
    btn.disabled = false;
    btn.textContent = 'Send push request';
  }
}

function showReport(doc) {
  const card = $('#report');
  card.hidden = false;
  $('#report-id').textContent = doc.pushId;
  const s = doc.summary || {};
  $('#report-summary').textContent = `matched ${s.matched}, delivered ${s.delivered}, failed ${s.failed}, acknowledged ${s.acknowledged}, nodes ${s.nodes}`;
  const missing = s.nodesMissing || [];
  $('#report-missing').textContent = missing.length ? `nodesMissing: ${missing.map((n) => n.nodeId || JSON.stringify(n)).join(', ')}` : 'nodesMissing: none';
  $('#report-missing').className = missing.length ? 'warn' : 'muted';
  fillTable($('#report-table'), (doc.responseMessages || []).map((m) => [m.clientId, m.sessionId,
    m.originId ? m.originId.nodeId : '–', m.successful ? 'yes' : 'no', m.message]));
}

async function sendChannelPush(ev) {
  ev.preventDefault();
  setError('ch-error', '');
  const channel = $('#ch-channel').value.trim();
  setError('ch-channel-err', channel ? '' : 'channel is required');
  const event = $('#ch-event').value.trim();
  setError('ch-event-err', event ? '' : 'event is required');
  const r = parseJson($('#ch-data').value);
  setError('ch-data-err', r.error ? `not valid JSON: ${r.error}` : (r.value === undefined ? 'data is required' : ''));
  if (!channel || !event || r.error || r.value === undefined) return;
  const body = { channel, event, data: r.value };
  try {
    // an operator wants to see whom it reached: wait for delivery (the default answer
    // comes once the push is queued and carries no count)
    const { headers } = await api('POST', '/api/push', body, { 'X-Push-Wait': 'delivered' });
    const n = Number(headers.get('x-push-subscribers'));
    $('#ch-result').textContent = `Sent push ${headers.get('x-push-id')}: reached ${n} subscriber${n === 1 ? '' : 's'}.`;
  } catch (e) {
    if (!fieldError(e.message, { channel: 'ch-channel-err', data: 'ch-data-err', event: 'ch-event-err' })) setError('ch-error', e.message);
  }
}

// ---------------------------------------------------------------------------------
// streams

const STREAM_FIELDS = ['name', 'description', 'publicSubscribe', 'subscriberRoles', 'events'];

function streamForm(id, stream, isNew) {
  const fid = (f) => `sf-${isNew ? 'new' : id}-${f}`.replace(/[^A-Za-z0-9_-]/g, '_');
  const field = (f, label, input) => el('div', { class: 'field' }, el('label', { for: fid(f) }, label), input,
    el('p', { id: `${fid(f)}-err`, class: 'error' }));
  const input = (f, value, extra = {}) => el('input', { id: fid(f), value: value ?? '', spellcheck: 'false', 'aria-describedby': `${fid(f)}-err`, ...extra });
  const form = el('form', { class: 'card stream', 'data-stream': id || '', novalidate: true },
    el('h3', {}, isNew ? 'New stream' : id),
    isNew ? field('id', 'id', input('id', '', { required: true })) : '',
    field('name', 'name', input('name', stream.name)),
    field('description', 'description', input('description', stream.description)),
    el('div', { class: 'field' }, el('label', { class: 'check' },
      el('input', { type: 'checkbox', id: fid('publicSubscribe'), checked: !!stream.publicSubscribe }), ' publicSubscribe'),
    el('p', { id: `${fid('publicSubscribe')}-err`, class: 'error' })),
    field('subscriberRoles', 'subscriberRoles (comma-separated)', input('subscriberRoles', (stream.subscriberRoles || []).join(', '))),
    field('events', 'events (JSON array of {namespace, name, map?, criteria?})',
      el('textarea', { id: fid('events'), rows: 5, spellcheck: 'false', 'aria-describedby': `${fid('events')}-err` },
        JSON.stringify(stream.events || [], null, 2))),
    el('p', { class: 'error', role: 'alert', id: `${fid('form')}-err` }),
    el('div', { class: 'row' }, el('button', { type: 'submit' }, isNew ? 'Create' : 'Save'),
      isNew ? '' : el('button', { type: 'button', class: 'danger', onclick: () => deleteStream(id) }, 'Delete')));
  form.addEventListener('submit', (ev) => { ev.preventDefault(); saveStream(form, id, isNew, fid, stream); });
  return form;
}

async function saveStream(form, id, isNew, fid, original) {
  const errIds = ['id', 'form', ...STREAM_FIELDS].map((f) => `${fid(f)}-err`);
  errIds.forEach((e) => setError(e, ''));
  const sid = isNew ? $(`#${fid('id')}`).value.trim() : id;
  if (!sid) { setError(`${fid('id')}-err`, 'id is required'); return; }
  const ev = parseJson($(`#${fid('events')}`).value);
  if (ev.error) { setError(`${fid('events')}-err`, `not valid JSON: ${ev.error}`); return; }
  const stream = { ...(isNew ? {} : original) };
  for (const f of ['name', 'description']) {
    const v = $(`#${fid(f)}`).value;
    if (v) stream[f] = v; else delete stream[f];
  }
  stream.publicSubscribe = $(`#${fid('publicSubscribe')}`).checked;
  const roles = $(`#${fid('subscriberRoles')}`).value.split(',').map((r) => r.trim()).filter(Boolean);
  if (roles.length) stream.subscriberRoles = roles; else delete stream.subscriberRoles;
  stream.events = ev.value === undefined ? [] : ev.value;
  try {
    await api('PATCH', `/configuration/v2/configuration/platform/push-service?tenantId=${encodeURIComponent(state.tenant)}`,
      { operation: 'UPDATE', update: { [sid]: stream } });
    $('#streams-status').textContent = `Saved stream ${sid}.`;
    await loadStreams();
  } catch (e) {
    // "update.<id>.<field>…" names the field; "update.<id>: …" the stream itself
    const prefix = `update.${sid}`;
    let target = `${fid('form')}-err`;
    if (e.message.startsWith(prefix + '.')) {
      const f = e.message.slice(prefix.length + 1).match(/^[A-Za-z]+/);
      if (f && STREAM_FIELDS.includes(f[0])) target = `${fid(f[0])}-err`;
    } else if (e.message.startsWith(prefix + ':') && isNew) {
      target = `${fid('id')}-err`;
    }
    setError(target, e.message);
    const bad = document.querySelector(`[aria-describedby~="${target}"]`);
    if (bad) bad.focus();
  }
}

async function deleteStream(id) {
  if (!confirm(`Delete stream ${id}?`)) return;
  try {
    await api('PATCH', `/configuration/v2/configuration/platform/push-service?tenantId=${encodeURIComponent(state.tenant)}`,
      { operation: 'DELETE', property: id });
    $('#streams-status').textContent = `Deleted stream ${id}.`;
    await loadStreams();
  } catch (e) {
    $('#streams-status').textContent = e.message;
  }
}

async function loadStreams() {
  state.tenant = $('#st-tenant').value.trim();
  const list = $('#streams-list');
  try {
    const { doc } = await api('GET', `/configuration/v2/configuration/platform/push-service?tenantId=${encodeURIComponent(state.tenant)}`);
    const ids = Object.keys(doc).sort();
    list.replaceChildren(...ids.map((id) => streamForm(id, doc[id], false)));
    if (!$('#streams-status').textContent.startsWith('Saved') && !$('#streams-status').textContent.startsWith('Deleted'))
      $('#streams-status').textContent = `${ids.length} stream${ids.length === 1 ? '' : 's'} in tenant ${state.tenant}.`;
  } catch (e) {
    list.replaceChildren();
    $('#streams-status').textContent = e.message;
  }
}

// ---------------------------------------------------------------------------------
// devices

async function loadDevices() {
  try {
    const { doc } = await api('GET', '/api/devices');
    fillTable($('#devices-table'), doc.devices.map((d) => [String(d.deviceId), d.queued, d.inFlight, d.polls ?? 0,
      fmtTime(d.lastPollAt), fmtTime(d.lastResultAt),
      el('button', { type: 'button', class: 'secondary small', onclick: () => loadCommands(d.deviceId) }, 'Commands')]));
  } catch (e) {
    fillTable($('#devices-table'), [[e.message, '', '', '', '', '', '']]);
  }
}

async function loadCommands(deviceId) {
  const { doc } = await api('GET', `/api/devices/${encodeURIComponent(deviceId)}/commands`);
  $('#commands-card').hidden = false;
  $('#commands-device').textContent = deviceId;
  fillTable($('#commands-table'), doc.commands.map((c) => [c.id, c.status, c.verb, c.endpoint, c.attempts,
    c.error ? `error: ${c.error}` : c.response !== undefined ? JSON.stringify(c.response) : '–']));
}

function showCommand(c) {
  $('#cmd-hint').hidden = true;
  $('#cmd-title').textContent = `${c.id} for device ${c.deviceId}`;
  const rows = [['status', c.status], ['verb', c.verb], ['endpoint', c.endpoint], ['attempts', c.attempts],
    ['created', fmtTime(c.createdAt)], ['sent', fmtTime(c.sentAt)], ['completed', fmtTime(c.completedAt)]];
  if (c.response !== undefined) rows.push(['response', JSON.stringify(c.response)]);
  if (c.error !== undefined) rows.push(['error', c.error]);
  $('#cmd-detail').replaceChildren(...rows.flatMap(([k, v]) => [el('dt', {}, k), el('dd', { 'data-k': k }, v ?? '–')]));
}

async function enqueue(ev) {
  ev.preventDefault();
  ['dv-id-err', 'dv-endpoint-err', 'dv-body-err', 'dv-error'].forEach((e) => setError(e, ''));
  const id = $('#dv-id').value.trim();
  const endpoint = $('#dv-endpoint').value.trim();
  if (!/^-?\d+$/.test(id)) { setError('dv-id-err', 'deviceId must be an integer'); return; }
  if (!endpoint) { setError('dv-endpoint-err', 'endpoint is required'); return; }
  const b = parseJson($('#dv-body').value);
  if (b.error) { setError('dv-body-err', `not valid JSON: ${b.error}`); return; }
  const body = { verb: $('#dv-verb').value, endpoint };
  if (b.value !== undefined) body.body = b.value;
  try {
    const { doc } = await api('POST', `/api/devices/${id}/commands`, body);
    showCommand(doc);
    clearTimeout(state.cmdTimer);
    const poll = async () => {
      try {
        const r = await api('GET', `/api/devices/${id}/commands/${doc.id}?waitMs=5000`);
        showCommand(r.doc);
        loadDevices();
        if (r.doc.status === 'queued' || r.doc.status === 'sent') state.cmdTimer = setTimeout(poll, 100);
        else loadCommands(id);
      } catch { /* shown by the next action */ }
    };
    loadDevices();
    poll();
  } catch (e) {
    if (!fieldError(e.message, { verb: 'dv-endpoint-err', endpoint: 'dv-endpoint-err', body: 'dv-body-err', deviceId: 'dv-id-err' }))
      setError('dv-error', e.message);
  }
}

// ---------------------------------------------------------------------------------
// wiring

function init() {
  $('#sign-in-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    $('#sign-in-error').textContent = '';
    try {
      await signIn($('#api-key').value.trim());
      $('#api-key').value = '';
      $('#main').focus();
    } catch (e) {
      $('#sign-in-error').textContent = e.status === 403 ? 'That key is not an admin key.' : e.message;
    }
  });
  $('#sign-out').addEventListener('click', () => signOut(''));
  window.addEventListener('hashchange', route);
  $('#clients-form').addEventListener('submit', (ev) => { ev.preventDefault(); loadClients(); });
  for (const [, id] of PATTERN_FIELDS) $(`#${id}`).addEventListener('input', debounce(loadClients, 250));
  $('#cl-compose').addEventListener('click', () => {
    for (const [, from, to] of PATTERN_FIELDS) $(`#${to}`).value = $(`#${from}`).value;
    location.hash = '#compose';
    $('#pr-payload').focus();
  });
  $('#pr-payload').addEventListener('input', debounce(validatePayload, 200));
  $('#push-form').addEventListener('submit', sendPushRequest);
  $('#channel-form').addEventListener('submit', sendChannelPush);
  $('#tenant-form').addEventListener('submit', (ev) => { ev.preventDefault(); $('#streams-status').textContent = ''; loadStreams(); });
  $('#st-new').addEventListener('click', () => {
    if (!$('#st-tenant').value.trim()) { $('#streams-status').textContent = 'Enter a tenant first.'; $('#st-tenant').focus(); return; }
    state.tenant = $('#st-tenant').value.trim();
    const f = streamForm('', { events: [{ namespace: '', name: '' }] }, true);
    $('#streams-list').prepend(f);
    f.querySelector('input').focus();
  });
  $('#enqueue-form').addEventListener('submit', enqueue);
  $('#dv-refresh').addEventListener('click', loadDevices);
  window.addEventListener('resize', debounce(drawChart, 100));
  if (state.key) showApp();
  else $('#api-key').focus();
}

function debounce(fn, ms) {
  let t;
  return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };
}

init();
