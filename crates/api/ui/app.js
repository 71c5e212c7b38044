// Alarm Center web UI: plain ES2020, no framework. Every value from the API reaches the DOM through
// textContent / createElement (see `el`), never through innerHTML.
'use strict';

const TOKEN_KEY = 'alarm-center-token';
const LIVE_MAX = 500; // rows kept in the live feed
const NEW_DEVICE_MS = 10 * 60 * 1000; // "new" highlight for devices first seen this recently
const $ = (id) => document.getElementById(id);

// ---------- DOM helpers ----------

/** Creates an element. attrs: `class`, `dataset`, `on<event>` handlers, other attributes; kids: nodes or text. */
function el(tag, attrs = {}, ...kids) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  node.append(...kids.flat().filter((k) => k != null && k !== false)
    .map((k) => (k instanceof Node ? k : String(k))));
  return node;
}

/** A table cell with a label, shown before the value when tables collapse into cards on phones. */
const td = (label, ...kids) => el('td', { 'data-label': label }, el('div', { class: 'v' }, ...kids));
const dash = (v) => (v == null || v === '' ? '—' : v);
const muted = (text) => el('span', { class: 'muted' }, text);

function setStatus(id, text, isError = false) {
  const node = $(id);
  node.textContent = text;
  node.classList.toggle('error', isError);
}

function emptyRow(tbody, columns, text) {
  tbody.replaceChildren(el('tr', { class: 'empty' }, el('td', { colspan: columns }, text)));
}

// ---------- Long ids ----------

const ID_SEPARATORS = /(?<=[.@_:/-])(?![.@_:/-])/; // a break opportunity after each run of separators
const CODE_SEPARATORS = /(?<=[.@_:/-])(?![.@_:/-])|(?<=[a-z])(?=[A-Z])/; // … and between CamelCase words
const ID_CHUNK = 16; // a run without separators longer than this breaks every ID_CHUNK characters

/** `text` as text nodes with a <wbr> after each separator (. @ - _ : /), so a long id wraps there and
 * not mid-word; only a run of more than ID_CHUNK characters without any separator is cut into chunks.
 * `separators`: CODE_SEPARATORS for event codes (VideoMotion wraps as Video|Motion). */
function breakable(text, separators = ID_SEPARATORS) {
  const parts = [];
  for (const segment of String(text ?? '').split(separators)) {
    for (let i = 0; i < segment.length; i += ID_CHUNK) {
      if (parts.length) parts.push(el('wbr'));
      parts.push(segment.slice(i, i + ID_CHUNK));
    }
  }
  return parts;
}

/** An id (device, peer, serial, …) in monospace that wraps at its separators. */
const idText = (text, cls = 'mono id') => (text == null || text === '' ? muted('—') : el('span', { class: cls }, breakable(text)));

// ---------- Time ----------

const pad = (n, w = 2) => String(n).padStart(w, '0');

