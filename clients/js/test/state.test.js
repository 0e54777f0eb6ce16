// The OT client state machine against an in-memory server. Pure: no sockets, no timers.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import * as ot from '../src/ot.js';
import { ClientState } from '../src/state.js';
import { FakeServer } from './support/fake-server.js';
import { seeded } from './support/helpers.js';

/** One client: its state, its connection to the fake server, its unsent frames. */
class Peer {
  constructor(server, name, role = 'editor') {
    this.server = server;
    this.name = name;
    this.role = role;
    this.state = new ClientState(name, { idPrefix: `${name}-` });
    this.conn = null;
    this.up = []; // client -> server, not delivered yet
    this.events = [];
    this.sent = []; // every frame sent, in order
    this.retry = false;
  }

  connect() {
    this.conn = this.server.open(this.role);
    this.state.connect('token');
    this.pump();
  }

  /** The connection ends: frames in either direction not delivered yet are lost. */
  drop() {
    if (this.conn === null) return;
    this.server.close(this.conn);
    this.conn = null;
    this.up = [];
    this.state.connectionLost();
  }

  pump() {
    const messages = this.state.messagesToSend();
    this.up.push(...messages);
    this.sent.push(...messages);
    for (const e of this.state.eventsReceived()) {
      this.events.push(e);
      if (e.type === 'resync') this.drop();
      if (e.type === 'rejected' && e.retry) this.retry = true;
    }
  }

  send(n = Infinity) {
    while (n-- > 0 && this.up.length && this.conn) this.server.receive(this.conn, this.up.shift());
  }

  deliver(n = Infinity) {
    while (n-- > 0 && this.conn?.inbox.length) {
      this.state.receive(this.conn.inbox.shift());
      this.pump();
    }
  }

  /** Exchange frames until nothing moves. */
  settle() {
    for (let i = 0; i < 1000 && this.conn && (this.up.length || this.conn.inbox.length); i++) {
      this.send();
      this.deliver();
    }
  }

  edit(op) {
    this.state.localEdit(op);
    this.pump();
  }

  ops() {
    return this.sent.filter((m) => m.type === 'op');
  }

  eventsOf(type) {
    return this.events.filter((e) => e.type === type);
  }
}

function settleAll(peers) {
  for (let i = 0; i < 100; i++) {
    for (const p of peers) {
      if (p.conn === null) p.connect();
      if (p.retry) {
        p.retry = false;
        p.state.resend();
        p.pump();
      }
      p.settle();
    }
    if (peers.every((p) => p.conn && !p.up.length && !p.conn.inbox.length && !p.retry)) return;
  }
  throw new Error('did not settle');
}

test('the first welcome gives the text and version; edits wait for it', () => {
  const server = new FakeServer();
  server.text = 'héllo 😀';
  server.log.push({ v: 0, op: ['héllo 😀'], client: 'x', id: '1', author: 'x', session: 's0' });
  const a = new Peer(server, 'a');
  assert.throws(() => a.state.localEdit(['x']), /wait for welcome/);
  a.connect();
  assert.deepEqual(a.up, [{ type: 'hello', token: 'token', client: 'a' }]);
  a.settle();
  assert.equal(a.state.text, 'héllo 😀');
  assert.equal(a.state.version, 1);
  assert.equal(a.eventsOf('changed')[0].origin, 'resync');
});

test('one op in flight, the rest composed into a buffer', () => {
  const server = new FakeServer();
  const a = new Peer(server, 'a');
  a.connect();
  a.settle();
  a.edit(['a']);
  a.edit([1, 'b']);
  a.edit([2, 'c']);
  assert.deepEqual(a.ops(), [{ type: 'op', id: 'a-1', v: 0, op: ['a'] }]);
  assert.equal(a.state.pendingEdits, 3);
  a.settle();
  assert.deepEqual(a.ops().at(-1), { type: 'op', id: 'a-2', v: 1, op: [1, 'bc'] });
  assert.equal(server.text, 'abc');
  assert.equal(a.state.version, 2);
  assert.equal(a.state.pendingEdits, 0);
  assert.deepEqual(a.eventsOf('synced').at(-1), { type: 'synced', version: 2 });
});

