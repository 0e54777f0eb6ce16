// The demo pages: a document picker (`/`) and a CodeMirror 6 editor (`/d/<id>`) wired to
// @gremlins/collab-client, with participants, remote cursors, status and history.
//
// Document text and people's names are only ever put into the page as text
// (`textContent`, CodeMirror's document), never as HTML.

import { Annotation, EditorState } from '@codemirror/state';
import { EditorView, basicSetup } from 'codemirror';
import { CollabClient } from '@gremlins/collab-client';
import { remoteCursors, setRemoteCursors } from './cursors.js';

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = 'collab-demo-token';

/** Marks transactions that apply remote changes, so they are not sent back. */
const remote = Annotation.define();

async function devTokensOffered() {
  try {
    const response = await fetch('/v1/dev/config');
    return response.ok && (await response.json()).dev_tokens === true;
  } catch {
    return false;
  }
}

async function mintDevToken(name) {
  const response = await fetch('/v1/dev/token', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name }),
  });
  if (!response.ok) throw new Error(`no token (${response.status})`);
  return (await response.json()).token;
}

function tokenFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get('token');
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    // Keep the token out of the address bar (and out of screenshots and shared links).
    history.replaceState(null, '', location.pathname + location.search);
  }
  return token ?? sessionStorage.getItem(TOKEN_KEY);
}

// -- the picker --------------------------------------------------------------------------

async function picker() {
  $('open-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const doc = $('doc-input').value.trim();
    if (/^[A-Za-z0-9._-]{1,128}$/.test(doc)) location.assign(`/d/${encodeURIComponent(doc)}`);
  });
  if (!sessionStorage.getItem(TOKEN_KEY) && !(await devTokensOffered())) {
    $('token-help').hidden = false;
  }
}

// -- the editor --------------------------------------------------------------------------

async function obtainToken(doc) {
  const token = tokenFromFragment();
  if (token) return token;
  if (!(await devTokensOffered())) {
    $('token-example').textContent = `${location.origin}/d/${doc}#token=<token>`;
    $('need-token').hidden = false;
    return null;
  }
  $('sign-in').hidden = false;
  $('name-input').focus();
  return new Promise((resolve) => {
    $('sign-in-form').addEventListener('submit', async (event) => {
      event.preventDefault();
      const name = $('name-input').value.trim();
      if (!name) return;
      try {
        const minted = await mintDevToken(name);
        sessionStorage.setItem(TOKEN_KEY, minted);
        $('sign-in').hidden = true;
        resolve(minted);
      } catch (error) {
        showError(String(error.message ?? error));
      }
    });
  });
}

function showError(message) {
  const box = $('error');
  box.textContent = message;
  box.hidden = !message;
}

function renderParticipants(client) {
  const list = $('participants');
  const people = [];
  if (client.user) people.push({ user: client.user, role: client.role, me: true });
  for (const p of client.participants) people.push(p);
  list.replaceChildren(
    ...people.map((p) => {
      const item = document.createElement('li');
      const dot = document.createElement('span');
      dot.className = 'dot';
      dot.style.backgroundColor = /^#[0-9a-fA-F]{3,8}$/.test(p.user?.color ?? '') ? p.user.color : '#888';
      const name = document.createElement('span');
      name.className = 'name';
      name.textContent = `${p.user?.name ?? 'someone'}${p.me ? ' (you)' : ''}`;
      const role = document.createElement('span');
      role.className = 'role';
      role.textContent = p.role === 'viewer' ? 'viewer' : '';
      item.dataset.session = p.session ?? 'me';
      item.append(dot, name, role);
      return item;
    }),
  );
}

function historyApi(doc, token) {
  const headers = { authorization: `Bearer ${token}` };
  const base = `/v1/documents/${encodeURIComponent(doc)}`;
  async function json(response) {
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(body.message ?? `request failed (${response.status})`);
    }
    return response.json();
  }
  return {
    recent: async (version, count = 50) => {
      const from = Math.max(0, version - count);
      return json(await fetch(`${base}/history?from=${from}&limit=${count}`, { headers }));
    },
    text: async (version) => json(await fetch(`${base}/versions/${version}`, { headers })),
    restore: async (version) =>
      json(
        await fetch(`${base}/restore`, {
          method: 'POST',
          headers: { ...headers, 'content-type': 'application/json' },
          body: JSON.stringify({ version }),
        }),
      ),
  };
}

