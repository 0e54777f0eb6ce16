// The client side of the collaboration protocol as a state machine (PROTOCOL.md, "Editing").
//
// It owns one client's view of one document: the local text, the classic OT client's one
// op in flight and the buffer composed behind it, resume with `since`, and the other
// participants' cursors in local coordinates. Sans-I/O: no awaits, no clock, no network,
// no randomness. Feed it decoded server messages with `receive()` and the user's edits
// with `localEdit()`; after every call, send `messagesToSend()` in order and handle
// `eventsReceived()`. All positions here are code points, as on the wire; `client.js`
// converts from and to UTF-16.
//
// It is a port of the Python client's `collab_client/state.py` and makes the same choices
// where PROTOCOL.md is silent:
//
// - A `welcome` with `text` while ops are pending (the server lacks the ops after
//   `since`): the ops in between are unknown, and so is whether the op in flight was
//   committed. The welcome text is taken as the truth about everything sent. The buffer,
//   which was never sent, is rebased onto it through a diff and becomes the next op. The
//   op in flight leaves the local text but is resent with its original id and `v` as a
//   *ghost*, so the server commits it if it still can and never twice: an `ack` below the
//   welcome version means it is in the text already; at or above it, the client resyncs
//   to receive it as an op; an error drops it. An unacknowledged op may so be lost, never
//   applied twice.
// - Presence while ops are pending is sent at the server version, the cursor mapped back
//   through the pending ops (a caret in pending text sits at its insertion point), and
//   sent again after an ack when the committed op moved it.
// - A gap (an op or ack above the client's version) or `invalid_version` for the op in
//   flight makes the client stale: it ignores the rest of the connection and emits
//   `resync`; the caller closes, calls `connectionLost()` and reconnects, and `since`
//   repairs the state. After `invalid_version` the op, known uncommitted, is reissued with
//   a new id.

import * as ot from './ot.js';
import { ErrorCode, RETRYABLE_ERRORS } from './protocol.js';

/**
 * Events, drained with `eventsReceived()`; each is a plain object with a `type`:
 *
 * - `welcomed` {session, role, user, version, limits, heartbeatMs}
 * - `changed` {op, before, origin, author, session}: `op` (code points) turned the local
 *   text `before` into the current one. `origin` is "remote" (someone's op), "resync"
 *   (a welcome with text) or "rollback" (an own op refused).
 * - `acknowledged` {id, v}; `synced` {version}: nothing local is pending any more.
 * - `rejected` {id, code, message, retry}: with `retry`, call `resend()` after a delay;
 *   otherwise the op is gone (rolled back with a `changed`).
 * - `resync` {reason}: close the connection, call `connectionLost()`, reconnect.
 * - `reconnect` {retryAfterMs}: the gateway drains; it closes with 1012 next.
 * - `serverError` {code, message, id}
 * - `joined` {participant}, `left` {session, reason}, `presence` {participant}
 */

const sameCursor = (a, b) => (a === null ? b === null : b !== null && a[0] === b[0] && a[1] === b[1]);
const sameJson = (a, b) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);

export class ClientState {
  /**
   * @param {string} clientId kept across reconnects (PROTOCOL.md, "Connecting").
   * @param {object} [options]
   * @param {string} [options.idPrefix] prefixed to op ids. `(client, id)` names an op
   *   forever, so a client id reused by a later instance (kept in storage, say) must not
   *   reuse op ids: give each instance its own prefix.
   * @param {number} [options.historyLimit] server ops kept to map presence sent at older versions.
   */
  constructor(clientId, { idPrefix = '', historyLimit = 256 } = {}) {
    this.clientId = clientId;
    /** "closed" | "connecting" | "open" | "stale" (connected but out of step). */
    this.phase = 'closed';
    this._idPrefix = idPrefix;
    this._historyLimit = historyLimit;
    this._text = '';
    this._serverText = '';
    this._version = null;
    this._inflight = null; // {id, v, sent, op, inText, status, edits}
    this._buffer = [];
    this._bufferEdits = 0;
    this._opCounter = 0;
    this._fullResync = false;
    this._history = []; // [v, op], contiguous by version
    this._peers = new Map(); // session -> {session, user, role, v, cursor: [a, h] | null, meta}
    this._cursor = null; // [anchor, head], local code points
    this._meta = null;
    this._presenceSet = false;
    this._presenceSent = null; // [v, cursor, meta] as last sent on this connection
    this._presenceWireV = null; // the `v` of the last presence message actually sent
    this._outgoing = [];
    this._events = [];
  }

  // Accessors.

  get text() {
    return this._text;
  }