test('concurrent inserts at one position: the op committed first stays left', () => {
  const server = new FakeServer();
  const a = new Peer(server, 'a');
  const b = new Peer(server, 'b');
  settleAll([a, b]);
  a.edit(['A']);
  b.edit(['B']);
  a.send(); // a's op is committed first
  b.send();
  settleAll([a, b]);
  assert.equal(server.text, 'AB');
  assert.equal(a.state.text, 'AB');
  assert.equal(b.state.text, 'AB');
  const remote = b.eventsOf('changed').find((e) => e.origin === 'remote');
  assert.deepEqual(remote.op, ['A']);
  assert.equal(remote.author, 'u-a');
});

test("an own op in the welcome's catch-up ops counts as acknowledged", () => {
  const server = new FakeServer();
  const a = new Peer(server, 'a');
  settleAll([a]);
  a.edit(['hi 😀']);
  a.send(); // committed; the ack is lost with the connection
  a.drop();
  a.connect();
  assert.equal(a.up[0].since, 0);
  a.settle();
  assert.equal(a.state.text, 'hi 😀');
  assert.equal(a.state.version, 1);
  assert.equal(a.ops().length, 1, 'not resent');
  assert.deepEqual(a.eventsOf('acknowledged'), [{ type: 'acknowledged', id: 'a-1', v: 0 }]);
});

test('pending ops are resent with their original id and v after a reconnect', () => {
  const server = new FakeServer();
  const a = new Peer(server, 'a');
  const b = new Peer(server, 'b');
  settleAll([a, b]);
  a.edit(['a']);
  a.edit([1, '😀']);
  a.drop(); // the op in flight never reached the server
  b.edit(['b']);
  b.settle();
  a.connect();
  a.settle();
  const ops = a.ops();
  assert.deepEqual(ops[1], ops[0], 'the same frame again');
  assert.deepEqual(ops[0], { type: 'op', id: 'a-1', v: 0, op: ['a'] });
  settleAll([a, b]);
  assert.equal(server.text, 'ba😀');
  assert.equal(a.state.text, 'ba😀');
  assert.equal(b.state.text, 'ba😀');
  assert.deepEqual(server.errors, []);
});

test('retryable refusals keep the op for an unchanged resend', () => {
  let fail = 1;
  const server = new FakeServer({ failOp: () => fail-- > 0 });
  const a = new Peer(server, 'a');
  settleAll([a]);
  a.edit(['x']);
  a.settle();
  assert.deepEqual(a.eventsOf('rejected'), [
    { type: 'rejected', id: 'a-1', code: 'internal', message: 'internal', retry: true },
  ]);
  assert.equal(a.state.text, 'x');
  a.state.resend();
  a.pump();
  a.settle();
  assert.deepEqual(a.ops()[1], a.ops()[0]);
  assert.equal(server.text, 'x');
  assert.equal(a.state.synced, true);
});

test('a refused op is rolled back; the buffer behind it survives the undo', () => {
  const server = new FakeServer();
  server.text = 'abc';
  server.log.push({ v: 0, op: ['abc'], client: 'x', id: '1', author: 'x', session: 's0' });
  const v = new Peer(server, 'v', 'viewer');
  settleAll([v]);
  v.edit([1, 'X']); // in flight
  v.edit([3, 'Y']); // buffered: aXbYc
  assert.equal(v.state.text, 'aXbYc');
  v.send(1);
  v.deliver();
  assert.equal(v.state.text, 'abYc');
  const rollback = v.eventsOf('changed').at(-1);
  assert.equal(rollback.origin, 'rollback');
  assert.equal(rollback.before, 'aXbYc');
  assert.deepEqual(v.eventsOf('rejected')[0], { type: 'rejected', id: 'v-1', code: 'forbidden', message: 'forbidden', retry: false });
  v.settle(); // the buffer, now in flight, is refused too
  assert.equal(v.state.text, 'abc');
  assert.equal(v.state.pendingEdits, 0);
  assert.equal(server.version, 1);
});

