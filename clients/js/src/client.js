// The client an application uses: the `ClientState` machine on a `Connection`, with every
// position in UTF-16 offsets (positions.js converts) and events for the UI.
//
// What happens to the document (OT, acks, resends, presence mapping) is the state
// machine's decision (state.js); when to connect is the connection's (connection.js).
// This file wires the two, converts positions, and turns state events into `change`,
// `presence`, `status` and `error` events. Ops refused with `rate_limited` or `internal`
// are sent again, unchanged, after a delay (PROTOCOL.md, "Errors and close codes").

import { Backoff } from './backoff.js';
import { changeEvent, foldBatch } from './batch.js';
import { Connection } from './connection.js';
import { Emitter } from './emitter.js';
import { changesToOp, splitsSurrogatePair, toCodePoints, toUtf16 } from './positions.js';
import { ClientState } from './state.js';

/** Status values, as the `status` event and `client.status` give them. */
export const Status = Object.freeze({
  IDLE: 'idle', // created, `connect()` not called yet
  CONNECTING: 'connecting', // the first connection is being set up
  OPEN: 'open', // welcomed: edits are sent as they are made
  RECONNECTING: 'reconnecting', // the connection was lost; a retry is scheduled or under way
  OFFLINE: 'offline', // disconnected on purpose (`disconnect()`) or the browser is offline
  CLOSED: 'closed', // stopped for good (`close()`, or the server refused the client)
});

const randomBytes = (n) => globalThis.crypto.getRandomValues(new Uint8Array(n));

