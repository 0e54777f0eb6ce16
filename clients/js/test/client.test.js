// The connection layer with a scripted WebSocket: statuses, close codes, backoff,
// resend timers, UTF-16 events. No server; the test plays the gateway frame by frame.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { CollabClient } from '../src/index.js';
import { sleep, waitFor } from './support/helpers.js';

/** A WebSocket class whose instances the test drives: open(), receive(), drop(). */
function scriptedWebSocket() {
  const sockets = [];
  class ScriptedWebSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.closed = null;
      sockets.push(this);
    }

    send(data) {
      this.sent.push(JSON.parse(data));
    }

    close(code, reason) {
      this.readyState = 3;
      this.closed = { code, reason };
    }

    open() {
      this.readyState = 1;
      this.onopen?.({});
    }

    receive(message) {
      this.onmessage?.({ data: JSON.stringify(message) });
    }

    drop(code, reason = '') {
      this.readyState = 3;
      this.onclose?.({ code, reason });
    }

    ofType(type) {
      return this.sent.filter((m) => m.type === type);
    }
  }
  return { WebSocket: ScriptedWebSocket, sockets };
}

const welcome = (fields) => ({
  type: 'welcome',
  doc: 'notes',
  session: 's-1',
  role: 'editor',
  user: { id: 'u1', name: 'Ada', color: '#e6194b' },
  version: 0,
  text: '',
  participants: [],
  heartbeat_ms: 20000,
  limits: { max_message_bytes: 262144, messages_per_second: 100 },
  ...fields,
});

function setup(options = {}) {
  const scripted = scriptedWebSocket();
  const client = new CollabClient({
    url: 'ws://gateway.test/v1/collaborate/notes',
    token: 'token',
    WebSocket: scripted.WebSocket,
    clientId: 'c1',
    backoffInitialMs: 10,
    backoffMaxMs: 40,
    heartbeat: false,
    ...options,
  });
  const seen = { status: [], errors: [], changes: [], presence: [] };
  client.on('status', (e) => seen.status.push(e));
  client.on('error', (e) => seen.errors.push(e));
  client.on('change', (e) => seen.changes.push(e));
  client.on('presence', (e) => seen.presence.push(e));
  const socket = async (n) => {
    await waitFor(() => scripted.sockets.length >= n, { timeoutMs: 2000, message: `socket ${n}` });
    return scripted.sockets[n - 1];
  };
  /** Wait for connection `n`, open it and answer its hello with `fields`. */
  const welcomed = async (n, fields) => {
    const ws = await socket(n);
    ws.open();
    ws.receive(welcome(fields));
    return ws;
  };
  return { client, seen, scripted, socket, welcomed };
}

test('connects, reconnects after 1006 and resumes with since', async () => {
  const { client, seen, welcomed } = setup();
  const connected = client.connect();
  const ws1 = await welcomed(1, { version: 3, text: 'abc' });
  await connected;
  assert.deepEqual(ws1.sent[0], { type: 'hello', token: 'token', client: 'c1' });
  assert.equal(client.status, 'open');
  assert.equal(client.text, 'abc');
  assert.equal(client.version, 3);
  ws1.drop(1006);
  assert.equal(client.status, 'reconnecting');
  const ws2 = await welcomed(2, { version: 3, ops: [] });
  assert.deepEqual(ws2.sent[0], { type: 'hello', token: 'token', client: 'c1', since: 3 });
  assert.deepEqual(
    seen.status.map((s) => s.status),
    ['connecting', 'open', 'reconnecting', 'open'],
  );
  assert.equal(seen.status[2].code, 1006);
  assert.ok(seen.status[2].retryInMs >= 5 && seen.status[2].retryInMs <= 10);
  client.close();
  assert.equal(client.status, 'closed');
});

test("a drain's reconnect message sets the delay before the next connection", async () => {
  const { client, welcomed, socket } = setup({ backoffInitialMs: 5000, backoffMaxMs: 5000 });
  client.connect();
  const ws1 = await welcomed(1);
  ws1.receive({ type: 'reconnect', retry_after_ms: 20 });
  ws1.drop(1012, 'service restart');
  const started = Date.now();
  await socket(2);
  const waited = Date.now() - started;
  assert.ok(waited >= 9 && waited < 1000, `reconnected after ${waited} ms, not the 5 s backoff`);
  client.close();
});