test('presence is sent at the server version, mapped back through pending ops', () => {
  const server = new FakeServer();
  const a = new Peer(server, 'a');
  settleAll([a]);
  a.edit(['hello']);
  a.settle();
  a.edit(['abc']); // pending: "abchello"
  a.state.setCursor(5, 5, { typing: true }); // abche|llo
  a.pump();
  assert.deepEqual(a.up.at(-1), { type: 'presence', v: 1, cursor: { anchor: 2, head: 2 }, meta: { typing: true } });
  a.state.setCursor(1, 6); // from inside the pending insert
  a.pump();
  assert.deepEqual(a.up.at(-1).cursor, { anchor: 0, head: 3 });
});

test('remote cursors are mapped through later ops and through pending local ops', () => {
  const server = new FakeServer();
  const a = new Peer(server, 'a');
  const b = new Peer(server, 'b');
  settleAll([a, b]);
  a.edit(['hello']);
  settleAll([a, b]);
  b.state.setCursor(3); // hel|lo at v1
  b.pump();
  a.edit(['XX']); // committed as v1 before b's presence reaches a
  a.send();
  b.send();
  a.deliver();
  const peer = () => a.state.participants.find((p) => p.session === b.conn.session);
  assert.deepEqual(peer().cursor, [5, 5], 'v1 cursor mapped through the op at v1');
  a.edit(['Y']); // pending locally
  assert.deepEqual(peer().cursor, [6, 6]);
  settleAll([a, b]);
  assert.deepEqual(peer().cursor, [6, 6]);
  assert.deepEqual(b.state.cursor, [6, 6]);
});

test('a welcome with text while an op is in flight: committed once, never twice', () => {
  for (const received of [true, false]) {
    const server = new FakeServer({ textWelcome: () => true });
    const a = new Peer(server, 'a');
    const b = new Peer(server, 'b');
    settleAll([a, b]);
    a.edit(['one ']);
    if (received) a.send(); // committed, ack lost
    a.drop();
    a.edit([4, 'two']); // buffered while offline
    b.edit(['B']);
    b.settle();
    settleAll([a, b]);
    // Committed first, "one " stays left of "B"; never committed, it goes after it.
    assert.equal(server.text, received ? 'one Btwo' : 'Bone two', `received: ${received}`);
    assert.equal(a.state.text, server.text);
    assert.equal(b.state.text, server.text);
    const ids = server.log.map((e) => `${e.client} ${e.id}`);
    assert.equal(new Set(ids).size, ids.length);
    assert.deepEqual(server.errors, []);
  }
});

test('a gap in versions makes the client resync with since', () => {
  const server = new FakeServer();
  const a = new Peer(server, 'a');
  settleAll([a]);
  a.state.receive({ type: 'op', v: 3, op: ['x'], id: '1', client: 'z' });
  a.pump();
  assert.equal(a.eventsOf('resync').length, 1);
  assert.equal(a.conn, null);
  assert.equal(a.state.phase, 'closed');
});

test('a newcomer welcomed with text gets cursors again at the current version', () => {
  const server = new FakeServer();
  const a = new Peer(server, 'a');
  settleAll([a]);
  a.edit(['hello']);
  a.state.setCursor(2);
  a.pump();
  settleAll([a]);
  a.edit([5, ' world']); // a's last presence stays at v1: others map it through this op
  settleAll([a]);
  assert.deepEqual(a.up, []);
  const b = new Peer(server, 'b');
  b.connect(); // welcomed with text at v2, a's cursor at v1: no op to map it with
  b.settle();
  a.settle(); // a sees b join and sends its presence again, at v2
  assert.deepEqual(a.sent.at(-1), { type: 'presence', v: 2, cursor: { anchor: 2, head: 2 } });
  b.settle();
  assert.deepEqual(b.state.participants[0].cursor, [2, 2]);
});