  /** The server version: ops applied, own acknowledged ones included; null before welcome. */
  get version() {
    return this._version;
  }

  /** Local changes not yet acknowledged, as one op on the server's text. */
  get pending() {
    const f = this._inflight;
    return f && f.inText ? ot.compose(f.op, this._buffer) : [...this._buffer];
  }

  /** Local edits (calls of `localEdit`) not yet acknowledged. */
  get pendingEdits() {
    return (this._inflight ? this._inflight.edits : 0) + this._bufferEdits;
  }

  get synced() {
    return this._inflight === null && this._buffer.length === 0;
  }

  /** The limits announced by the last welcome (PROTOCOL.md, "Connecting"). */
  get limits() {
    return this._limits ?? null;
  }

  /** The local selection as [anchor, head] in code points, or null. */
  get cursor() {
    return this._cursor === null ? null : [...this._cursor];
  }

  /** The other sessions: [{session, user, role, cursor: [a, h] | null, meta}], local code points. */
  get participants() {
    return [...this._peers.values()].map((p) => this._participant(p));
  }

  // Outputs.

  /** Drain the messages to send, in order, as JSON-ready objects. */
  messagesToSend() {
    const out = this._outgoing;
    this._outgoing = [];
    return out;
  }

  /** Drain the events for the application, in the order they happened. */
  eventsReceived() {
    const out = this._events;
    this._events = [];
    return out;
  }

  // Inputs.

  /** Start a connection. After calling this method, send `messagesToSend()`. */
  connect(token) {
    if (this.phase !== 'closed') throw new Error(`connect() while ${this.phase}`);
    const hello = { type: 'hello', token, client: this.clientId };
    if (this._version !== null && !this._fullResync) hello.since = this._version;
    this.phase = 'connecting';
    this._presenceSent = null;
    this._outgoing = [hello];
  }

  /** The WebSocket closed. Unsent messages are dropped; pending ops are kept. */
  connectionLost() {
    this.phase = 'closed';
    this._outgoing = [];
    this._peers.clear();
  }

  /**
   * Apply the user's `op` (code points) to the local text. Throws a RangeError if it does
   * not fit. After calling this method, send `messagesToSend()`.
   */
  localEdit(op) {
    if (this._version === null) throw new Error('no document yet: wait for welcome');
    op = ot.normalize(op);
    if (ot.inputLength(op) > ot.codePoints(this._text)) {
      throw new RangeError('the edit does not fit the document');
    }
    if (op.length === 0) return;
    const text = ot.apply(this._text, op);
    const buffer = ot.compose(this._buffer, op);
    const limit = this._limits?.max_message_bytes;
    // The buffer is sent as one frame, and a frame over the limit ends the connection
    // (1009) with an op that a resend must repeat: refuse the edit while it can be.
    if (limit && opFrameBytes(this._version, buffer) > limit) {
      throw new RangeError(`edit too large: the op would exceed ${limit} bytes`);
    }
    this._text = text;
    this._buffer = buffer;
    this._bufferEdits++;
    this._mapOwnCursor(op);
    this._flush();
  }

  /**
   * Set the local selection (code points); `meta` replaces the last one given unless
   * undefined. After calling this method, send `messagesToSend()`.
   */
  setCursor(anchor, head = anchor, meta = undefined) {
    const n = ot.codePoints(this._text);
    if (!(anchor >= 0 && anchor <= n && head >= 0 && head <= n)) {
      throw new RangeError('cursor outside the document');
    }
    this._cursor = [anchor, head];
    this._setPresence(meta);
  }

  clearCursor(meta = undefined) {
    this._cursor = null;
    this._setPresence(meta);
  }

  /**
   * Ask for the whole text on the next connection instead of the ops since our version,
   * when the local state cannot be trusted (a server message it could not take).
   */
  requireFullResync() {
    this._fullResync = true;
  }

  /**
   * Send the op in flight again, unchanged; the server never applies it twice. Call it
   * after a `rejected` event with `retry`, after a delay of your choice.
   */
  resend() {
    if (this.phase === 'open' && this._inflight !== null) this._sendInflight();
  }