test('4009 slow_consumer is reported and the client resumes with since', async () => {
  const { client, seen, welcomed } = setup();
  client.connect();
  const ws1 = await welcomed(1, { version: 7, text: 'x' });
  ws1.receive({ type: 'error', code: 'slow_consumer', message: 'send queue full' });
  ws1.drop(4009, 'slow_consumer');
  const ws2 = await welcomed(2, { version: 7, ops: [] });
  assert.equal(ws2.sent[0].since, 7);
  assert.deepEqual(seen.errors, [{ code: 'slow_consumer', message: 'send queue full', closeCode: 4009, fatal: false }]);
  client.close();
});

for (const [code, error, expected] of [
  // An invalid document id: closed at once, with no error message (PROTOCOL.md, "Connecting").
  [4000, null, { code: 'closed', message: 'invalid document id', closeCode: 4000, fatal: true }],
  [4001, 'unauthorized', { code: 'unauthorized', message: 'no', closeCode: 4001, fatal: true }],
  [4003, 'forbidden_document', { code: 'forbidden_document', message: 'no', closeCode: 4003, fatal: true }],
]) {
  test(`close ${code} stops the client for good`, async () => {
    const { client, seen, socket, scripted } = setup();
    const connected = client.connect();
    const ws = await socket(1);
    ws.open();
    if (error) ws.receive({ type: 'error', code: error, message: 'no' });
    ws.drop(code, error ?? 'invalid document id');
    await assert.rejects(connected, new RegExp(expected.code));
    assert.equal(client.status, 'closed');
    assert.deepEqual(seen.errors, [expected]);
    await sleep(60);
    assert.equal(scripted.sockets.length, 1, 'no reconnect');
    await assert.rejects(client.whenSynced(), new RegExp(expected.code));
  });
}

test('a token function is asked again, and an expired token renewed once', async () => {
  let issued = 0;
  const { client, welcomed, socket } = setup({ token: async () => `t${++issued}` });
  client.connect();
  const ws1 = await welcomed(1, { version: 1, text: 'a' });
  assert.equal(ws1.sent[0].token, 't1');
  ws1.receive({ type: 'error', code: 'unauthorized', message: 'token expired' });
  ws1.drop(4001);
  const ws2 = await socket(2);
  ws2.open();
  assert.equal(ws2.sent[0].token, 't2');
  ws2.receive({ type: 'error', code: 'unauthorized', message: 'bad signature' });
  ws2.drop(4001);
  assert.equal(client.status, 'closed', 'a token refused before any welcome is final');
});

test('an op refused with rate_limited is resent unchanged after a delay', async () => {
  const { client, seen, welcomed } = setup();
  client.connect();
  const ws = await welcomed(1, { version: 2, text: 'hi' });
  client.insert(2, '!');
  const [op] = ws.ofType('op');
  assert.deepEqual(op.op, [2, '!']);
  ws.receive({ type: 'error', code: 'rate_limited', id: op.id, message: 'too many messages' });
  assert.equal(seen.errors[0].code, 'rate_limited');
  assert.equal(client.text, 'hi!', 'kept locally');
  await waitFor(() => ws.ofType('op').length === 2, { timeoutMs: 1000, message: 'the resend' });
  assert.deepEqual(ws.ofType('op')[1], op);
  ws.receive({ type: 'ack', id: op.id, v: 2 });
  assert.equal(client.synced, true);
  await client.whenSynced();
  client.close();
});

test('change events are in UTF-16; a catch-up batch is one change', async () => {
  const { client, seen, welcomed } = setup();
  client.connect();
  const ws1 = await welcomed(1, { version: 1, text: '😀é👩‍👩‍👧' });
  assert.deepEqual(seen.changes[0], {
    changes: [{ from: 0, to: 0, insert: '😀é👩‍👩‍👧' }],
    text: '😀é👩‍👩‍👧',
    reset: true,
    origin: 'resync',
    author: null,
    session: null,
    version: 1,
  });
  ws1.receive({ type: 'op', v: 1, op: [1, 'x'], id: '1', client: 'c2', author: 'u2', session: 's-2' });
  assert.deepEqual(seen.changes[1].changes, [{ from: 2, to: 2, insert: 'x' }]);
  assert.equal(seen.changes[1].author, 'u2');
  assert.equal(seen.changes[1].origin, 'remote');
  ws1.drop(1006);
  // Two ops in the catch-up: one change event, positions in the text before both.
  await welcomed(2, {
    version: 4,
    ops: [
      { type: 'op', v: 2, op: [{ d: 1 }], id: '2', client: 'c2', author: 'u2', session: 's-2' },
      { type: 'op', v: 3, op: [2, { d: 5 }, '🎉'], id: '3', client: 'c2', author: 'u2', session: 's-2' },
    ],
  });
  assert.equal(seen.changes.length, 3);
  assert.deepEqual(seen.changes[2].changes, [
    { from: 0, to: 2, insert: '' },
    { from: 4, to: 12, insert: '🎉' },
  ]);
  assert.equal(client.text, 'xé🎉');
  client.close();
});

