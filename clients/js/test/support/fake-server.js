// An in-memory server for the state machine tests: one document, the server side of
// PROTOCOL.md reduced to what `ClientState` sees. Pure: messages go into per-connection
// inboxes and the test decides when each is delivered (or lost).

import * as ot from '../../src/ot.js';

export class FakeServer {
  /**
   * @param {object} [options]
   * @param {() => boolean} [options.textWelcome] answer a resume with `text` instead of `ops`
   *   (as a server that no longer has the ops after `since`).
   * @param {() => boolean} [options.failOp] refuse an op with `internal`, committing nothing.
   */
  constructor({ textWelcome = () => false, failOp = () => false } = {}) {
    this.text = '';
    this.log = []; // [{v, op, client, id, author, session}]
    this.committed = new Map(); // "client id" -> {v, frame}
    this.connections = new Set();
    this.errors = []; // every error sent
    this.sessions = 0;
    this.textWelcome = textWelcome;
    this.failOp = failOp;
  }

  get version() {
    return this.log.length;
  }

  open(role = 'editor') {
    const conn = { session: `s${++this.sessions}`, inbox: [], client: null, role, user: null, presence: null };
    return conn;
  }

  close(conn) {
    if (!this.connections.delete(conn)) return;
    this.#broadcast(conn, { type: 'leave', session: conn.session, reason: 'closed' });
  }

  receive(conn, m) {
    if (m.type === 'hello') return this.#hello(conn, m);
    if (!this.connections.has(conn)) return;
    if (m.type === 'op') return this.#op(conn, m);
    if (m.type === 'presence') {
      conn.presence = { v: m.v, cursor: m.cursor, meta: m.meta ?? null };
      this.#broadcast(conn, { type: 'presence', session: conn.session, user: conn.user, ...conn.presence });
    }
  }

  #hello(conn, m) {
    conn.client = m.client;
    conn.user = { id: `u-${m.client}`, name: m.client, color: '#000000' };
    const welcome = {
      type: 'welcome',
      doc: 'doc',
      session: conn.session,
      role: conn.role,
      user: conn.user,
      version: this.version,
      participants: [...this.connections].map((c) => ({
        session: c.session,
        user: c.user,
        role: c.role,
        v: c.presence?.v ?? 0,
        cursor: c.presence?.cursor ?? null,
      })),
      heartbeat_ms: 20000,
      limits: { max_message_bytes: 262144, messages_per_second: 100 },
    };
    if (Number.isInteger(m.since) && m.since <= this.version && !this.textWelcome()) {
      welcome.ops = this.log.slice(m.since).map((e) => this.#opMessage(e));
    } else {
      welcome.text = this.text;
    }
    conn.inbox.push(welcome);
    this.#broadcast(conn, { type: 'join', participant: { session: conn.session, user: conn.user, role: conn.role } });
    this.connections.add(conn);
  }

  #op(conn, m) {
    const key = `${conn.client} ${m.id}`;
    const frame = JSON.stringify([m.v, m.op]);
    const done = this.committed.get(key);
    if (done !== undefined) {
      // PROTOCOL.md: a resend is acknowledged with its version; a different op is invalid.
      if (done.frame === frame) conn.inbox.push({ type: 'ack', id: m.id, v: done.v });
      else this.#error(conn, 'invalid_op', m.id);
      return;
    }
    if (conn.role !== 'editor') return this.#error(conn, 'forbidden', m.id);
    if (m.v > this.version) return this.#error(conn, 'invalid_version', m.id);
    if (this.failOp()) return this.#error(conn, 'internal', m.id);
    let op = ot.normalize(m.op);
    // The ops committed since `v` stay left of this one (PROTOCOL.md, "Documents, versions, ops").
    for (const e of this.log.slice(m.v)) op = ot.transform(op, e.op, 'right');
    if (ot.inputLength(op) > ot.codePoints(this.text)) return this.#error(conn, 'invalid_op', m.id);
    this.text = ot.apply(this.text, op);
    const entry = { v: this.version, op, client: conn.client, id: m.id, author: conn.user.id, session: conn.session };
    this.log.push(entry);
    this.committed.set(key, { v: entry.v, frame });
    conn.inbox.push({ type: 'ack', id: m.id, v: entry.v });
    this.#broadcast(conn, this.#opMessage(entry));
  }

  #opMessage(e) {
    return { type: 'op', v: e.v, op: e.op, id: e.id, client: e.client, author: e.author, session: e.session };
  }

  #error(conn, code, id) {
    const error = { type: 'error', code, id, message: code.replace('_', ' ') };
    this.errors.push(error);
    conn.inbox.push(error);
  }

  #broadcast(from, message) {
    for (const c of this.connections) if (c !== from) c.inbox.push(message);
  }
}