function randomId() {
  // randomUUID needs a secure context in browsers; getRandomValues does not.
  if (typeof globalThis.crypto.randomUUID === 'function') return globalThis.crypto.randomUUID();
  return [...randomBytes(16)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** Op id prefix, new for every client instance (see `ClientState`). */
const randomPrefix = () => [...randomBytes(6)].map((b) => b.toString(36).padStart(2, '0')).join('') + '-';

/**
 * One document, edited over one WebSocket at a time, reconnecting as needed.
 *
 * Events (`client.on(type, listener)`): `change`, `presence`, `status`, `error`; see README.md.
 */
export class CollabClient extends Emitter {
  /**
   * @param {object} options
   * @param {string} options.url the document's WebSocket URL, `ws(s)://host/v1/collaborate/<id>`.
   * @param {string | (() => string | Promise<string>)} options.token a JWT, or a function
   *   returning one; a function is called for every connection, so it can renew tokens.
   * @param {typeof WebSocket} [options.WebSocket] the WebSocket class; default the global
   *   one (browsers, Node 22+). In Node 20 pass `ws`'s.
   * @param {string} [options.clientId] kept across reconnects; default a random UUID.
   * @param {boolean} [options.reconnect] reconnect after a lost connection (default true).
   * @param {number} [options.backoffInitialMs] first reconnect delay before jitter (100).
   * @param {number} [options.backoffMaxMs] longest reconnect delay before jitter (5000).
   * @param {number} [options.openTimeoutMs] give up on a connection not welcomed in time (10000).
   * @param {number} [options.presenceIntervalMs] least time between presence messages (50).
   * @param {boolean} [options.heartbeat] detect dead connections with heartbeat messages (true).
   */
  constructor(options) {
    super();
    const {
      url,
      token,
      WebSocket = globalThis.WebSocket,
      clientId = randomId(),
      reconnect = true,
      backoffInitialMs = 100,
      backoffMaxMs = 5000,
      openTimeoutMs = 10000,
      presenceIntervalMs = 50,
      heartbeat = true,
    } = options ?? {};
    if (typeof url !== 'string' || !url) throw new TypeError('url is required');
    if (typeof token !== 'string' && typeof token !== 'function') {
      throw new TypeError('token must be a string or a function returning one');
    }
    if (typeof WebSocket !== 'function') {
      throw new TypeError('no WebSocket: pass one as the WebSocket option (npm ws in Node 20)');
    }
    this.url = url;
    this._state = new ClientState(clientId, { idPrefix: randomPrefix() });
    this._connection = new Connection(
      { url, token, WebSocket, reconnect, backoffInitialMs, backoffMaxMs, openTimeoutMs, presenceIntervalMs, heartbeat },
      {
        open: (t) => {
          this._state.connect(t);
          this._pump();
        },
        message: (m) => this._receive(m),
        ended: () => this._ended(),
        status: (status, extra) => this._setStatus(status, extra),
        error: (error) => this.emit('error', error),
        stopped: (error) => this._stopped(error),
      },
    );
    this._retryBackoff = new Backoff({ initialMs: backoffInitialMs, maxMs: backoffMaxMs });
    this._resendTimer = null;
    this._status = Status.IDLE;
    this._statusSent = null; // [status, pending] as last emitted
    this._stopReason = null;
    this._welcome = null; // the last `welcomed` event: session, role, user
    this._waiters = []; // {kind: "open" | "synced", resolve, reject}
  }

  // Accessors.

  /** The local text: the server's with the pending local edits applied. */
  get text() {
    return this._state.text;
  }

  /** The server version the text is based on; null before the first welcome. */
  get version() {
    return this._state.version;
  }

  get status() {
    return this._status;
  }

  /** Local edits not yet acknowledged by the server. */
  get pending() {
    return this._state.pendingEdits;
  }

  /** True when connected and every local edit is acknowledged (durably stored). */
  get synced() {
    return this._status === Status.OPEN && this._state.synced;
  }

  get clientId() {
    return this._state.clientId;
  }

  /** This connection's session id, from the last welcome. */
  get session() {
    return this._welcome?.session ?? null;
  }

  /** "editor" or "viewer", from the last welcome. */
  get role() {
    return this._welcome?.role ?? null;
  }

  /** `{id, name, color}`, from the last welcome. */
  get user() {
    return this._welcome?.user ?? null;
  }

  /** The current WebSocket, or null (for diagnostics and tests). */
  get socket() {
    return this._connection.socket;
  }

  /** The local selection `{anchor, head}` in UTF-16 offsets, or null. */
  get cursor() {
    const c = this._state.cursor;
    return c === null ? null : this._toUtf16Selection(c);
  }

  /**
   * The other sessions in the document, with cursors in local UTF-16 offsets:
   * `[{session, user: {id, name, color}, role, cursor: {anchor, head} | null, meta}]`.
   */
  get participants() {
    return this._state.participants.map((p) => ({
      ...p,
      cursor: p.cursor === null ? null : this._toUtf16Selection(p.cursor),
    }));
  }

  // Lifecycle.

  /**
   * Connect, or resume after `disconnect()`. Resolves once welcomed; rejects if the client
   * stops for good first (the `error` event says why).
   */
  connect() {
    const promise = this._wait('open');
    this._connection.start();
    return promise;
  }

  /** Go offline on purpose: close the connection, keep the text and every pending edit. */
  disconnect() {
    this._connection.pause();
  }

  /** Stop for good: close the connection and never reconnect. Pending edits are dropped. */
  close() {
    this._connection.stop(null);
  }

  /** Resolves when connected with every local edit acknowledged; rejects if the client stops. */
  whenSynced() {
    return this._wait('synced');
  }

  // Editing. Positions are UTF-16 offsets into `client.text`.

  /**
   * Apply local changes, `{from, to, insert}` or a list of them, positions in the text
   * before all of them (CodeMirror's `iterChanges` gives exactly these). Throws a
   * RangeError, changing nothing, for a range outside the text, an offset inside a
   * surrogate pair, a lone surrogate in `insert`, or an edit too large for one message.
   */
  applyLocal(changes) {
    if (this._state.version === null) throw new Error('no document yet: wait for connect()');
    this._state.localEdit(changesToOp(this._state.text, changes));
    this._pump();
  }

  /** Replace the UTF-16 range [from, to) with `insert`. */
  replace(from, to, insert = '') {
    this.applyLocal({ from, to, insert });
  }

  insert(at, text) {
    this.applyLocal({ from: at, to: at, insert: text });
  }

  delete(from, to) {
    this.applyLocal({ from, to, insert: '' });
  }

  // Presence.

  /**
   * Set the local selection, UTF-16 offsets into `client.text` (an offset inside a
   * surrogate pair moves to its start). `meta`, a small JSON object, replaces the last one
   * given unless undefined. Others see it mapped through whatever they have not seen yet.
   */
  setCursor(anchor, head = anchor, meta = undefined) {
    const text = this._state.text;
    const toCp = (offset) => toCodePoints(text, splitsSurrogatePair(text, offset) ? offset - 1 : offset);
    this._state.setCursor(toCp(anchor), toCp(head), meta);
    this._pump();
  }

  /** No selection (the editor lost focus, say); `meta` as for `setCursor`. */
  clearCursor(meta = undefined) {
    this._state.clearCursor(meta);
    this._pump();
  }

  // From the connection.

  _receive(message) {
    if (this._state.phase === 'closed') return;
    try {
      this._state.receive(message);
    } catch (error) {
      // A message the state cannot take (an op that does not fit, say): fetch the whole
      // text on a new connection rather than edit on from a state that may be half updated.
      this._state.eventsReceived();
      this._state.requireFullResync();
      this.emit('error', { code: 'client_error', message: String(error?.message ?? error), fatal: false });
      this._connection.recover();
      return;
    }
    this._pump();
  }

  _ended() {
    clearTimeout(this._resendTimer);
    this._resendTimer = null;
    const hadPeers = this._state.participants.length > 0;
    if (this._state.phase !== 'closed') this._state.connectionLost();
    if (hadPeers) this.emit('presence', { participants: [], reason: 'disconnected' });
  }

  _stopped(error) {
    this._stopReason = error ? `${error.code}: ${error.message}` : 'the client was closed';
    for (const w of this._waiters.splice(0)) w.reject(new Error(this._stopReason));
  }

  /** Send what the state machine queued and turn its events into the client's events. */
  _pump() {
    for (const message of this._state.messagesToSend()) {
      if (message.type === 'presence') this._connection.sendPresence(message);
      else this._connection.send(message);
    }
    const batch = foldBatch(this._state.eventsReceived());
    if (batch.welcomed !== null) {
      this._welcome = batch.welcomed;
      this._status = Status.OPEN; // emitted below, after the welcome's change
      this._connection.welcomed(batch.welcomed.heartbeatMs);
    }
    if (batch.acknowledged) this._retryBackoff.reset();
    if (batch.retryAfterMs !== null) this._connection.retryAfter(batch.retryAfterMs);
    if (batch.retry !== null) this._scheduleResend(batch);
    if (batch.change !== null) {
      const change = changeEvent(batch.change, this._state.text, this._state.version);
      if (change !== null) this.emit('change', change);
      // Remote cursors moved with the text.
      if (this._state.participants.some((p) => p.cursor !== null)) batch.presence ??= 'change';
    }
    if (batch.presence !== null) this.emit('presence', { participants: this.participants, reason: batch.presence });
    for (const error of batch.errors) this.emit('error', error);
    // Out of step: leave this connection and resume with `since` at once.
    if (batch.resync) this._connection.restart();
    this._emitStatus();
  }

  /** Nothing was committed (rate_limited, internal): send the same op again later. */
  _scheduleResend(batch) {
    const delay = this._retryBackoff.next();
    batch.errors.push({ ...batch.retry, fatal: false, retryInMs: Math.round(delay) });
    clearTimeout(this._resendTimer);
    this._resendTimer = setTimeout(() => {
      this._resendTimer = null;
      this._state.resend();
      this._pump();
    }, delay);
  }

  // Status and waiting.

  _setStatus(status, extra = {}) {
    this._status = status;
    this._emitStatus(extra);
  }

  /** Emit `status` when the status or the pending count changed, or with news in `extra`. */
  _emitStatus(extra = {}) {
    const pending = this._state.pendingEdits;
    const last = this._statusSent;
    const same = last !== null && last[0] === this._status && last[1] === pending;
    if (!same || Object.keys(extra).length > 0) {
      this._statusSent = [this._status, pending];
      this.emit('status', { status: this._status, version: this._state.version, pending, synced: this.synced, ...extra });
    }
    this._settleWaiters();
  }

  _wait(kind) {
    const promise = this._connection.stopped
      ? Promise.reject(new Error(`the client is closed: ${this._stopReason}`))
      : new Promise((resolve, reject) => this._waiters.push({ kind, resolve, reject }));
    // Callers may ignore the promise: the `error` event reports the failure too.
    promise.catch(() => {});
    this._settleWaiters();
    return promise;
  }

  _settleWaiters() {
    const open = this._status === Status.OPEN;
    const synced = this.synced;
    this._waiters = this._waiters.filter((w) => {
      if ((w.kind === 'open' && open) || (w.kind === 'synced' && synced)) {
        w.resolve();
        return false;
      }
      return true;
    });
  }

  _toUtf16Selection([anchor, head]) {
    const text = this._state.text;
    return { anchor: toUtf16(text, anchor), head: toUtf16(text, head) };
  }
}
