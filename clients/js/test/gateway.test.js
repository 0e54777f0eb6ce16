// Integration tests against a real gateway (`collab up`): convergence, reconnect and
// resend, presence, roles. Pure logic is tested without a server in the other files.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';

import WebSocket from 'ws';

import { CollabClient, applyChanges, splitsSurrogatePair } from '../src/index.js';
import { startGateway } from './support/gateway.js';
import { recordingWebSocket, seeded, sleep, waitFor, within } from './support/helpers.js';

let gateway;
const clients = [];

before(async () => {
  gateway = await startGateway();
});

after(async () => {
  for (const c of clients) c.close();
  await gateway?.stop();
});

const docId = (name) => `${name}-${randomUUID().slice(0, 8)}`;

function newClient(doc, user, { role = 'editor', WebSocketClass = WebSocket } = {}) {
  const client = new CollabClient({
    url: gateway.wsUrl(doc),
    token: gateway.token({ sub: user, name: user, doc, role }),
    WebSocket: WebSocketClass,
    backoffInitialMs: 20,
    backoffMaxMs: 200,
  });
  const seen = { errors: [], changes: [], statuses: [], mirror: '', concurrent: 0 };
  // The mirror plays the editor: it only ever sees the `change` events and its own edits.
  client.on('change', (e) => {
    seen.changes.push(e);
    if (e.origin === 'remote' && client.pending > 0) seen.concurrent++; // transformed past ours
    seen.mirror = applyChanges(seen.mirror, e.changes);
    assert.equal(seen.mirror, e.text, 'a change event must turn the editor text into client.text');
  });
  client.on('error', (e) => seen.errors.push(e));
  client.on('status', (e) => seen.statuses.push(e));
  client.seen = seen;
  clients.push(client);
  return client;
}

/** A local edit, made to the client and to its editor mirror alike. */
function edit(client, from, to, insert) {
  client.replace(from, to, insert);
  client.seen.mirror = applyChanges(client.seen.mirror, { from, to, insert });
}

const PIECES = ['a', 'bc', ' ', '\n', '😀', 'e\u0301', 'Z\u0308\u0301', '👩‍👩‍👧', '中文', 'ñ', '🎉!', '\r\n', 'ǅ'];

function boundary(text, offset) {
  return splitsSurrogatePair(text, offset) ? offset - 1 : offset;
}

function randomEdit(client, random) {
  const text = client.text;
  const at = boundary(text, Math.floor(random() * (text.length + 1)));
  if (text.length > 10 && random() < 0.3) {
    const to = boundary(text, Math.min(text.length, at + 1 + Math.floor(random() * 4)));
    if (to > at) return edit(client, at, to, random() < 0.5 ? '' : PIECES[Math.floor(random() * PIECES.length)]);
  }
  edit(client, at, at, PIECES[Math.floor(random() * PIECES.length)]);
}

/** Wait until every client is synced and at the server's version; return the server's document. */
async function converged(doc, group) {
  await within(15000, Promise.all(group.map((c) => c.whenSynced())), 'whenSynced');
  const server = await gateway.document(doc);
  await waitFor(() => group.every((c) => c.version === server.version), { message: `version ${server.version}` });
  for (const c of group) {
    assert.equal(c.text, server.text, `${c.user?.id} has the server text`);
    assert.equal(c.seen.mirror, server.text, `${c.user?.id}'s editor has the server text`);
  }
  return server;
}

async function assertUniqueHistory(doc) {
  const { ops } = await gateway.history(doc);
  const keys = ops.map((op) => `${op.client} ${op.id}`);
  assert.equal(new Set(keys).size, keys.length, 'no (client, id) committed twice');
  return ops;
}

test('two clients typing concurrently converge on the server text', async () => {
  const doc = docId('converge');
  const a = newClient(doc, 'ada');
  const b = newClient(doc, 'lin');
  await Promise.all([a.connect(), b.connect()]);
  edit(a, 0, 0, 'start\n');
  await a.whenSynced();
  await waitFor(() => b.text === a.text, { message: 'b has the start' });
  const random = seeded(20240611);
  for (let round = 0; round < 80; round++) {
    for (const c of [a, b]) {
      randomEdit(c, random);
      const at = boundary(c.text, Math.floor(random() * (c.text.length + 1)));
      c.setCursor(at, boundary(c.text, Math.min(c.text.length, at + Math.floor(random() * 3))));
    }
    // Mostly let frames cross in flight; now and then let acks and ops arrive.
    await (round % 7 === 0 ? sleep(random() * 15) : new Promise(setImmediate));
  }
  const server = await converged(doc, [a, b]);
  assert.ok(server.version > 4, 'the edits were committed as several ops');
  assert.ok(a.seen.concurrent + b.seen.concurrent > 0, 'remote ops crossed pending local ones');
  assert.ok(a.seen.changes.some((e) => e.origin === 'remote' && e.author === 'lin'));
  assert.match(server.text, /😀|👩‍👩‍👧|e\u0301/u);
  assert.deepEqual([...a.seen.errors, ...b.seen.errors], []);
  await assertUniqueHistory(doc);
  // Each sees the other's last selection where the other has it, in UTF-16 offsets.
  const seenBy = (viewer, other) => viewer.participants.find((p) => p.session === other.session)?.cursor;
  await waitFor(
    () => JSON.stringify(seenBy(a, b)) === JSON.stringify(b.cursor) && JSON.stringify(seenBy(b, a)) === JSON.stringify(a.cursor),
    { message: () => `cursors to agree: ${JSON.stringify([seenBy(a, b), b.cursor, seenBy(b, a), a.cursor])}` },
  );
});