  /**
   * Handle one decoded server message. After calling this method, send `messagesToSend()`
   * and handle `eventsReceived()`. Unknown message types are ignored (forward compatibility).
   */
  receive(m) {
    if (this.phase === 'closed') throw new Error('receive() without a connection');
    const kind = m.type;
    if (kind === 'welcome' && this.phase === 'connecting') {
      this._onWelcome(m);
    } else if (kind === 'error') {
      this._onError(m);
    } else if (kind === 'reconnect') {
      this._events.push({ type: 'reconnect', retryAfterMs: Number(m.retry_after_ms ?? 0) });
    } else if (this.phase !== 'open') {
      return;
    } else if (kind === 'op') {
      this._onOp(m);
    } else if (kind === 'ack') {
      this._onAck(m);
    } else if (kind === 'presence') {
      this._onPresence(m);
    } else if (kind === 'join') {
      const p = m.participant ?? {};
      const peer = newPeer(p);
      this._peers.set(peer.session, peer);
      this._events.push({ type: 'joined', participant: this._participant(peer) });
      // A newcomer welcomed with `text` has no ops to map a cursor from an older version
      // (welcome `participants` carry each one's `v`), and welcome `participants` carry no
      // `meta`: then send ours again, at the current version.
      const stale = this._presenceWireV !== this._version || this._meta !== null;
      if (this._presenceSent !== null && stale) this._presenceSent = null;
    } else if (kind === 'leave') {
      const session = String(m.session);
      if (this._peers.delete(session)) {
        this._events.push({ type: 'left', session, reason: String(m.reason ?? '') });
      }
    }
    this._flush();
    this._sendPresence();
  }

  // Server messages.

  _onWelcome(m) {
    this.phase = 'open';
    const version = Number(m.version);
    this._limits = m.limits ?? null;
    this._events.push({
      type: 'welcomed',
      session: m.session,
      role: m.role,
      user: m.user,
      version,
      limits: m.limits ?? null,
      heartbeatMs: m.heartbeat_ms ?? null,
    });
    this._peers = new Map();
    if ('ops' in m && this._version !== null) {
      this._setPeers(m.participants ?? []);
      for (const opMessage of m.ops) this._onOp(opMessage);
      if (this.phase === 'open' && this._version !== version) {
        this._resync(`welcome at ${version} but caught up to ${this._version}`);
      }
      const f = this._inflight;
      if (this.phase === 'open' && f !== null) {
        if (f.status === 'refused') {
          // The server said it is not committed; its v is unusable (PROTOCOL.md).
          Object.assign(f, { id: this._newId(), v: version, sent: f.op, status: 'sent' });
        }
        this._sendInflight();
      }
      return;
    }
    if (typeof m.text !== 'string') throw new TypeError('welcome without text or usable ops');
    this._fullResync = false;
    this._reset(version, m.text);
    this._setPeers(m.participants ?? []);
    if (this._inflight !== null) this._sendInflight();
  }

  /** Take `text` at `version` as the server state, rebasing what is pending. */
  _reset(version, text) {
    let f = this._inflight;
    let base = this._serverText;
    let intent = this._buffer;
    if (f !== null && f.inText) {
      if (f.status === 'refused') {
        intent = ot.compose(f.op, intent); // known uncommitted: it joins the buffer
        this._bufferEdits += f.edits;
      } else {
        base = ot.apply(base, f.op); // committed or not, the text says
      }
      if (f.status === 'sent') f.inText = false;
      else f = null;
    }
    const rebased = ot.transform(intent, ot.diff(base, text), 'right');
    const old = this._text;
    this._inflight = f;
    this._buffer = rebased;
    this._serverText = text;
    this._version = version;
    this._text = ot.apply(text, rebased);
    this._history = [];
    if (old !== this._text) {
      const change = ot.diff(old, this._text);
      this._events.push({ type: 'changed', op: change, before: old, origin: 'resync', author: null, session: null });
      this._mapOwnCursor(change);
    }
  }

  _onOp(m) {
    if (this.phase !== 'open') return;
    const v = Number(m.v);
    if (v < this._version) return; // delivered already (PROTOCOL.md, ordering guarantee)
    if (v > this._version) {
      this._resync(`missing ops ${this._version} to ${v - 1}`);
      return;
    }
    const f = this._inflight;
    if (f !== null && m.client === this.clientId && m.id === f.id) {
      if (f.inText) {
        this._commitInflight();
        return;
      }
      // A ghost is not in the local text: it applies like a remote op.
      this._inflight = null;
      this._events.push({ type: 'acknowledged', id: f.id, v });
    }
    let op = ot.normalize(m.op);
    const text = ot.apply(this._serverText, op);
    this._advance(v, op, text);
    // The op committed first stays left (PROTOCOL.md): `op` is, pending ops are not.
    if (f !== null && f.inText && this._inflight === f) {
      [f.op, op] = [ot.transform(f.op, op, 'right'), ot.transform(op, f.op, 'left')];
    }
    if (this._buffer.length) {
      [this._buffer, op] = [ot.transform(this._buffer, op, 'right'), ot.transform(op, this._buffer, 'left')];
    }
    const before = this._text;
    this._text = ot.apply(before, op);
    this._mapOwnCursor(op);
    this._events.push({
      type: 'changed',
      op,
      before,
      origin: 'remote',
      author: m.author ?? null,
      session: m.session ?? null,
    });
  }