test('a newcomer gets meta again, which welcome participants lack', () => {
  const server = new FakeServer();
  const a = new Peer(server, 'a');
  settleAll([a]);
  a.state.setCursor(0, 0, { typing: true });
  a.pump();
  settleAll([a]);
  const b = new Peer(server, 'b');
  b.connect();
  b.settle();
  a.settle();
  b.settle();
  assert.deepEqual(b.state.participants[0].meta, { typing: true });
  const c = new Peer(server, 'c');
  a.state.setCursor(0, 0, null); // no meta any more: a join at the same version sends nothing
  a.pump();
  settleAll([a, b]);
  const sent = a.sent.length;
  c.connect();
  c.settle();
  a.settle();
  assert.equal(a.sent.length, sent);
});

test('a reconnect message is passed on with its delay', () => {
  const server = new FakeServer();
  const a = new Peer(server, 'a');
  settleAll([a]);
  a.state.receive({ type: 'reconnect', retry_after_ms: 350 });
  a.pump();
  assert.deepEqual(a.eventsOf('reconnect'), [{ type: 'reconnect', retryAfterMs: 350 }]);
});

test('random edits, drops, lost frames and text welcomes converge (seeded)', () => {
  for (let seed = 1; seed <= 25; seed++) {
    const random = seeded(seed);
    const server = new FakeServer({ textWelcome: () => random() < 0.2, failOp: () => random() < 0.05 });
    const peers = ['a', 'b', 'c'].map((name) => new Peer(server, name));
    settleAll(peers);
    const pieces = ['x', '😀', 'e\u0301', '\n', 'ab', '中'];
    for (let step = 0; step < 300; step++) {
      const p = peers[Math.floor(random() * peers.length)];
      const r = random();
      if (r < 0.35) {
        const n = ot.codePoints(p.state.text);
        const at = Math.floor(random() * (n + 1));
        const del = at < n && random() < 0.3 ? 1 + Math.floor(random() * Math.min(3, n - at)) : 0;
        const op = [];
        if (at) op.push(at);
        if (del) op.push({ d: del });
        op.push(pieces[Math.floor(random() * pieces.length)]);
        p.edit(op);
      } else if (r < 0.45 && p.conn) {
        const n = ot.codePoints(p.state.text);
        p.state.setCursor(Math.floor(random() * (n + 1)), Math.floor(random() * (n + 1)));
        p.pump();
      } else if (r < 0.65) {
        p.send(1);
      } else if (r < 0.9) {
        p.deliver(1);
      } else if (r < 0.95) {
        p.drop();
      } else if (p.conn === null) {
        p.connect();
      } else if (p.retry) {
        p.retry = false;
        p.state.resend();
        p.pump();
      }
    }
    settleAll(peers);
    settleAll(peers); // presence sent after the last acks
    for (const p of peers) {
      assert.equal(p.state.text, server.text, `seed ${seed}: ${p.name}`);
      assert.equal(p.state.version, server.version);
      assert.equal(p.state.synced, true);
      for (const q of peers) {
        if (q === p || q.state.cursor === null) continue;
        const seen = p.state.participants.find((x) => x.session === q.conn.session);
        assert.deepEqual(seen?.cursor, q.state.cursor, `seed ${seed}: ${p.name} sees ${q.name}'s cursor`);
      }
    }
    const ids = server.log.map((e) => `${e.client} ${e.id}`);
    assert.equal(new Set(ids).size, ids.length, `seed ${seed}: an op committed twice`);
    assert.deepEqual(
      server.errors.filter((e) => e.code !== 'internal'),
      [],
      `seed ${seed}`,
    );
  }
});