test('bad local edits throw and change nothing', async () => {
  const { client, welcomed } = setup();
  assert.throws(() => client.insert(0, 'x'), /no document yet/);
  client.connect();
  const ws = await welcomed(1, { version: 1, text: 'a😀b' });
  assert.throws(() => client.insert(2, 'x'), /splits a surrogate pair/);
  assert.throws(() => client.replace(1, 9, ''), RangeError);
  assert.throws(() => client.insert(0, '\ud83d'), /lone surrogate/);
  assert.throws(() => client.insert(0, 'x'.repeat(300000)), /too large/);
  assert.equal(client.text, 'a😀b');
  assert.equal(client.pending, 0);
  assert.deepEqual(ws.ofType('op'), []);
  client.applyLocal([
    { from: 0, to: 1, insert: 'A' },
    { from: 3, to: 4, insert: 'B' },
  ]);
  assert.equal(client.text, 'A😀B');
  assert.deepEqual(ws.ofType('op')[0].op, [{ d: 1 }, 'A', 1, { d: 1 }, 'B']);
  client.close();
});

test('cursors: UTF-16 for the app, code points on the wire, coalesced', async () => {
  const { client, seen, welcomed } = setup({ presenceIntervalMs: 40 });
  client.connect();
  const ws = await welcomed(1, {
    version: 5,
    text: '😀😀 hi',
    participants: [{ session: 's-9', user: { id: 'u9', name: 'Lin' }, role: 'editor', v: 5, cursor: { anchor: 2, head: 3 } }],
  });
  assert.deepEqual(client.participants, [
    { session: 's-9', user: { id: 'u9', name: 'Lin' }, role: 'editor', cursor: { anchor: 4, head: 5 }, meta: null },
  ]);
  assert.equal(seen.presence.at(-1).reason, 'welcome');
  client.setCursor(2, 3); // 3 is inside the second emoji: it moves to its start
  client.setCursor(4, 4, { typing: true });
  client.setCursor(5);
  assert.deepEqual(ws.ofType('presence'), [{ type: 'presence', v: 5, cursor: { anchor: 1, head: 1 } }]);
  await waitFor(() => ws.ofType('presence').length === 2, { timeoutMs: 1000, message: 'coalesced presence' });
  assert.deepEqual(ws.ofType('presence')[1], { type: 'presence', v: 5, cursor: { anchor: 3, head: 3 }, meta: { typing: true } });
  assert.deepEqual(client.cursor, { anchor: 5, head: 5 });
  // A remote op moves both cursors; the presence event reports it.
  ws.receive({ type: 'op', v: 5, op: ['🎉'], id: '1', client: 'c2', author: 'u9', session: 's-9' });
  assert.deepEqual(client.participants[0].cursor, { anchor: 6, head: 7 });
  assert.equal(seen.presence.at(-1).reason, 'change');
  ws.receive({ type: 'leave', session: 's-9', reason: 'closed' });
  assert.deepEqual(seen.presence.at(-1), { participants: [], reason: 'leave' });
  client.close();
});

test('disconnect() keeps edits; connect() resumes and sends them', async () => {
  const { client, seen, welcomed, scripted } = setup();
  client.connect();
  const ws1 = await welcomed(1, { version: 1, text: 'a' });
  client.disconnect();
  assert.equal(client.status, 'offline');
  assert.equal(ws1.closed.code, 1000);
  client.insert(1, 'b');
  client.insert(2, 'c');
  assert.equal(client.pending, 2);
  assert.deepEqual(seen.status.at(-1), { status: 'offline', version: 1, pending: 2, synced: false });
  await sleep(40);
  assert.equal(scripted.sockets.length, 1, 'offline: no reconnect');
  const resumed = client.connect();
  const ws2 = await welcomed(2, { version: 1, ops: [] });
  await resumed;
  assert.equal(ws2.sent[0].since, 1);
  assert.deepEqual(ws2.ofType('op'), [{ type: 'op', id: ws2.ofType('op')[0].id, v: 1, op: [1, 'bc'] }]);
  client.close();
});