  _onAck(m) {
    const f = this._inflight;
    if (f === null || m.id !== f.id) return; // the answer to a resend of an op acknowledged already
    const v = Number(m.v);
    if (!f.inText) {
      this._inflight = null;
      this._events.push({ type: 'acknowledged', id: f.id, v });
      if (v >= this._version) this._resync(`own op committed at ${v} after the welcome`);
      else if (this._buffer.length === 0) this._events.push({ type: 'synced', version: this._version });
    } else if (v === this._version) {
      this._commitInflight();
    } else if (v > this._version) {
      this._resync(`ack at ${v} before ops from ${this._version}`);
    } else {
      // Committed before ops we took as concurrent with it: only a text repairs that.
      f.status = 'committed';
      this._fullResync = true;
      this._resync(`ack at ${v} below version ${this._version}`);
    }
  }

  _onError(m) {
    const code = String(m.code);
    const message = String(m.message ?? '');
    const id = m.id ?? null;
    const f = this._inflight;
    if (f === null || id !== f.id || this.phase !== 'open') {
      this._events.push({ type: 'serverError', code, message, id });
      return;
    }
    if (RETRYABLE_ERRORS.has(code)) {
      this._events.push({ type: 'rejected', id: f.id, code, message, retry: true });
      return;
    }
    if (code === ErrorCode.INVALID_VERSION && f.inText) {
      f.status = 'refused';
      this._resync(`op ${f.id} refused: ${message}`);
      return;
    }
    this._inflight = null;
    this._events.push({ type: 'rejected', id: f.id, code, message, retry: false });
    if (f.inText) {
      // Errors leave the document unchanged (PROTOCOL.md): undo the op locally.
      const undo = ot.invert(f.op, this._serverText);
      const change = ot.transform(undo, this._buffer, 'left');
      this._buffer = ot.transform(this._buffer, undo, 'right');
      const before = this._text;
      this._text = ot.apply(before, change);
      this._mapOwnCursor(change);
      this._events.push({ type: 'changed', op: change, before, origin: 'rollback', author: null, session: null });
    }
    if (this.synced) this._events.push({ type: 'synced', version: this._version });
  }

  _onPresence(m) {
    const session = String(m.session);
    let peer = this._peers.get(session);
    if (peer === undefined) {
      peer = newPeer({ session });
      this._peers.set(session, peer);
    }
    if (m.user) peer.user = { ...m.user };
    peer.meta = m.meta ?? null;
    this._setPeerCursor(peer, Number(m.v), m.cursor ?? null);
    this._events.push({ type: 'presence', participant: this._participant(peer) });
  }

  // Ops.

  _newId() {
    this._opCounter++;
    return `${this._idPrefix}${this._opCounter}`;
  }

  _sendInflight() {
    const f = this._inflight;
    this._outgoing.push({ type: 'op', id: f.id, v: f.v, op: f.sent });
  }

  _flush() {
    if (this.phase !== 'open' || this._inflight !== null || this._buffer.length === 0) return;
    const op = this._buffer;
    this._inflight = {
      id: this._newId(),
      v: this._version, // as first sent: a resend repeats id, v and op (PROTOCOL.md)
      sent: op,
      op, // transformed to the current version; meaningful only when inText
      inText: true, // false for a ghost (see the top of this file)
      status: 'sent', // "sent" | "committed" | "refused"
      edits: this._bufferEdits,
    };
    this._buffer = [];
    this._bufferEdits = 0;
    this._sendInflight();
  }

  _commitInflight() {
    const f = this._inflight;
    const v = this._version;
    this._inflight = null;
    this._advance(v, f.op, ot.apply(this._serverText, f.op));
    this._events.push({ type: 'acknowledged', id: f.id, v });
    if (this._buffer.length === 0) this._events.push({ type: 'synced', version: v + 1 });
  }

  /** Record `op` as the server op at version `v`, which turned the text into `text`. */
  _advance(v, op, text) {
    this._serverText = text;
    this._version = v + 1;
    this._history.push([v, op]);
    if (this._history.length > this._historyLimit) this._history.shift();
    for (const peer of this._peers.values()) {
      if (peer.cursor !== null && peer.v === v) {
        peer.cursor = peer.cursor.map((p) => ot.transformPosition(p, op));
        peer.v = v + 1;
      }
    }
  }