test('a dropped connection reconnects, resends and applies nothing twice', async () => {
  const doc = docId('drop');
  const recording = recordingWebSocket();
  const a = newClient(doc, 'ada', { WebSocketClass: recording.WebSocket });
  const b = newClient(doc, 'lin');
  await Promise.all([a.connect(), b.connect()]);
  const random = seeded(99);
  const aOpen = () => waitFor(() => a.status === 'open', { message: 'a open' });
  for (let i = 0; i < 30; i++) {
    if (i === 8 || i === 16) await aOpen();
    // Unique tokens, never deleted: each must be in the final text exactly once.
    edit(a, a.text.length, a.text.length, `[a${i}😀]`);
    edit(b, 0, 0, `[b${i}e\u0301]`);
    if (i === 8 || i === 16) {
      // Terminate the TCP connection with the op just sent in flight (1006, no close frame).
      a.socket.terminate();
    }
    if (i === 12) {
      // The op in flight never reaches the server: it must be resent after the reconnect.
      await a.whenSynced();
      a.socket.hold = true;
      edit(a, a.text.length, a.text.length, '[held]');
      a.socket.terminate();
    }
    if (i === 22) {
      // Lose the ack: the server commits the op, the client never hears of it, then the
      // connection drops; the welcome's catch-up `ops` must carry it as ours.
      await a.whenSynced();
      a.socket.swallow = true;
      edit(a, a.text.length, a.text.length, '[lost-ack]');
      await sleep(300);
      a.socket.terminate();
    }
    await sleep(random() * 8);
  }
  await converged(doc, [a, b]);
  const text = a.text;
  for (let i = 0; i < 30; i++) {
    assert.equal(text.split(`[a${i}😀]`).length, 2, `[a${i}] once`);
    assert.equal(text.split(`[b${i}e\u0301]`).length, 2, `[b${i}] once`);
  }
  assert.equal(text.split('[lost-ack]').length, 2);
  assert.equal(text.split('[held]').length, 2);
  const ops = await assertUniqueHistory(doc);
  assert.ok(ops.every((op) => op.client === a.clientId || op.client === b.clientId));

  assert.ok(recording.sockets.length >= 4, `a connected ${recording.sockets.length} times`);
  const hellos = recording.sockets.slice(1).map((s) => s.sent.find((m) => m.type === 'hello'));
  assert.ok(hellos.every((h) => Number.isInteger(h.since)), 'every reconnect resumes with since');
  // Some op was resent on a new connection with its original id, v and op.
  const sentOn = new Map();
  let resent = 0;
  recording.sockets.forEach((socket, n) => {
    for (const m of socket.sent.filter((m) => m.type === 'op')) {
      const earlier = sentOn.get(m.id);
      if (earlier && earlier.n !== n) {
        assert.deepEqual(m, earlier.m, 'a resend repeats the op exactly');
        resent++;
      }
      sentOn.set(m.id, { n, m });
    }
  });
  assert.ok(resent >= 1, 'an op in flight was resent after a reconnect');
  // The op whose ack was lost came back in a welcome's catch-up ops, recognised as ours.
  const caughtUp = recording.sockets.flatMap((s) => s.received.filter((m) => m.type === 'welcome' && m.ops));
  assert.ok(caughtUp.some((w) => w.ops.some((op) => op.client === a.clientId && JSON.stringify(op.op).includes('[lost-ack]'))));
  assert.ok(a.seen.statuses.some((s) => s.status === 'reconnecting'));
});

