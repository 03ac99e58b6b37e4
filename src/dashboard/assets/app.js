// wa-gateway dashboard: a client of the public API and nothing else.
// The JWT lives in this closure only (never in localStorage or a cookie), so
// a reload logs out; every call sends it as `Authorization: Bearer`. The
// live event stream is read with fetch (EventSource cannot send that header).
'use strict';
(() => {
  const session = { token: null, user: null, apiKey: null, isAdmin: false };
  const live = { ctrl: null, lastId: null, listeners: new Set(), retry: 1000 };
  const statusOf = new Map(); // instanceId -> connection status, kept live
  const delivery = new Map(); // WhatsApp message id -> latest status seen on the stream
  const RANK = { received: 0, sent: 1, delivered: 2, read: 3, played: 4, failed: 5 };
  // The later of a message's status as read from the API and as seen live.
  function latest(messageId, status) {
    const seen = delivery.get(messageId);
    return seen && (RANK[seen] ?? 0) > (RANK[status] ?? 0) ? seen : status;
  }
  const app = () => document.getElementById('app');

  // ---- small DOM helpers (text only: user data never becomes HTML) ----
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const kid of kids.flat()) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }
  const svgNs = 'http://www.w3.org/2000/svg';
  function s(tag, attrs, text) {
    const el = document.createElementNS(svgNs, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    if (text !== undefined) el.textContent = text;
    return el;
  }
  function toast(msg, bad) {
    const t = h('div', { class: bad ? 'bad' : '' }, msg);
    document.getElementById('toast').append(t);
    setTimeout(() => t.remove(), 5000);
  }
  function field(label, input) { return h('label', {}, label, input); }
  function when(iso) { return iso ? new Date(iso).toLocaleString() : ''; }
  function badge(status) { return h('span', { class: 'badge ' + status, dataset: { status } }, status); }

  // ---- the API ----
  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || ('HTTP ' + status));
      this.status = status; this.code = body && body.error;
    }
  }
  async function api(method, path, body, opts) {
    const headers = {};
    if (session.token) headers.Authorization = 'Bearer ' + session.token;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (resp.status === 401 && session.token) { logout('Your session ended; log in again.'); throw new ApiError(401, null); }
    if (opts && opts.raw) { if (!resp.ok) throw new ApiError(resp.status, await resp.json().catch(() => null)); return resp; }
    const data = await resp.json().catch(() => null);
    if (!resp.ok) throw new ApiError(resp.status, data);
    return data;
  }
  // Runs an action, reporting its failure as a toast.
  async function act(fn, ok) {
    try { const r = await fn(); if (ok) toast(ok); return r; } catch (e) { if (e.status !== 401) toast(e.message, true); return undefined; }
  }

  // ---- the live event stream (SSE over fetch, resumed with Last-Event-ID) ----
  const LIVE_TYPES = ['qr_received', 'connection_opened', 'connection_closed', 'logged_out', 'message_sent',
    'message_received', 'message_status', 'instance_created', 'instance_updated', 'instance_deleted',
    'webhook_delivered', 'webhook_failed', 'webhook_disabled'];
  function onLive(fn) { live.listeners.add(fn); return () => live.listeners.delete(fn); }
  function setLive(on) {
    const el = document.getElementById('live');
    el.textContent = on ? 'live' : 'offline'; el.classList.toggle('on', on); el.dataset.state = on ? 'on' : 'off';
  }
  async function startLive() {
    stopLive();
    const ctrl = new AbortController(); live.ctrl = ctrl;
    while (!ctrl.signal.aborted && session.token) {
      try {
        const headers = { Authorization: 'Bearer ' + session.token, Accept: 'text/event-stream' };
        if (live.lastId !== null) headers['Last-Event-ID'] = live.lastId;
        const resp = await fetch('/api/events/stream?types=' + LIVE_TYPES.join(','), { headers, signal: ctrl.signal });
        if (resp.status === 401) { logout('Your session ended; log in again.'); return; }
        if (!resp.ok) throw new Error('HTTP ' + resp.status);
        setLive(true); live.retry = 1000;
        await readSse(resp.body, ctrl.signal);
      } catch (e) { if (ctrl.signal.aborted) return; }
      setLive(false);
      await new Promise(r => setTimeout(r, live.retry));
      live.retry = Math.min(live.retry * 2, 15000);
    }
  }
  function stopLive() { if (live.ctrl) live.ctrl.abort(); live.ctrl = null; setLive(false); }
  async function readSse(body, signal) {
    const reader = body.getReader(); const dec = new TextDecoder(); let buf = '';
    while (!signal.aborted) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const frame = buf.slice(0, i); buf = buf.slice(i + 2);
        let id = null, type = 'message', data = '';
        for (const line of frame.split('\n')) {
          if (line.startsWith(':')) continue; // heartbeat
          const c = line.indexOf(':'); const k = c < 0 ? line : line.slice(0, c);
          const v = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
          if (k === 'id') id = v; else if (k === 'event') type = v; else if (k === 'data') data += (data ? '\n' : '') + v;
        }
        if (!data) continue;
        if (type === 'close') return; // the server ended the stream (slow client, shutdown): resume
        if (id !== null) live.lastId = id;
        let ev; try { ev = JSON.parse(data); } catch { continue; }
        track(ev);
        for (const fn of [...live.listeners]) { try { fn(ev); } catch (e) { console.error(e); } }
      }
    }
  }
  // Keeps the known connection status of each instance current.
  function track(ev) {
    if (ev.type === 'message_status' && ev.data) delivery.set(ev.data.messageId, latest(ev.data.messageId, ev.data.status));
    const id = ev.instanceId; if (!id) return;
    const next = { qr_received: 'qr', connection_opened: 'connected', connection_closed: ev.data && ev.data.willReconnect ? 'connecting' : 'disconnected', logged_out: 'logged_out' }[ev.type];
    if (next) statusOf.set(id, next);
  }

  // ---- login / logout ----
  function loginView() {
    const email = h('input', { type: 'email', name: 'email', autocomplete: 'username', required: true });
    const password = h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true });
    const err = h('p', { class: 'error', id: 'login-error' });
    const form = h('form', { class: 'card login', id: 'login-form', onsubmit: async (e) => {
      e.preventDefault(); err.textContent = '';
      try {
        const r = await api('POST', '/api/auth/login', { email: email.value, password: password.value });
        session.token = r.token; session.user = r.user; session.apiKey = r.user.apiKey;
        session.isAdmin = await api('GET', '/api/users?limit=1').then(() => true, () => false);
        document.getElementById('nav').hidden = false;
        document.getElementById('nav-admin').hidden = !session.isAdmin;
        startLive();
        route();
      } catch (ex) { err.textContent = ex.message; }
    } }, h('h2', {}, 'Log in'), field('E-mail', email), field('Password', password), err,
      h('button', { type: 'submit' }, 'Log in'));
    app().replaceChildren(form);
    email.focus();
  }
  function logout(msg) {
    session.token = null; session.user = null; session.apiKey = null; session.isAdmin = false;
    live.lastId = null; statusOf.clear(); delivery.clear(); live.listeners.clear(); stopLive();
    document.getElementById('nav').hidden = true;
    location.hash = '#/';
    loginView();
    if (msg) toast(msg);
  }

  // ---- routing ----
  let cleanup = [];
  function route() {
    for (const fn of cleanup) fn(); cleanup = [];
    if (!session.token) return loginView();
    const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean);
    for (const a of document.querySelectorAll('[data-nav]')) a.classList.toggle('on', a.dataset.nav === (parts[0] || 'instances') || (parts[0] === 'i' && a.dataset.nav === 'instances'));
    if (parts[0] === 'i' && parts[1]) return instanceView(decodeURIComponent(parts[1]), parts[2] || 'pair');
    if (parts[0] === 'account') return accountView();
    if (parts[0] === 'admin' && session.isAdmin) return adminView();
    return instancesView();
  }
  function watch(fn) { cleanup.push(onLive(fn)); }

  // ---- instances ----
  function webhookFields(current) {
    const ws = (current && current.webhookSettings) || {};
    const f = {
      webhookUrl: h('input', { type: 'url', name: 'webhookUrl', placeholder: 'https://example.com/hook', value: (current && current.webhookUrl) || '' }),
      webhookEnabled: h('input', { type: 'checkbox', name: 'webhookEnabled', checked: current ? current.webhookEnabled : true }),
      notifyReceived: h('input', { type: 'checkbox', checked: ws.notifyReceived ?? true }),
      notifySent: h('input', { type: 'checkbox', checked: ws.notifySent ?? true }),
      notifyDelivery: h('input', { type: 'checkbox', checked: ws.notifyDelivery ?? false }),
      notifyRead: h('input', { type: 'checkbox', checked: ws.notifyRead ?? false }),
      maxRetries: h('input', { type: 'number', min: 0, max: 20, value: ws.maxRetries ?? 3 }),
      retryInterval: h('input', { type: 'number', min: 100, value: ws.retryInterval ?? 60000 }),
      secret: h('input', { type: 'password', autocomplete: 'new-password', placeholder: current ? 'unchanged' : 'optional' }),
    };
    const node = h('div', {},
      h('div', { class: 'row' }, field('Webhook URL', f.webhookUrl), field('Max retries', f.maxRetries), field('Retry interval (ms)', f.retryInterval), field('Signing secret', f.secret)),
      h('div', { class: 'row' },
        h('label', { class: 'check' }, f.webhookEnabled, 'webhook on'),
        h('label', { class: 'check' }, f.notifyReceived, 'received'),
        h('label', { class: 'check' }, f.notifySent, 'sent'),
        h('label', { class: 'check' }, f.notifyDelivery, 'delivered'),
        h('label', { class: 'check' }, f.notifyRead, 'read')));
    const settings = () => ({ notifyReceived: f.notifyReceived.checked, notifySent: f.notifySent.checked, notifyDelivery: f.notifyDelivery.checked,
      notifyRead: f.notifyRead.checked, maxRetries: Number(f.maxRetries.value), retryInterval: Number(f.retryInterval.value) });
    return { node, f, settings };
  }

  async function instancesView() {
    const name = h('input', { name: 'name', required: true, maxlength: 100 });
    const hook = webhookFields(null);
    const tbody = h('tbody', { id: 'instances' });
    const create = h('form', { class: 'card', id: 'create-instance', onsubmit: async (e) => {
      e.preventDefault();
      const body = { name: name.value, ...hook.settings(), webhookEnabled: hook.f.webhookEnabled.checked };
      if (hook.f.webhookUrl.value) body.webhookUrl = hook.f.webhookUrl.value;
      if (hook.f.secret.value) body.webhookSecret = hook.f.secret.value;
      const r = await act(() => api('POST', '/api/instances', body), 'Instance created');
      if (r) location.hash = '#/i/' + encodeURIComponent(r.id) + '/pair';
    } }, h('h3', {}, 'New instance'), h('div', { class: 'row' }, field('Name', name)), hook.node,
      h('p', {}, h('button', { type: 'submit' }, 'Create')));
    app().replaceChildren(h('div', { class: 'card' }, h('h2', {}, 'Instances'),
      h('div', { class: 'scroll' }, h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Status'), h('th', { class: 'wide' }, 'Webhook'), h('th', { class: 'wide' }, 'Created'), h('th', {}, ''))), tbody))), create);
    async function load() {
      const list = await act(() => api('GET', '/api/instances'));
      if (!list) return;
      tbody.replaceChildren(...list.instances.map(i => {
        statusOf.set(i.id, i.connectionStatus.status);
        return h('tr', { dataset: { instance: i.id } },
          h('td', {}, h('a', { href: '#/i/' + encodeURIComponent(i.id) + '/pair' }, i.name)),
          h('td', { class: 'status' }, badge(i.connectionStatus.status)),
          h('td', { class: 'wide' }, i.webhookUrl ? (i.webhookEnabled ? i.webhookUrl : i.webhookUrl + ' (off)') : '—'),
          h('td', { class: 'wide' }, when(i.createdAt)),
          h('td', {}, h('div', { class: 'row' },
            h('button', { class: 'secondary', type: 'button', onclick: () => act(() => api('POST', `/api/instances/${i.id}/reconnect`), 'Reconnecting') }, 'Reconnect'),
            h('button', { class: 'secondary', type: 'button', onclick: () => act(() => api('POST', `/api/instances/${i.id}/logout`), 'Logged out') }, 'Logout'),
            h('button', { class: 'danger', type: 'button', onclick: async () => { if (confirm(`Delete ${i.name}?`) && await act(() => api('DELETE', `/api/instances/${i.id}`), 'Deleted')) load(); } }, 'Delete'))));
      }));
      if (!list.instances.length) tbody.replaceChildren(h('tr', {}, h('td', { colspan: 5, class: 'muted' }, 'No instances yet: create one below.')));
    }
    watch(ev => {
      if (['instance_created', 'instance_deleted', 'instance_updated'].includes(ev.type)) return load();
      const row = ev.instanceId && tbody.querySelector(`tr[data-instance="${CSS.escape(ev.instanceId)}"] td.status`);
      if (row && statusOf.has(ev.instanceId)) row.replaceChildren(badge(statusOf.get(ev.instanceId)));
    });
    load();
  }

  function instanceView(id, tab) {
    const base = '#/i/' + encodeURIComponent(id) + '/';
    const tabs = [['pair', 'Connection'], ['send', 'Send'], ['chats', 'Chats'], ['activity', 'Activity'], ['webhooks', 'Webhooks'], ['usage', 'Usage'], ['settings', 'Settings']];
    const title = h('h2', {}, id);
    const body = h('div', {});
    app().replaceChildren(title, h('nav', { class: 'tabs' }, tabs.map(([k, label]) => h('a', { href: base + k, class: k === tab ? 'on' : '', dataset: { tab: k } }, label))), body);
    api('GET', `/api/instances/${id}`).then(i => { title.textContent = i.name; }, e => { body.replaceChildren(h('p', { class: 'error' }, e.message)); });
    const views = { pair: pairTab, send: sendTab, chats: chatsTab, activity: activityTab, webhooks: webhooksTab, usage: usageTab, settings: settingsTab };
    (views[tab] || pairTab)(id, body);
  }

  function pairTab(id, body) {
    const status = h('span', { id: 'conn-status' });
    const qrBox = h('div', { class: 'qr', id: 'qr' });
    const phone = h('input', { name: 'phone', inputmode: 'numeric', placeholder: '79001234567' });
    const codeOut = h('div', { id: 'pair-code' });
    let shownCode = null, seq = 0;
    function show(st) {
      status.replaceChildren(badge(st));
      if (st === 'connected') { qrBox.replaceChildren(h('p', { class: 'connected-banner', id: 'connected' }, '✓ Connected to WhatsApp')); shownCode = null; }
    }
    async function refreshQr() {
      const my = ++seq;
      let r;
      try { r = await api('GET', `/api/instances/${id}/qr`); } catch (e) {
        if (my === seq && statusOf.get(id) !== 'connected') { qrBox.replaceChildren(h('p', { class: 'muted' }, e.status === 409 || e.status === 404 ? 'No QR code right now: ' + e.message : e.message)); shownCode = null; }
        return;
      }
      if (my !== seq || r.qrCode === shownCode) return;
      const svg = await api('GET', `/api/instances/${id}/qr?format=svg`, undefined, { raw: true }).then(x => x.text()).catch(() => null);
      if (!svg || my !== seq) return;
      const url = URL.createObjectURL(new Blob([svg], { type: 'image/svg+xml' }));
      const old = qrBox.querySelector('img');
      if (old) URL.revokeObjectURL(old.src);
      shownCode = r.qrCode;
      qrBox.replaceChildren(h('img', { src: url, alt: 'QR code to scan with WhatsApp', id: 'qr-img', dataset: { fingerprint: fingerprint(r.qrCode) } }),
        h('p', { class: 'muted' }, 'Open WhatsApp on your phone → Linked devices → Link a device, and scan. The code changes by itself every few seconds.'));
    }
    async function load() {
      const st = await act(() => api('GET', `/api/whatsapp/${id}/status`));
      if (!st) return;
      statusOf.set(id, st.status); show(st.status);
      if (st.status !== 'connected') refreshQr();
    }
    watch(ev => {
      if (ev.instanceId !== id) return;
      if (ev.type === 'qr_received') { show('qr'); refreshQr(); }
      else if (ev.type === 'connection_opened') { seq++; show('connected'); }
      else if (['connection_closed', 'logged_out'].includes(ev.type)) { show(statusOf.get(id)); load(); }
    });
    const pairForm = h('form', { id: 'pair-code-form', onsubmit: async (e) => {
      e.preventDefault(); codeOut.textContent = '';
      try {
        const r = await api('POST', `/api/instances/${id}/pair-code`, { phone: phone.value });
        codeOut.replaceChildren(h('p', {}, 'On the phone: Linked devices → Link with phone number, and type:'), h('p', { class: 'code' }, r.code));
      } catch (ex) {
        codeOut.replaceChildren(h('p', { class: 'error' }, ex.status === 404
          ? `Pairing by phone number is not available here (the pair-code endpoint answered 404: ${ex.message}). Scan the QR code instead.`
          : ex.message));
      }
    } }, h('div', { class: 'row' }, field('Phone number (digits, with country code)', phone), h('button', { type: 'submit' }, 'Get code')), codeOut);
    body.replaceChildren(
      h('div', { class: 'card' }, h('h3', {}, 'Status ', status), qrBox,
        h('div', { class: 'row' },
          h('button', { type: 'button', class: 'secondary shrink', onclick: () => act(() => api('POST', `/api/instances/${id}/reconnect`), 'Reconnecting') }, 'Reconnect'),
          h('button', { type: 'button', class: 'secondary shrink', onclick: () => act(() => api('POST', `/api/instances/${id}/logout`), 'Logged out') }, 'Log out of WhatsApp'))),
      h('div', { class: 'card' }, h('h3', {}, 'Pair with a phone number instead'), pairForm));
    load();
  }
  function fingerprint(text) { let x = 0; for (let i = 0; i < text.length; i++) x = (x * 31 + text.charCodeAt(i)) >>> 0; return x.toString(16); }

  const TICKS = { sent: '✓', delivered: '✓✓', read: '✓✓', played: '✓✓▶', failed: '✗', received: '' };
  function ticks(status) { return h('span', { class: 'ticks ' + status, dataset: { status }, title: status }, TICKS[status] ?? status); }

  function sendTab(id, body) {
    const phone = h('input', { name: 'phone', required: true, inputmode: 'numeric', placeholder: '79001234567' });
    const text = h('textarea', { name: 'message', required: true, rows: 3 });
    const sent = h('tbody', { id: 'sent-messages' });
    const byId = new Map();
    watch(ev => {
      if (ev.instanceId !== id || ev.type !== 'message_status') return;
      const cell = byId.get(ev.data.messageId);
      if (cell) cell.replaceChildren(ticks(latest(ev.data.messageId, ev.data.status)));
    });
    body.replaceChildren(h('form', { class: 'card', id: 'send-form', onsubmit: async (e) => {
      e.preventDefault();
      const r = await act(() => api('POST', `/api/whatsapp/${id}/send`, { phone: phone.value, message: text.value }), 'Sent');
      if (!r) return;
      const cell = h('td', { class: 'status' }, ticks(latest(r.id, 'sent')));
      byId.set(r.id, cell);
      sent.prepend(h('tr', { dataset: { message: r.id } }, h('td', {}, phone.value), h('td', {}, text.value), cell));
      text.value = '';
    } }, h('h3', {}, 'Send a test text'), h('div', { class: 'row' }, field('To (phone number)', phone)), field('Message', text), h('p', {}, h('button', { type: 'submit' }, 'Send'))),
    h('div', { class: 'card' }, h('h3', {}, 'Sent from this page'), h('div', { class: 'scroll' }, h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'To'), h('th', {}, 'Text'), h('th', {}, 'Status'))), sent))));
  }

  function chatsTab(id, body) {
    const list = h('div', { class: 'chat-list', id: 'chat-list' });
    const msgs = h('div', { class: 'bubbles', id: 'messages' });
    let current = null;
    async function loadChats() {
      const r = await act(() => api('GET', `/api/instances/${id}/chats?limit=100`));
      if (!r) return;
      list.replaceChildren(...r.chats.map(c => h('button', { type: 'button', class: c.remoteJid === current ? 'on' : '', dataset: { chat: c.remoteJid }, onclick: () => { current = c.remoteJid; loadChats(); loadMessages(); } },
        h('b', {}, c.remoteJid.split('@')[0]), ' ', h('span', { class: 'muted' }, `(${c.totalMessages})`), h('br', {}),
        h('span', { class: 'muted' }, (c.lastFromMe ? 'You: ' : '') + c.lastMessage.slice(0, 60)))));
      if (!r.chats.length) list.replaceChildren(h('p', { class: 'muted' }, 'No messages yet.'));
    }
    async function loadMessages() {
      if (!current) return;
      const r = await act(() => api('GET', `/api/instances/${id}/chats/${encodeURIComponent(current)}/messages?limit=100`));
      if (!r) return;
      msgs.replaceChildren(...r.messages.map(m => h('div', { class: 'bubble' + (m.fromMe ? ' me' : ''), dataset: { message: m.messageId } },
        m.content || `[${m.messageType}]`, m.fromMe ? ticks(latest(m.messageId, m.status)) : null, h('div', { class: 'muted' }, when(m.createdAt)))));
    }
    watch(ev => {
      if (ev.instanceId !== id) return;
      if (ev.type === 'message_status') {
        const b = msgs.querySelector(`[data-message="${CSS.escape(ev.data.messageId)}"] .ticks`);
        if (b) b.replaceWith(ticks(latest(ev.data.messageId, ev.data.status)));
      }
      if (ev.type === 'message_sent' || ev.type === 'message_received') setTimeout(() => { loadChats(); loadMessages(); }, 300);
    });
    body.replaceChildren(h('div', { class: 'card chat-layout' }, h('div', {}, h('h3', {}, 'Chats'), list), h('div', {}, h('h3', {}, 'Messages'), msgs)));
    loadChats();
  }

  function activityTab(id, body) {
    const actions = h('select', { name: 'actions' }, h('option', { value: '' }, 'all events'),
      ['instance_created', 'instance_updated', 'qr_received', 'connection_opened', 'connection_closed', 'logged_out', 'message_sent', 'message_received', 'message_status', 'webhook_delivered', 'webhook_failed']
        .map(a => h('option', { value: a }, a)));
    const start = h('input', { type: 'date', name: 'startDate' });
    const end = h('input', { type: 'date', name: 'endDate' });
    const rows = h('tbody', { id: 'activity' });
    const pager = h('div', { class: 'row' });
    let skip = 0; const limit = 25;
    async function load() {
      const q = new URLSearchParams({ limit, skip });
      if (actions.value) q.set('actions', actions.value);
      if (start.value) q.set('startDate', start.value);
      if (end.value) q.set('endDate', end.value);
      const r = await act(() => api('GET', `/api/instances/${id}/activity?${q}`));
      if (!r) return;
      rows.replaceChildren(...r.logs.map(l => h('tr', {}, h('td', {}, when(l.createdAt)), h('td', {}, l.action), h('td', { class: 'wide' }, h('code', {}, JSON.stringify(l.details))))));
      const p = r.pagination;
      pager.replaceChildren(h('span', { class: 'muted' }, `${p.total ? p.skip + 1 : 0}–${p.skip + r.logs.length} of ${p.total}`),
        h('button', { type: 'button', class: 'secondary shrink', disabled: skip === 0, onclick: () => { skip = Math.max(0, skip - limit); load(); } }, '‹ Newer'),
        h('button', { type: 'button', class: 'secondary shrink', disabled: !p.hasMore, onclick: () => { skip += limit; load(); } }, 'Older ›'));
    }
    for (const el of [actions, start, end]) el.addEventListener('change', () => { skip = 0; load(); });
    body.replaceChildren(h('div', { class: 'card' }, h('h3', {}, 'Activity log'),
      h('div', { class: 'row' }, field('Event', actions), field('From', start), field('To', end)),
      h('div', { class: 'scroll' }, h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'When'), h('th', {}, 'Event'), h('th', { class: 'wide' }, 'Details'))), rows)), pager));
    load();
  }

  function webhooksTab(id, body) {
    const rows = h('tbody', { id: 'deliveries' });
    const status = h('select', { name: 'status' }, ['', 'pending', 'delivered', 'failed'].map(v => h('option', { value: v }, v || 'all')));
    async function load() {
      const q = new URLSearchParams({ limit: 50 });
      if (status.value) q.set('status', status.value);
      const r = await act(() => api('GET', `/api/instances/${id}/webhook-deliveries?${q}`));
      if (!r) return;
      rows.replaceChildren(...r.deliveries.map(d => h('tr', { dataset: { delivery: d.id, status: d.status } },
        h('td', {}, when(d.createdAt)), h('td', {}, d.event), h('td', {}, badge(d.status)), h('td', {}, String(d.attempts)),
        h('td', { class: 'error' }, [d.lastResponseCode ? 'HTTP ' + d.lastResponseCode : null, d.lastError].filter(Boolean).join(' · ')),
        h('td', {}, d.status === 'delivered' ? '' : h('button', { type: 'button', class: 'secondary retry', onclick: async () => {
          if (await act(() => api('POST', `/api/instances/${id}/webhook-deliveries/${d.id}/retry`), 'Sent again')) load();
        } }, 'Retry')))));
      if (!r.deliveries.length) rows.replaceChildren(h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No deliveries.')));
    }
    status.addEventListener('change', load);
    let timer = null;
    watch(ev => {
      if (ev.instanceId !== id || !ev.type.startsWith('webhook_')) return;
      clearTimeout(timer); timer = setTimeout(load, 200);
    });
    body.replaceChildren(h('div', { class: 'card' }, h('h3', {}, 'Webhook deliveries'), h('div', { class: 'row' }, field('Status', status),
      h('button', { type: 'button', class: 'secondary shrink', onclick: load }, 'Refresh')),
      h('div', { class: 'scroll' }, h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'When'), h('th', {}, 'Event'), h('th', {}, 'Status'), h('th', {}, 'Attempts'), h('th', {}, 'Last error'), h('th', {}, ''))), rows))));
    load();
  }

  function usageTab(id, body) {
    const period = h('select', { name: 'period' }, ['week', 'month', 'year', 'today', 'all'].map(p => h('option', { value: p }, p)));
    const out = h('div', {});
    async function load() {
      const r = await act(() => api('GET', `/api/stats/instances/${id}?period=${period.value}`));
      if (!r) return;
      const u = r.usage;
      out.replaceChildren(totals([['Sent', u.messagesSent], ['Received', u.messagesReceived], ['Media sent', u.mediaSent], ['Media received', u.mediaReceived], ['API calls', u.apiCalls], ['Webhooks sent', u.webhookSent]]),
        h('div', { class: 'legend muted' }, h('span', { class: 'sent' }), 'sent', h('span', { class: 'received' }), 'received'),
        h('div', { class: 'chart', id: 'usage-chart' }, barChart(u.dailyStats)));
    }
    period.addEventListener('change', load);
    body.replaceChildren(h('div', { class: 'card' }, h('h3', {}, 'Usage'), h('div', { class: 'row' }, field('Period', period)), out));
    load();
  }
  function totals(pairs) { return h('div', { class: 'stats' }, pairs.map(([k, v]) => h('div', {}, h('b', {}, String(v)), k))); }
  // A grouped bar chart (sent, received per day), drawn as SVG by hand.
  function barChart(days) {
    const W = 640, H = 200, pad = 24, n = Math.max(days.length, 1);
    const max = Math.max(1, ...days.map(d => Math.max(d.messagesSent, d.messagesReceived)));
    const svg = s('svg', { viewBox: `0 0 ${W} ${H + 20}`, role: 'img', 'aria-label': 'messages per day' });
    const slot = (W - pad) / n, bw = Math.max(1, slot / 2 - 2);
    svg.append(s('text', { x: 0, y: 10 }, String(max)), s('line', { x1: pad, y1: H, x2: W, y2: H, stroke: '#dde3ea' }));
    days.forEach((d, i) => {
      const x = pad + i * slot;
      for (const [k, v, dx] of [['sent', d.messagesSent, 0], ['received', d.messagesReceived, bw + 1]]) {
        const bh = (v / max) * (H - 14);
        const r = s('rect', { x: x + dx, y: H - bh, width: bw, height: bh, class: k });
        r.append(s('title', {}, `${d.date} ${k}: ${v}`));
        svg.append(r);
      }
      if (n <= 14 || i % Math.ceil(n / 10) === 0) svg.append(s('text', { x, y: H + 14 }, d.date.slice(5)));
    });
    if (!days.length) svg.append(s('text', { x: W / 2 - 40, y: H / 2 }, 'no data yet'));
    return svg;
  }

  function settingsTab(id, body) {
    body.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
    api('GET', `/api/instances/${id}`).then(i => {
      const name = h('input', { name: 'name', value: i.name, required: true });
      const description = h('input', { name: 'description', value: i.description || '' });
      const hook = webhookFields(i);
      body.replaceChildren(h('form', { class: 'card', id: 'settings-form', onsubmit: async (e) => {
        e.preventDefault();
        const ws = hook.settings();
        if (hook.f.secret.value) ws.secret = hook.f.secret.value;
        const b = { name: name.value, description: description.value, webhookEnabled: hook.f.webhookEnabled.checked, webhookSettings: ws };
        if (hook.f.webhookUrl.value) b.webhookUrl = hook.f.webhookUrl.value;
        await act(() => api('PUT', `/api/instances/${id}`, b), 'Saved');
      } }, h('h3', {}, 'Settings'), h('div', { class: 'row' }, field('Name', name), field('Description', description)), hook.node,
        h('p', { class: 'row' }, h('button', { type: 'submit', class: 'shrink' }, 'Save'),
          h('button', { type: 'button', class: 'danger shrink', onclick: async () => {
            if (confirm(`Delete ${i.name}? Its session ends.`) && await act(() => api('DELETE', `/api/instances/${id}`), 'Deleted')) location.hash = '#/';
          } }, 'Delete instance'))));
    }, e => body.replaceChildren(h('p', { class: 'error' }, e.message)));
  }

  // ---- account ----
  function accountView() {
    const key = h('span', { class: 'key', id: 'api-key' }, '••••••••');
    let shown = false;
    const current = h('input', { type: 'password', autocomplete: 'current-password', required: true });
    const next = h('input', { type: 'password', autocomplete: 'new-password', required: true, minlength: 8 });
    app().replaceChildren(
      h('div', { class: 'card' }, h('h2', {}, 'Account'), h('p', {}, session.user.email),
        h('h3', {}, 'API key'), h('p', {}, key),
        h('div', { class: 'row' },
          h('button', { type: 'button', class: 'secondary shrink', id: 'show-key', onclick: () => { shown = !shown; key.textContent = shown ? session.apiKey : '••••••••'; } }, 'Show / hide'),
          h('button', { type: 'button', class: 'danger shrink', id: 'rotate-key', onclick: async () => {
            if (!confirm('Rotate the API key? The old key stops working at once.')) return;
            const r = await act(() => api('POST', '/api/auth/api-key/rotate'), 'New API key made');
            if (r) { session.apiKey = r.apiKey; shown = true; key.textContent = r.apiKey; }
          } }, 'Rotate'))),
      h('form', { class: 'card', id: 'password-form', onsubmit: async (e) => {
        e.preventDefault();
        if (await act(() => api('POST', '/api/auth/password', { currentPassword: current.value, newPassword: next.value }))) logout('Password changed: log in with the new one.');
      } }, h('h3', {}, 'Change password'), h('div', { class: 'row' }, field('Current password', current), field('New password', next)),
        h('p', { class: 'muted' }, 'Every session (this one too) ends; the API key keeps working.'), h('button', { type: 'submit' }, 'Change password')));
  }

  // ---- admin ----
  async function adminView() {
    const rows = h('tbody', { id: 'users' });
    const stats = h('div', { id: 'system-stats' });
    const email = h('input', { type: 'email', required: true }), pw = h('input', { type: 'password', required: true, autocomplete: 'new-password' });
    const first = h('input', {}), last = h('input', {}), admin = h('input', { type: 'checkbox' });
    async function load() {
      const [u, st] = await Promise.all([act(() => api('GET', '/api/users?limit=1000')), act(() => api('GET', '/api/stats/system'))]);
      if (u) rows.replaceChildren(...u.users.map(x => h('tr', {}, h('td', {}, x.email), h('td', {}, `${x.firstName} ${x.lastName}`), h('td', {}, x.isAdmin ? 'admin' : 'user'), h('td', { class: 'wide' }, when(x.createdAt)))));
      if (st) stats.replaceChildren(totals([['Instances', st.instances.total], ['Connected', st.instances.active], ['Users', st.users.total], ['Active users', st.users.active],
        ['Messages sent', st.usage.messagesSent], ['Received', st.usage.messagesReceived], ['API calls', st.usage.apiCalls], ['Webhooks sent', st.usage.webhookSent]]));
    }
    app().replaceChildren(h('div', { class: 'card' }, h('h2', {}, 'System'), stats),
      h('div', { class: 'card' }, h('h2', {}, 'Users'), h('div', { class: 'scroll' }, h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'E-mail'), h('th', {}, 'Name'), h('th', {}, 'Role'), h('th', { class: 'wide' }, 'Created'))), rows))),
      h('form', { class: 'card', id: 'create-user', onsubmit: async (e) => {
        e.preventDefault();
        if (await act(() => api('POST', '/api/users', { email: email.value, password: pw.value, firstName: first.value, lastName: last.value, isAdmin: admin.checked }), 'User created')) { e.target.reset(); load(); }
      } }, h('h3', {}, 'New user'), h('div', { class: 'row' }, field('E-mail', email), field('Password', pw), field('First name', first), field('Last name', last)),
        h('p', { class: 'row' }, h('label', { class: 'check shrink' }, admin, 'administrator'), h('button', { type: 'submit', class: 'shrink' }, 'Create user'))));
    load();
  }

  document.addEventListener('DOMContentLoaded', () => {
    document.getElementById('logout').addEventListener('click', () => logout('Logged out.'));
    window.addEventListener('hashchange', route);
    route();
  });
})();