function setupHistory(client, api) {
  let selected = null;
  async function refresh() {
    if (client.version === null) return;
    try {
      const { ops } = await api.recent(client.version);
      const startsAtZero = ops.length > 0 && ops[0].v === 0;
      const list = $('history');
      list.replaceChildren(
        ...ops.reverse().map((op) => {
          const item = document.createElement('li');
          // Version v + 1 is the text right after this op.
          item.value = op.v + 1;
          item.dataset.version = String(op.v + 1);
          const when = new Date(op.ts * 1000).toLocaleTimeString();
          item.textContent = `${op.author}${op.client === 'server' ? ' (restore)' : ''} · ${when}`;
          item.addEventListener('click', () => preview(op.v + 1));
          return item;
        }),
      );
      const start = document.createElement('li');
      start.value = 0;
      start.dataset.version = '0';
      start.textContent = 'empty document';
      start.addEventListener('click', () => preview(0));
      if (startsAtZero) list.append(start);
    } catch (error) {
      showError(String(error.message ?? error));
    }
  }
  async function preview(version) {
    try {
      const { text } = await api.text(version);
      selected = version;
      $('preview-version').textContent = String(version);
      $('preview-text').textContent = text;
      $('preview').hidden = false;
    } catch (error) {
      showError(String(error.message ?? error));
    }
  }
  $('history-refresh').addEventListener('click', refresh);
  $('restore').addEventListener('click', async () => {
    if (selected === null) return;
    $('restore').disabled = true;
    try {
      await api.restore(selected);
      showError('');
    } catch (error) {
      showError(String(error.message ?? error));
    } finally {
      $('restore').disabled = false;
    }
  });
  let timer = null;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(refresh, 300);
  };
}

async function editor() {
  const doc = decodeURIComponent(location.pathname.split('/').pop());
  $('doc-name').textContent = doc;
  document.title = `${doc} · collab`;
  const token = await obtainToken(doc);
  if (!token) return;

  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const client = new CollabClient({
    url: `${scheme}//${location.host}/v1/collaborate/${encodeURIComponent(doc)}`,
    token,
  });
  window.collab = client; // for the curious (and the browser tests)

  let view = null;
  const refreshHistory = setupHistory(client, historyApi(doc, token));

  client.on('status', (e) => {
    const badge = $('status');
    badge.textContent = e.status;
    badge.dataset.status = e.status;
    $('version').textContent = e.version ?? '–';
    $('pending').textContent = String(e.pending ?? 0);
    refreshHistory();
  });
  client.on('error', (e) => {
    showError(e.message ? `${e.code}: ${e.message}` : String(e.code));
    if (e.fatal && !client.user) {
      sessionStorage.removeItem(TOKEN_KEY);
    }
  });
  client.on('change', (e) => {
    if (view === null) return;
    const changes = e.reset
      ? { from: 0, to: view.state.doc.length, insert: e.text }
      : e.changes.map((c) => ({ from: c.from, to: c.to, insert: c.insert }));
    view.dispatch({ changes, annotations: remote.of(true) });
    if (view.state.doc.length !== client.text.length || view.state.doc.toString() !== client.text) {
      // Never show anything but the client's text: replace the whole document if apart.
      view.dispatch({
        changes: { from: 0, to: view.state.doc.length, insert: client.text },
        annotations: remote.of(true),
      });
    }
  });
  client.on('presence', (e) => {
    renderParticipants(client);
    if (view !== null) view.dispatch({ effects: setRemoteCursors.of(e.participants) });
  });

  try {
    await client.connect();
  } catch (error) {
    showError(String(error.message ?? error));
    sessionStorage.removeItem(TOKEN_KEY);
    return;
  }
  $('me').textContent = client.user?.name ?? '';
  renderParticipants(client);

  view = new EditorView({
    parent: $('editor'),
    state: EditorState.create({
      doc: client.text,
      extensions: [
        basicSetup,
        EditorView.lineWrapping,
        remoteCursors,
        EditorState.readOnly.of(client.role === 'viewer'),
        EditorView.editable.of(client.role !== 'viewer'),
        EditorView.updateListener.of((update) => {
          for (const tr of update.transactions) {
            if (!tr.docChanged || tr.annotation(remote)) continue;
            const changes = [];
            tr.changes.iterChanges((fromA, toA, _fromB, _toB, inserted) => {
              changes.push({ from: fromA, to: toA, insert: inserted.toString() });
            });
            try {
              client.applyLocal(changes);
            } catch (error) {
              showError(String(error.message ?? error));
            }
          }
          if (update.selectionSet || update.docChanged) {
            const { anchor, head } = update.state.selection.main;
            client.setCursor(anchor, head);
          }
        }),
      ],
    }),
  });
  window.editorView = view;
  view.dispatch({ effects: setRemoteCursors.of(client.participants) });
  $('workspace').hidden = false;
  view.focus();
  refreshHistory();
}

if (document.body.dataset.page === 'editor') {
  editor();
} else {
  picker();
}