test('a remote cursor is shown at the right UTF-16 position after edits', async () => {
  const doc = docId('presence');
  const a = newClient(doc, 'ada');
  const b = newClient(doc, 'lin');
  await a.connect();
  edit(a, 0, 0, 'héllo 😀 wörld\n👩‍👩‍👧 e\u0301nd');
  await a.whenSynced();
  await b.connect();
  assert.equal(b.text, a.text);
  const lin = () => a.participants.find((p) => p.user.id === 'lin');

  b.setCursor(8, 8, { typing: false }); // 'héllo 😀' is 8 UTF-16 units
  await waitFor(() => lin()?.cursor?.head === 8, { message: 'b cursor at 8' });
  assert.deepEqual(lin().cursor, { anchor: 8, head: 8 });
  assert.deepEqual(lin().meta, { typing: false });
  assert.equal(lin().user.name, 'lin');

  // b types before its own caret: the caret moves, and a sees it where b does.
  edit(b, 0, 0, '🎉🎉');
  assert.deepEqual(b.cursor, { anchor: 12, head: 12 });
  await waitFor(() => a.text.startsWith('🎉🎉') && lin()?.cursor?.head === 12, { message: 'b cursor at 12' });

  // A selection across an emoji and a combining mark, then a remote edit inside it.
  const start = b.text.indexOf('👩');
  const end = b.text.indexOf('nd');
  b.setCursor(start, end);
  await waitFor(() => lin()?.cursor?.anchor === start && lin()?.cursor?.head === end, { message: 'selection' });
  edit(a, 0, 2, ''); // a deletes one 🎉: b's selection moves left by 2 units in both views
  await waitFor(() => lin()?.cursor?.anchor === start - 2 && b.text === a.text, { message: 'mapped by a' });
  assert.deepEqual(lin().cursor, { anchor: start - 2, head: end - 2 });

  // A pending local edit moves the remote cursor in local coordinates at once.
  edit(a, 0, 0, 'ab😀');
  assert.deepEqual(lin().cursor, { anchor: start + 2, head: end + 2 });
  await converged(doc, [a, b]);
  assert.deepEqual(lin().cursor, { anchor: start + 2, head: end + 2 });
  const ada = b.participants.find((p) => p.user.id === 'ada');
  assert.ok(ada, 'b lists a');
  assert.equal(ada.cursor, null);
});

test('a viewer cannot edit: the op is refused and rolled back', async () => {
  const doc = docId('viewer');
  const a = newClient(doc, 'ada');
  await a.connect();
  edit(a, 0, 0, 'read 📖 only');
  await a.whenSynced();
  const v = newClient(doc, 'vic', { role: 'viewer' });
  await v.connect();
  assert.equal(v.role, 'viewer');
  edit(v, 5, 5, 'X');
  assert.equal(v.text, 'read X📖 only');
  await waitFor(() => v.seen.errors.length > 0, { message: 'an error event' });
  assert.equal(v.seen.errors[0].code, 'forbidden');
  assert.equal(v.seen.errors[0].rolledBack, true);
  assert.equal(v.text, 'read 📖 only');
  assert.equal(v.seen.mirror, 'read 📖 only');
  assert.equal(v.seen.changes.at(-1).origin, 'rollback');
  assert.equal(v.pending, 0);
  const server = await gateway.document(doc);
  assert.equal(server.text, 'read 📖 only');
  assert.equal(server.version, 1);
});

test('a bad token stops the client for good', async () => {
  const doc = docId('denied');
  const client = new CollabClient({ url: gateway.wsUrl(doc), token: 'not-a-jwt', WebSocket });
  clients.push(client);
  const errors = [];
  client.on('error', (e) => errors.push(e));
  await assert.rejects(within(5000, client.connect()), /unauthorized/);
  assert.equal(client.status, 'closed');
  assert.deepEqual(
    errors.map((e) => [e.code, e.closeCode, e.fatal]),
    [['unauthorized', 4001, true]],
  );
});

// Last: it restarts the gateway process.
test('a draining gateway: the client honours retry_after_ms and resumes', async () => {
  const doc = docId('drain');
  const recording = recordingWebSocket();
  const a = newClient(doc, 'ada', { WebSocketClass: recording.WebSocket });
  await a.connect();
  edit(a, 0, 0, 'before 😀 ');
  await a.whenSynced();
  await gateway.restartGateway();
  await waitFor(() => a.status !== 'open', { message: 'the drain' });
  edit(a, a.text.length, a.text.length, 'during'); // buffered while the gateway restarts
  await waitFor(() => a.status === 'open', { timeoutMs: 15000, message: 'reconnected to the new gateway' });
  edit(a, a.text.length, a.text.length, ' after');
  const server = await converged(doc, [a]);
  assert.equal(server.text, 'before 😀 during after');
  const reconnect = recording.sockets[0].received.find((m) => m.type === 'reconnect');
  assert.ok(reconnect, 'the gateway sent reconnect before closing');
  const drained = a.seen.statuses.find((s) => s.status === 'reconnecting' && s.code === 1012);
  assert.ok(drained, 'closed with 1012');
  assert.equal(drained.retryInMs, reconnect.retry_after_ms);
  await assertUniqueHistory(doc);
});