  _resync(reason) {
    this.phase = 'stale';
    this._events.push({ type: 'resync', reason });
  }

  // Presence.

  /** Map server positions at `v` to the current version; null if the history lacks it. */
  _mapSince(v, positions) {
    const version = this._version;
    if (v === version) return positions;
    const first = this._history.length ? this._history[0][0] : null;
    if (first === null || !(first <= v && v < version)) return null;
    let [a, h] = positions;
    for (let i = v - first; i < this._history.length; i++) {
      const op = this._history[i][1];
      a = ot.transformPosition(a, op);
      h = ot.transformPosition(h, op);
    }
    return [a, h];
  }

  _setPeers(participants) {
    for (const p of participants) {
      const peer = newPeer(p);
      peer.meta = p.meta ?? null;
      this._peers.set(peer.session, peer);
      this._setPeerCursor(peer, Number(p.v ?? 0), p.cursor ?? null);
    }
  }

  _setPeerCursor(peer, v, cursor) {
    if (cursor === null) {
      peer.cursor = null;
      return;
    }
    const positions = [Number(cursor.anchor), Number(cursor.head)];
    if (v > this._version) {
      // Ahead of us: mapped as ops arrive.
      peer.v = v;
      peer.cursor = positions;
      return;
    }
    let mapped = this._mapSince(v, positions);
    if (mapped === null) {
      const n = ot.codePoints(this._serverText); // older than the history kept: best effort
      mapped = positions.map((p) => Math.min(p, n));
    }
    peer.v = this._version;
    peer.cursor = mapped;
  }

  _toLocal(position) {
    const f = this._inflight;
    if (f !== null && f.inText) position = ot.transformPosition(position, f.op);
    return ot.transformPosition(position, this._buffer);
  }

  _toServer(position) {
    position = ot.unmap(position, this._buffer);
    const f = this._inflight;
    return f !== null && f.inText ? ot.unmap(position, f.op) : position;
  }

  _participant(peer) {
    let cursor = null;
    if (peer.cursor !== null) {
      let [a, h] = peer.cursor;
      if (peer.v === this._version) {
        a = this._toLocal(a);
        h = this._toLocal(h);
      }
      // Ahead of us (mapped once the ops arrive) or out of range: shown in range.
      const n = ot.codePoints(this._text);
      cursor = [Math.min(Math.max(a, 0), n), Math.min(Math.max(h, 0), n)];
    }
    return { session: peer.session, user: peer.user, role: peer.role, cursor, meta: peer.meta };
  }

  _mapOwnCursor(op) {
    if (this._cursor !== null) this._cursor = this._cursor.map((p) => ot.transformPosition(p, op));
  }

  _setPresence(meta) {
    if (meta !== undefined) this._meta = meta;
    this._presenceSet = true;
    this._sendPresence();
  }

  /** Queue presence unless what others derive from the last one sent is the same. */
  _sendPresence() {
    if (!this._presenceSet || this.phase !== 'open') return;
    const v = this._version;
    const cursor = this._cursor === null ? null : this._cursor.map((p) => this._toServer(p));
    const last = this._presenceSent;
    if (last !== null && sameJson(last[2], this._meta)) {
      const derived = last[1] === null ? null : this._mapSince(last[0], last[1]);
      if (derived !== null || last[1] === null) {
        if (sameCursor(derived, cursor)) {
          this._presenceSent = [v, cursor, this._meta];
          return;
        }
      }
    }
    this._presenceSent = [v, cursor, this._meta];
    this._presenceWireV = v;
    const message = { type: 'presence', v, cursor: null };
    if (cursor !== null) message.cursor = { anchor: cursor[0], head: cursor[1] };
    if (this._meta !== null) message.meta = this._meta;
    this._outgoing.push(message);
  }
}

/** UTF-8 size of the `op` frame for `op`, with the longest id the protocol allows. */
function opFrameBytes(v, op) {
  const json = JSON.stringify({ type: 'op', id: 'x'.repeat(64), v, op });
  let n = json.length;
  for (let i = 0; i < json.length; i++) {
    const c = json.charCodeAt(i);
    // A surrogate pair is 2 units and 4 bytes; other units above 0x7f are 2 or 3 bytes.
    if (c >= 0xd800 && c <= 0xdfff) n += 1;
    else if (c > 0x7ff) n += 2;
    else if (c > 0x7f) n += 1;
  }
  return n;
}

function newPeer(p) {
  return {
    session: String(p.session),
    user: { ...(p.user ?? {}) },
    role: p.role ?? null,
    v: 0, // the server version `cursor` refers to
    cursor: null,
    meta: null,
  };
}