/** Local "YYYY-MM-DD HH:MM:SS" of an RFC 3339 time. */
function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Local "YYYY-MM-DDTHH:MM:SS.mmm+HH:MM" (ISO 8601 with this browser's UTC offset) of a Date. */
function isoLocal(d) {
  const offset = -d.getTimezoneOffset();
  const abs = Math.abs(offset);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}` +
    `${offset < 0 ? '-' : '+'}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

/** The full time of a tooltip: local ISO time with its zone, UTC, and the device's own clock if known. */
function fullTime(iso, deviceTime) {
  const lines = [];
  const d = iso ? new Date(iso) : null;
  if (d && !Number.isNaN(d.getTime())) lines.push(`${isoLocal(d)} (local)`, `${d.toISOString()} (UTC)`);
  else if (iso) lines.push(iso);
  if (deviceTime) lines.push(`device time: ${deviceTime}`);
  return lines.join('\n');
}

/** "12 s", "3 min", "2 h 5 min", "4 d" of a span in milliseconds; null when unknown. */
function spanText(ms) {
  if (ms == null || Number.isNaN(ms)) return null;
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d`;
}

/** Time elapsed since `iso`: "12 s", "3 min", "2 h 5 min", "4 d"; null when unknown. */
const elapsed = (iso) => spanText(iso ? Date.now() - new Date(iso).getTime() : NaN);

/** "just now", "12 s ago", "3 min ago", … */
function relTime(iso) {
  const span = elapsed(iso);
  if (span == null) return '—';
  return Date.now() - new Date(iso).getTime() < 5000 ? 'just now' : `${span} ago`;
}

/** A <time> showing the local time as "YYYY-MM-DD HH:MM:SS" (the one format of every table; it may wrap
 * between date and time), the full time (zone, UTC, device time) in the tooltip. */
function timeAbs(iso, deviceTime) {
  const [day, clock] = fmtTime(iso).split(' ');
  return el('time', { datetime: iso, title: fullTime(iso, deviceTime) },
    clock ? [el('span', { class: 'nw' }, day), ' ', el('span', { class: 'nw' }, clock)] : day);
}
/** A <time> showing a relative time, kept current by the 1 s ticker; the full time in the tooltip. */
const timeRel = (iso) => el('time', { datetime: iso, title: fullTime(iso), 'data-rel': iso }, relTime(iso));

setInterval(() => {
  for (const node of document.querySelectorAll('[data-rel]')) node.textContent = relTime(node.dataset.rel);
}, 1000);

/** datetime-local value (local time) → RFC 3339 UTC, or '' when empty. */
function localToUtc(value) {
  if (!value) return '';
  const d = new Date(value); // a date-time without offset is parsed as local time
  return Number.isNaN(d.getTime()) ? '' : d.toISOString();
}

// ---------- API and authentication ----------

const token = () => sessionStorage.getItem(TOKEN_KEY);

class ApiError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

/** fetch + JSON with the bearer token; throws ApiError with the server's `error` text. */
async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (token()) headers.set('Authorization', `Bearer ${token()}`);
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (e) {
    throw new ApiError(`server unreachable (${e.message})`, 0);
  }
  if (response.status === 401) {
    askToken();
    throw new ApiError('a bearer token is required', 401);
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(body?.error || `HTTP ${response.status}`, response.status);
  return body;
}

function askToken() {
  stopLive();
  setConn('auth', 'token needed');
  $('auth-message').textContent = token()
    ? 'The server rejected the token. Enter the right one.'
    : 'This server requires a bearer token (api.token).';
  if ($('auth').hidden) {
    $('auth').hidden = false;
    $('auth-token').focus();
  }
}

$('auth-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const value = $('auth-token').value.trim();
  if (!value) return;
  sessionStorage.setItem(TOKEN_KEY, value);
  $('auth-token').value = '';
  $('auth').hidden = true;
  startLive();
  refreshDevices();
  route(true);
});

/** Downloads an API file with the token (a plain link cannot send the Authorization header). */
async function downloadWithToken(url, filename) {
  const response = await fetch(url, { headers: { Authorization: `Bearer ${token()}` } });
  if (response.status === 401) return askToken();
  if (!response.ok) return setStatus('inspector-status', `download failed: HTTP ${response.status}`, true);
  const href = URL.createObjectURL(await response.blob());
  const a = el('a', { href, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 10000);
}

// The sticky header's height, for scroll-padding-top (an element scrolled into view, such as the frame
// inspector, starts below the header, not under it) and the sticky table heads.
const topBar = document.querySelector('header.top');
const setTopHeight = () => document.documentElement.style.setProperty('--top-h', `${topBar.offsetHeight}px`);
new ResizeObserver(setTopHeight).observe(topBar);
setTopHeight();

// ---------- Navigation (hash routes: #devices, #device/ID, #live, #history?device=…, #frames, #frame/ID, #sinks) ----------

const VIEWS = ['devices', 'device', 'live', 'history', 'frames', 'sinks'];
const NAV = ['devices', 'live', 'history', 'frames', 'sinks'];
let currentView = '';
const loaded = new Set(); // views whose data was loaded once

function route(force = false) {
  const [path, query = ''] = location.hash.slice(1).split('?');
  const [name, arg] = path.split('/');
  const view = name === 'frame' ? 'frames' : name === 'device' && !arg ? 'devices' : VIEWS.includes(name) ? name : 'devices';
  for (const v of VIEWS) $(`view-${v}`).hidden = v !== view;
  const section = view === 'device' ? 'devices' : view; // a device's page belongs to Devices
  for (const v of NAV) {
    const link = $(`nav-${v}`);
    if (v === section) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (view !== currentView) window.scrollTo(0, 0);
  currentView = view;
  if (view === 'history') {
    const params = new URLSearchParams(query);
    if (params.has('device')) { // #history?device=… (from the devices table): only that filter
      for (const field of $('history-form').elements) if (field.name) field.value = '';
      $('h-device').value = params.get('device');
    }
    if (params.toString() || force || !loaded.has(view)) searchHistory();
  } else if (view === 'frames') {
    if (force || !loaded.has(view)) loadFrames();
    if (name === 'frame' && /^\d+$/.test(arg || '')) openFrame(Number(arg));
    else closeInspector();
  } else if (view === 'sinks') {
    refreshSinks();
  } else if (view === 'device') {
    let id = arg;
    try { id = decodeURIComponent(arg); } catch { /* keep it as written */ }
    openDevice(id);
  } else if (view === 'devices' && force) {
    refreshDevices();
  }
  loaded.add(view);
}
window.addEventListener('hashchange', () => route());

// ---------- Devices ----------

let devicesTimer = 0;
/** Refreshes the devices soon (coalesces bursts of online/offline events). */
function refreshDevicesSoon() {
  clearTimeout(devicesTimer);
  devicesTimer = setTimeout(refreshDevices, 300);
}

// The devices list is loaded a page at a time (by id); "Load more" appends the next page. `shown` is
// how many rows the user asked for, `next` the cursor after them, `seq` drops answers of older loads.
const DEVICE_PAGE = 500; // the API's default page
const DEVICE_PAGE_MAX = 5000; // the API's largest page
const devs = { shown: 0, next: null, online: 0, seq: 0 };
const deviceCache = new Map(); // id → the device as last loaded (for its page)

/** GET one page of devices after `after` (null: from the start). */
const devicePage = (after, limit) => api(`api/devices?${new URLSearchParams(after == null ? { limit } : { limit, after })}`);

/** Reloads the devices shown so far (at least one page), a page of at most DEVICE_PAGE_MAX at a time. */
async function refreshDevices() {
  const seq = ++devs.seq;
  const want = Math.max(DEVICE_PAGE, devs.shown);
  const devices = [];
  let next = null;
  let online = 0;
  try {
    do {
      const page = await devicePage(next, Math.min(DEVICE_PAGE_MAX, want - devices.length));
      devices.push(...page.devices);
      ({ next, online } = page);
    } while (next != null && devices.length < want);
  } catch (e) {
    if (seq === devs.seq) setStatus('devices-status', `Could not load devices: ${e.message}`, true);
    return;
  }
  if (seq !== devs.seq) return;
  Object.assign(devs, { shown: devices.length, next, online });
  deviceCache.clear();
  for (const d of devices) deviceCache.set(d.id, d);
  if (currentView === 'device') showDeviceMeta();
  $('device-ids').replaceChildren(...devices.map(deviceOption));
  const body = $('devices-body');
  if (devices.length) body.replaceChildren(...devices.map(deviceRow));
  else emptyRow(body, 7, 'No device has connected yet. Point a device’s Alarm Center (or alarm server) setting at this server.');
  showDevicesStatus();
}

/** Appends the next page of devices. */
async function moreDevices() {
  if (devs.next == null) return;
  const seq = ++devs.seq;
  $('devices-more').disabled = true;
  try {
    const { devices, next, online } = await devicePage(devs.next, DEVICE_PAGE);
    if (seq !== devs.seq) return;
    Object.assign(devs, { shown: devs.shown + devices.length, next, online });
    for (const d of devices) deviceCache.set(d.id, d);
    $('devices-body').append(...devices.map(deviceRow));
    $('device-ids').append(...devices.map(deviceOption));
    showDevicesStatus();
  } catch (e) {
    if (seq === devs.seq) setStatus('devices-status', `Could not load more devices: ${e.message}`, true);
  } finally {
    $('devices-more').disabled = false;
  }
}

function showDevicesStatus() {
  const more = devs.next != null;
  setStatus('devices-status', `${devs.shown} device${devs.shown === 1 ? '' : 's'}${more ? ' shown (more available)' : ''}, ${devs.online} online`);
  $('devices-more').hidden = !more;
  $('devices-legend').hidden = !$('devices-body').querySelector('.badge.new');
}

const isNewDevice = (d) => Date.now() - new Date(d.first_seen).getTime() < NEW_DEVICE_MS;
/** The "new" badge, saying what it means. */
const newBadge = (d) => el('span', {
  class: 'badge new',
  title: `New: first seen ${fmtTime(d.first_seen)}, less than ${NEW_DEVICE_MS / 60000} minutes ago (the mark goes after that)`,
}, 'new');

const deviceOption = (d) => el('option', { value: d.id }, d.name || '');
$('devices-more').addEventListener('click', moreDevices);

const stateBadge = (d) => {
  const online = d.state === 'online';
  return el('span', { class: `badge ${online ? 'online' : 'offline'}`, title: `since ${fmtTime(d.state_since)}` },
    online ? '● online' : '○ offline');
};

function deviceRow(d) {
  const isNew = isNewDevice(d);
  const identity = [['serial', d.serial], ['MAC', d.mac], ['domain', d.domain], ['IP', d.ip]]
    .filter(([, v]) => v)
    .map(([k, v]) => el('span', { class: 'ident' }, muted(k), ' ', idText(v)));
  const page = `#device/${encodeURIComponent(d.id)}`;
  return el('tr', { class: `device-row${isNew ? ' new' : ''}`, dataset: { device: d.id, state: d.state } },
    td('State', stateBadge(d), ' ', muted(`for ${dash(elapsed(d.state_since))}`)),
    td('Device',
      el('div', {}, el('a', { href: page, class: 'device-link' }, el('strong', {}, d.name || breakable(d.id))),
        isNew ? newBadge(d) : null),
      d.name ? el('div', { class: 'muted' }, idText(d.id)) : null,
      el('a', { href: `#history?device=${encodeURIComponent(d.id)}`, class: 'small' }, 'events')),
    td('Identity', identity.length ? identity : muted('—')),
    td('Peer', idText(d.peer)),
    td('Protocol', dash(d.protocol), d.keepalive_period ? muted(` · keep-alive ${d.keepalive_period} s`) : null),
    td('Last seen', timeRel(d.last_seen)),
    td('First seen', timeAbs(d.first_seen)));
}

// ---------- A device's page: its details and connection history ----------

const shownDevice = { id: null, seq: 0 };

function openDevice(id) {
  if (shownDevice.id !== id) {
    shownDevice.id = id;
    $('connections-body').replaceChildren();
  }
  $('device-title').replaceChildren('Device ', idText(id, 'mono id title-id'));
  $('device-events').href = `#history?device=${encodeURIComponent(id)}`;
  showDeviceMeta();
  loadConnections();
}

/** The device's details, as loaded with the devices list. */
function showDeviceMeta() {
  const d = deviceCache.get(shownDevice.id);
  const meta = d
    ? defList([
      ['State', [stateBadge(d), ' ', muted(`for ${dash(elapsed(d.state_since))}`)]],
      ['Name', d.name ? [d.name, isNewDevice(d) ? newBadge(d) : null] : null],
      ['Id', [idText(d.id), !d.name && isNewDevice(d) ? newBadge(d) : null]],
      ['Serial', d.serial && idText(d.serial)], ['MAC', d.mac && idText(d.mac)],
      ['Domain', d.domain && idText(d.domain)], ['IP', d.ip && idText(d.ip)],
      ['Peer', d.peer && idText(d.peer)],
      ['Protocol', d.protocol ? `${d.protocol}${d.keepalive_period ? ` · keep-alive ${d.keepalive_period} s` : ''}` : null],
      ['Last seen', d.last_seen && timeRel(d.last_seen)], ['First seen', d.first_seen && timeAbs(d.first_seen)],
    ])
    : el('p', { class: 'muted' }, 'Not in the devices list loaded so far (or no longer stored); its connections are below.');
  $('device-meta').replaceChildren(meta);
}

/** Reloads the connection history of the device shown. */
async function loadConnections() {
  const id = shownDevice.id;
  const seq = ++shownDevice.seq;
  try {
    const { connections } = await api(`api/devices/${encodeURIComponent(id)}/connections`);
    if (seq !== shownDevice.seq) return;
    setStatus('device-status', connections.length
      ? `${connections.length} connection${connections.length === 1 ? '' : 's'}, newest first (at most 100)`
      : 'No connection recorded for this device.');
    $('connections-table').hidden = !connections.length;
    $('connections-body').replaceChildren(...connections.map(connectionRow));
  } catch (e) {
    if (seq === shownDevice.seq) {
      setStatus('device-status', e.status === 404 ? `No device ${id}.` : `Could not load connections: ${e.message}`, true);
    }
  }
}

function connectionRow(c) {
  const opened = new Date(c.opened_at).getTime();
  const closed = c.closed_at ? new Date(c.closed_at).getTime() : Date.now();
  return el('tr', { class: 'connection-row', dataset: { connection: c.id, state: c.closed_at ? 'closed' : 'open', peer: c.peer } },
    td('Connection', `#${c.id}`),
    td('Peer', idText(c.peer)),
    td('Opened', timeAbs(c.opened_at)),
    td('Closed', c.closed_at ? timeAbs(c.closed_at) : el('span', { class: 'badge online' }, 'open')),
    td('Duration', dash(spanText(closed - opened))),
    td('Close reason', dash(c.close_reason)),
    td('Frames', dash(c.frames)),
    td('Bytes', c.bytes == null ? '—' : `${c.bytes} B`));
}

// ---------- Events (shared by Live and History) ----------

const knownCodes = new Set();

function actionBadge(action) {
  const known = ['start', 'stop', 'pulse', 'state'].includes(action) ? action : 'other';
  return el('span', { class: `badge action-${known}` }, action);
}

function channelText(e) {
  if (e.channel_name) return e.channel != null ? `${e.channel_name} (${e.channel})` : e.channel_name;
  return e.channel != null ? `ch ${e.channel}` : '—';
}

const frameLink = (id) => (id != null ? el('a', { href: `#frame/${id}` }, `#${id}`) : muted('—'));

/** A table row for an event; `cls` is `event-row` (Live) or `history-row`. */
function eventRow(e, cls, withDetails) {
  if (!knownCodes.has(e.code)) {
    knownCodes.add(e.code);
    $('known-codes').append(el('option', { value: e.code }));
  }
  const cells = [
    td('Time', timeAbs(e.received_at, e.device_time)),
    td('Device', idText(e.device)),
    td('Channel', channelText(e)),
    td('Code', el('strong', {}, breakable(e.code, CODE_SEPARATORS))),
    td('Action', actionBadge(e.action),
      e.synthetic ? el('span', { class: 'badge synthetic', title: 'synthesised by the server' }, `synthetic · ${e.synthetic}`) : null),
    td('Kind', e.kind),
  ];
  if (withDetails) {
    // The device's own time is in the time's tooltip (no column of its own: the table fits 1400 px).
    const data = e.data == null ? '' : JSON.stringify(e.data);
    cells.push(td('Data', data ? el('code', { class: 'data', title: data }, data) : muted('—')));
  }
  cells.push(td('Frame', frameLink(e.frame_id)));
  return el('tr', {
    class: `${cls} kind-${e.kind}`,
    dataset: { id: e.id, code: e.code, action: e.action, device: e.device },
  }, cells);
}

// ---------- Live feed: EventSource, or polling when a token is needed ----------

// `gen` changes on every stop: callbacks of an older feed see it and do nothing.
const live = { source: null, timer: 0, gen: 0, lastId: 0, seen: new Set() };

function setConn(state, text) {
  const node = $('live-status');
  node.dataset.state = state;
  node.textContent = text;
}

function stopLive() {
  live.gen += 1;
  live.source?.close();
  live.source = null;
  clearTimeout(live.timer);
  live.timer = 0;
}

function startLive() {
  stopLive();
  if (token()) return poll(live.gen); // EventSource cannot send the Authorization header
  const gen = live.gen;
  setConn('connecting', 'connecting…');
  const source = new EventSource('api/stream');
  live.source = source;
  source.addEventListener('open', () => {
    setConn('live', 'live');
    backfill(); // events committed while (re)connecting; duplicates are skipped
  });
  source.addEventListener('event', (m) => {
    try { addLive(JSON.parse(m.data), true); } catch (e) { console.warn('bad event', e, m.data); }
  });
  source.addEventListener('gap', (m) => {
    let missed = '?';
    try { missed = JSON.parse(m.data).missed_batches; } catch { /* keep '?' */ }
    showGap(`The feed fell behind and skipped ${missed} batch${missed === 1 ? '' : 'es'}; recent events were reloaded from history.`);
    backfill(500);
  });
  source.addEventListener('error', () => {
    if (source !== live.source) return;
    setConn('reconnecting', 'reconnecting…');
    // CLOSED means an HTTP error (the browser gives up): find out why, then retry ourselves.
    if (source.readyState === EventSource.CLOSED) {
      live.source = null;
      const retry = () => { if (gen === live.gen) live.timer = setTimeout(startLive, 3000); };
      api('api/events?limit=1').then(retry, (e) => { if (e.status !== 401) retry(); });
    }
  });
}

/** Merges the newest `limit` events from history into the feed. */
async function backfill(limit = 100) {
  try {
    const { events } = await api(`api/events?limit=${limit}`);
    for (const e of events.reverse()) addLive(e, false);
  } catch (e) {
    console.warn('backfill', e);
  }
}

/** Polls /api/events every 2 s (token mode) while `gen` is current. */
async function poll(gen) {
  live.timer = 0;
  try {
    const { events, next } = await api('api/events?limit=200');
    if (gen !== live.gen) return;
    const fresh = events.filter((e) => e.id > live.lastId);
    if (live.lastId && fresh.length === events.length && next != null) {
      showGap('More than 200 events arrived between two polls; older ones are in History.');
    }
    const first = live.lastId === 0;
    for (const e of fresh.reverse()) addLive(e, !first);
    setConn('polling', 'live (polling)');
  } catch (e) {
    if (gen !== live.gen) return; // stopped meanwhile (askToken on a 401 stops the feed)
    setConn('reconnecting', 'reconnecting…');
  }
  live.timer = setTimeout(() => poll(gen), 2000);
}

function showGap(text) {
  const node = $('live-gap');
  node.textContent = `${text} (${fmtTime(new Date().toISOString())})`;
  node.hidden = false;
}

/** Adds an event to the feed, newest on top, at most LIVE_MAX rows, each event once. */
function addLive(e, fresh) {
  if (live.seen.has(e.id)) return;
  const body = $('live-body');
  const rows = body.children;
  if (rows.length >= LIVE_MAX && e.id < Number(rows[rows.length - 1].dataset.id)) return;
  live.seen.add(e.id);
  live.lastId = Math.max(live.lastId, e.id);
  body.querySelector('tr.empty')?.remove();
  // Usually the newest: insert before the first row with a smaller id.
  let before = body.firstElementChild;
  while (before && Number(before.dataset.id) > e.id) before = before.nextElementSibling;
  const row = eventRow(e, 'event-row', false);
  if (fresh) row.classList.add('fresh');
  body.insertBefore(row, before);
  while (rows.length > LIVE_MAX) {
    live.seen.delete(Number(body.lastElementChild.dataset.id));
    body.lastElementChild.remove();
  }
  $('live-count').textContent = `${rows.length} event${rows.length === 1 ? '' : 's'} (newest first, at most ${LIVE_MAX})`;
  if (e.kind === 'device' && (e.code === 'DeviceOnline' || e.code === 'DeviceOffline')) refreshDevicesSoon();
}

$('live-clear').addEventListener('click', () => {
  emptyRow($('live-body'), 7, 'Waiting for events…');
  $('live-gap').hidden = true;
  $('live-count').textContent = '';
});

// ---------- History ----------

// `seq` numbers searches: the answer of an older one is dropped.
const hist = { query: '', next: null, seq: 0 };

function historyQuery() {
  const form = $('history-form');
  const params = new URLSearchParams();
  for (const name of ['device', 'code', 'action', 'kind']) {
    const value = form.elements[name].value.trim();
    if (value) params.set(name, value);
  }
  for (const name of ['since', 'until']) {
    const value = localToUtc(form.elements[name].value);
    if (value) params.set(name, value);
  }
  return params;
}

async function searchHistory(more = false) {
  const body = $('history-body');
  const seq = ++hist.seq;
  if (!more) {
    hist.query = historyQuery().toString();
    hist.next = null;
    body.replaceChildren();
  }
  const params = new URLSearchParams(hist.query);
  params.set('limit', '100');
  if (more && hist.next != null) params.set('before', hist.next);
  setStatus('history-status', 'Searching…');
  $('history-more').hidden = true;
  try {
    const { events, next } = await api(`api/events?${params}`);
    if (seq !== hist.seq) return;
    body.append(...events.map((e) => eventRow(e, 'history-row', true)));
    hist.next = next;
    $('history-more').hidden = next == null;
    const shown = body.querySelectorAll('tr.history-row').length;
    setStatus('history-status', shown ? `${shown} event${shown === 1 ? '' : 's'}${next == null ? '' : ' (more available)'}` : 'No event matches.');
  } catch (e) {
    if (seq === hist.seq) setStatus('history-status', `Search failed: ${e.message}`, true);
  }
}

$('history-form').addEventListener('submit', (e) => { e.preventDefault(); searchHistory(); });
$('history-form').addEventListener('reset', () => setTimeout(() => searchHistory(), 0));
$('history-more').addEventListener('click', () => searchHistory(true));

// ---------- Frames list ----------

const frameList = { next: null, seq: 0 };
let openFrameId = null; // the frame shown in the inspector

function commandText(protocol, command) {
  if (command == null) return '—';
  if (protocol === 'dvrip') return `0x${command.toString(16).toUpperCase().padStart(2, '0')} (${command})`;
  return String(command);
}

async function loadFrames(more = false) {
  const body = $('frames-body');
  const seq = ++frameList.seq;
  const params = new URLSearchParams({ limit: '100' });
  if ($('frames-unknown').checked) params.set('unknown', 'true');
  if (more && frameList.next != null) params.set('before', frameList.next);
  if (!more) body.replaceChildren();
  setStatus('frames-status', 'Loading…');
  $('frames-more').hidden = true;
  try {
    const { frames: list, next } = await api(`api/frames?${params}`);
    if (seq !== frameList.seq) return;
    body.append(...list.map(frameRow));
    for (const row of body.querySelectorAll('tr.frame-row')) row.classList.toggle('selected', Number(row.dataset.id) === openFrameId);
    frameList.next = next;
    $('frames-more').hidden = next == null;
    const shown = body.querySelectorAll('tr.frame-row').length;
    setStatus('frames-status', shown ? `${shown} frame${shown === 1 ? '' : 's'}, newest first` : 'No stored frame.');
  } catch (e) {
    if (seq === frameList.seq) setStatus('frames-status', `Could not load frames: ${e.message}`, true);
  }
}

function frameRow(f) {
  const row = el('tr', {
    class: `frame-row${f.error || f.protocol === 'junk' ? ' bad' : ''}`,
    dataset: { id: f.id, kind: f.kind, protocol: f.protocol },
  },
  td('Frame', el('a', { href: `#frame/${f.id}` }, `#${f.id}`)),
  td('Received', timeAbs(f.received_at)),
  td('Device', idText(f.device)),
  td('Protocol', f.protocol),
  td('Command', commandText(f.protocol, f.command)),
  td('Kind', f.kind),
  td('Body', f.body_format),
  td('Length', `${f.length} B`),
  td('Error', f.error ? el('span', { class: 'error-text' }, f.error) : muted('—')));
  // The whole row opens the inspector; the link keeps it reachable by keyboard.
  row.addEventListener('click', (e) => { if (e.target.tagName !== 'A') location.hash = `#frame/${f.id}`; });
  return row;
}

$('frames-unknown').addEventListener('change', () => loadFrames());
$('frames-refresh').addEventListener('click', () => loadFrames());
$('frames-more').addEventListener('click', () => loadFrames(true));

// ---------- Inspector ----------

/** Classic hex dump: offset, 16 bytes (gap after 8), |ASCII|. */
function hexDump(hex, base = 0) {
  const bytes = (hex || '').match(/[0-9a-fA-F]{2}/g) || [];
  const lines = [];
  for (let i = 0; i < bytes.length; i += 16) {
    const row = bytes.slice(i, i + 16);
    const hexPart = row.map((b, j) => (j === 8 ? ' ' : '') + b).join(' ').padEnd(48);
    const ascii = row.map((b) => {
      const c = parseInt(b, 16);
      return c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : '.';
    }).join('');
    lines.push(`${(base + i).toString(16).padStart(8, '0')}  ${hexPart}  |${ascii}|`);
  }
  return lines.join('\n') || '(no bytes)';
}

/** A <dl> of [term, value] pairs, skipping empty values. */
function defList(pairs, cls = 'meta') {
  return el('dl', { class: cls }, pairs.filter(([, v]) => v != null && v !== '')
    .map(([k, v]) => el('div', {}, el('dt', {}, k), el('dd', {}, v))));
}

/** Integers shown in decimal and hex (useful when comparing with the dump). */
const numText = (v) => (Number.isInteger(v) && v > 9 ? `${v} (0x${v.toString(16)})` : typeof v === 'object' ? JSON.stringify(v) : String(v));

/** One decode record (protocol.md §5) in the inspector layout: hex dump beside the decoded fields. */
function renderRecord(r, fallbackHex) {
  const fields = el('div', { class: 'fields' });
  if (r.error) fields.append(el('p', { class: 'error-text' }, el('strong', {}, 'Error: '), r.error));
  fields.append(defList([
    ['Protocol', r.protocol], ['Command', commandText(r.protocol, r.command)], ['Kind', r.kind],
    ['Body format', r.body_format], ['Offset', numText(r.offset)], ['Length', `${r.length} bytes`],
    ['Keep-alive period', r.keepalive_period != null ? `${r.keepalive_period} s` : null],
    ['Stream', r.stream ? [r.stream.index && `#${r.stream.index}`, r.stream.src && `${r.stream.src} → ${r.stream.dst}`, r.stream.ts]
      .filter(Boolean).join(' · ') : null],
  ]));
  const header = Object.entries(r.header || {});
  if (r.protocol === 'http' && r.header?.method) {
    // HTTP mode: the request line, then every header field in wire order (repeated names kept).
    const h = r.header;
    fields.append(el('h4', {}, 'Request'), el('table', { class: 'kv http-head' },
      el('tbody', {},
        el('tr', {}, el('th', { scope: 'row' }, 'Request line'), el('td', { class: 'mono' }, `${h.method} ${h.path} ${h.version}`)),
        (h.headers || []).map(([name, value]) => el('tr', {}, el('th', { scope: 'row' }, name), el('td', { class: 'mono' }, value))))));
  } else if (header.length) {
    fields.append(el('h4', {}, 'Header'), el('table', { class: 'kv' },
      el('tbody', {}, header.map(([k, v]) => el('tr', {}, el('th', { scope: 'row' }, k), el('td', { class: 'mono' }, numText(v)))))));
  }
  if (r.body !== undefined) fields.append(el('h4', {}, 'Body'), el('pre', { class: 'json' }, JSON.stringify(r.body, null, 2)));
  if (r.events?.length) {
    fields.append(el('h4', {}, `Events (${r.events.length})`), el('table', { class: 'kv events' },
      el('thead', {}, el('tr', {}, ['Code', 'Action', 'Channel', 'Device time', 'Data'].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, r.events.map((e) => el('tr', {},
        el('td', {}, e.code), el('td', {}, actionBadge(e.action)), el('td', {}, dash(e.channel)),
        el('td', {}, dash(e.device_time)), el('td', { class: 'mono' }, e.data === undefined ? '—' : JSON.stringify(e.data)))))));
  } else {
    fields.append(el('p', { class: 'muted' }, 'No events.'));
  }
  if (r.device) {
    fields.append(el('h4', {}, 'Device identity'),
      defList([['Serial', r.device.serial], ['MAC', r.device.mac], ['IP', r.device.ip], ['Domain', r.device.domain]]));
  }
  return el('article', { class: 'decoded-frame', dataset: { kind: r.kind, protocol: r.protocol } },
    el('h4', { class: 'frame-title' }, `${r.protocol} · ${r.kind}`, muted(` — offset ${r.offset}, ${r.length} bytes`)),
    el('div', { class: 'inspect' },
      el('pre', { class: 'hexdump', tabindex: 0, 'aria-label': 'Hex dump' }, hexDump(r.raw ?? fallbackHex, r.offset || 0)),
      fields));
}

async function openFrame(id) {
  openFrameId = id;
  const panel = $('inspector');
  panel.hidden = false;
  $('inspector-title').textContent = `Frame #${id}`;
  $('inspector-meta').replaceChildren();
  $('inspector-body').replaceChildren();
  $('inspector-download').hidden = true; // shown once the frame is known to be stored
  for (const row of document.querySelectorAll('tr.frame-row')) row.classList.toggle('selected', Number(row.dataset.id) === id);
  setStatus('inspector-status', 'Loading…');
  panel.scrollIntoView({ block: 'start' });
  try {
    const { frame: f, hex, decoded } = await api(`api/frames/${id}`);
    if (openFrameId !== id) return; // another frame was opened meanwhile
    $('inspector-download').href = `api/frames/${id}/raw`;
    $('inspector-download').setAttribute('download', `frame-${id}.bin`);
    $('inspector-download').hidden = false;
    $('inspector-meta').replaceWith(Object.assign(defList([
      ['Received', timeAbs(f.received_at)], ['Device', idText(f.device)], ['Connection', dash(f.connection)],
      ['Stream offset', f.stream_offset], ['Length', `${f.length} bytes`],
      ['Stored as', `${f.protocol} · ${f.kind} · ${f.body_format}`], ['Stored error', f.error],
    ]), { id: 'inspector-meta' }));
    const note = decoded.some((r) => r.body_format === 'mask')
      ? 'Decoded again from the bytes alone: a 0x69 mask is diffed against nothing here; the events stored at receive time (History) are authoritative.'
      : '';
    setStatus('inspector-status', note);
    $('inspector-body').replaceChildren(...(decoded.length ? decoded.map((r) => renderRecord(r, hex))
      : [el('pre', { class: 'hexdump' }, hexDump(hex))]));
  } catch (e) {
    if (openFrameId !== id) return;
    setStatus('inspector-status', e.status === 404
      ? `Frame #${id} is not stored: retention removed it (store.frames-max-age, store.max-size-mb), or it never existed. Its events stay in History.`
      : `Could not load frame ${id}: ${e.message}`, true);
  }
}

function closeInspector() {
  openFrameId = null;
  $('inspector').hidden = true;
  for (const row of document.querySelectorAll('tr.frame-row.selected')) row.classList.remove('selected');
}

$('inspector-download').addEventListener('click', (e) => {
  if (!token()) return; // the plain link works without authentication
  e.preventDefault();
  downloadWithToken(`api/frames/${openFrameId}/raw`, `frame-${openFrameId}.bin`);
});

// ---------- Paste a capture ----------

$('paste-decode').addEventListener('click', async () => {
  const text = $('paste-input').value;
  const result = $('paste-result');
  if (!text.trim()) return setStatus('paste-status', 'Paste a hex dump first.', true);
  result.replaceChildren();
  setStatus('paste-status', 'Decoding…');
  try {
    // text/x-hexdump, not text/plain: the server refuses the types any web page may post to it.
    const { streams, truncated, truncated_reason: why } = await api('api/decode', { method: 'POST', headers: { 'Content-Type': 'text/x-hexdump' }, body: text });
    const count = streams.reduce((n, s) => n + s.frames.length, 0);
    setStatus('paste-status', `${count} frame${count === 1 ? '' : 's'} in ${streams.length} stream${streams.length === 1 ? '' : 's'}${truncated ? ` — cut short: ${why}` : ''}`, truncated);
    streams.forEach((s, i) => {
      if (streams.length > 1) result.append(el('h4', { class: 'stream-title' }, `Stream ${i + 1}`));
      result.append(...s.frames.map((r) => renderRecord(r, '')));
    });
  } catch (e) {
    setStatus('paste-status', `Could not decode: ${e.message}`, true);
  }
});

// ---------- Sinks ----------

async function refreshSinks() {
  let sinks;
  try {
    ({ sinks } = await api('api/sinks'));
  } catch (e) {
    return setStatus('sinks-status', `Could not load sinks: ${e.message}`, true);
  }
  setStatus('sinks-status', `${sinks.length} sink${sinks.length === 1 ? '' : 's'} · updated ${fmtTime(new Date().toISOString())}`);
  const body = $('sinks-body');
  // No sink: the table gives way to a configuration snippet.
  $('sinks-table').hidden = !sinks.length;
  $('sinks-empty').hidden = sinks.length > 0;
  if (!sinks.length) return body.replaceChildren();
  body.replaceChildren(...sinks.map((s) => el('tr', { class: 'sink-row', dataset: { sink: s.sink } },
    td('Sink', el('strong', {}, breakable(s.sink))),
    td('Position', s.position),
    td('Lag', el('span', { class: s.lag > 0 ? 'warn-text' : '' }, s.lag)),
    td('Delivered', s.delivered),
    td('Filtered', s.filtered),
    td('Dead letters', el('span', { class: s.dead_letters > 0 ? 'error-text' : '' }, s.dead_letters)),
    td('Failures', el('span', { class: s.failures > 0 ? 'warn-text' : '' }, s.failures)),
    td('Last error', s.last_error ? [el('span', { class: 'error-text' }, s.last_error), ' ', muted(`(${fmtTime(s.last_error_at)})`)] : muted('—')),
    td('Updated', timeRel(s.updated_at)))));
}

// ---------- Start ----------

emptyRow($('live-body'), 7, 'Waiting for events…');
route();
refreshDevices();
startLive();
setInterval(() => {
  if (!$('auth').hidden) return; // waiting for a token
  refreshDevices();
  if (currentView === 'sinks') refreshSinks();
  if (currentView === 'device') loadConnections();
}, 5000);
