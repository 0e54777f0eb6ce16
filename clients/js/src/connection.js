// One WebSocket at a time to one document, reconnecting as needed: the I/O edge of the
// client. It knows sockets, timers and close codes, and nothing about the document.
//
// It reconnects with jittered exponential backoff when the connection drops (1006), the
// gateway drains (1012, after a `reconnect` message whose `retry_after_ms` the owner
// passes to `retryAfter`), is busy (1013) or cut the client off as too slow (4009), and
// stops for good when a retry cannot help (4000 bad request, 4001 unauthorized, 4003
// forbidden document, 1009 frame too big; PROTOCOL.md, "Errors and close codes").

import { Backoff } from './backoff.js';
import { CLOSING_ERRORS, CloseCode, FATAL_CLOSE_CODES } from './protocol.js';

const OPEN = 1; // WebSocket.OPEN, the same in browsers and `ws`

/** True in a browser that says it has no network (there is then no point in trying). */
const browserOffline = () =>
  globalThis.navigator?.onLine === false && typeof globalThis.addEventListener === 'function';

export class Connection {
  /**
   * @param {object} options see `CollabClient`.
   * @param {object} handlers called by the connection:
   *   `open(token)` the socket is open: queue the hello;
   *   `message(message)` a decoded server message;
   *   `ended()` the connection ended (pending work stays with the owner);
   *   `status(status, extra)` "connecting" | "reconnecting" | "offline" | "closed";
   *   `error(error)` an `error` event's data; `stopped(error | null)` it stopped for good.
   */
  constructor(options, handlers) {
    this.url = options.url;
    this._token = options.token;
    this._WebSocket = options.WebSocket;
    this._reconnect = options.reconnect;
    this._backoff = new Backoff({ initialMs: options.backoffInitialMs, maxMs: options.backoffMaxMs });
    this._openTimeoutMs = options.openTimeoutMs;
    this._heartbeat = options.heartbeat;
    this._presenceIntervalMs = options.presenceIntervalMs;
    this._handlers = handlers;
    this.socket = null;
    this.paused = false; // `pause()`: offline on purpose
    this.stopped = false;
    this._everWelcomed = false;
    this._welcomed = false; // on the current socket
    this._attempt = 0; // increases with every attempt; a stale async step compares it
    this._retryAfterMs = null;
    this._lastError = null; // the last server `error` on the current socket
    this._lastReceivedAt = 0;
    this._heldPresence = null;
    this._lastPresenceAt = -Infinity;
    this._timers = { reconnect: null, open: null, heartbeat: null, presence: null };
    this._onOnline = () => {
      if (!this.paused && !this.stopped && this.socket === null) this._openSoon(0);
    };
    globalThis.addEventListener?.('online', this._onOnline);
  }

  /** Connect now, unless connected, connecting or stopped; also ends a `pause()`. */
  start() {
    if (this.stopped) return;
    const wasPaused = this.paused;
    this.paused = false;
    if (this.socket === null && (wasPaused || this._timers.reconnect === null)) this._openSoon(0);
  }

  /** Close the socket and stay offline until `start()`. */
  pause() {
    if (this.stopped) return;
    this.paused = true;
    this._clearTimer('reconnect');
    if (this.socket !== null) this._abandon(CloseCode.NORMAL, 'disconnect');
    this._handlers.status('offline', {});
  }

  /** Stop for good; `error` (an `error` event's data) says why, or null for `close()`. */
  stop(error = null) {
    if (this.stopped) return;
    this.stopped = true;
    this._clearTimer('reconnect');
    if (this.socket !== null) this._abandon(CloseCode.NORMAL, 'closed');
    globalThis.removeEventListener?.('online', this._onOnline);
    if (error !== null) this._handlers.error(error);
    this._handlers.status('closed', error?.closeCode ? { code: error.closeCode } : {});
    this._handlers.stopped(error);
  }

  /** Leave an out-of-step connection and connect again at once (the owner resumes with since). */
  restart() {
    if (this.socket !== null) this._abandon(CloseCode.NORMAL, 'resync');
    if (!this.stopped && !this.paused) this._openSoon(0);
  }

  /** Leave the connection and connect again after the usual backoff. */
  recover() {
    if (this.socket !== null) this._abandon(CloseCode.NORMAL, 'resync');
    if (!this.stopped && !this.paused) this._scheduleReconnect();
  }

  /** The server welcomed this socket: the connection works. */
  welcomed(heartbeatMs) {
    this._welcomed = true;
    this._everWelcomed = true;
    this._backoff.reset();
    this._clearTimer('open');
    if (this._heartbeat) this._startHeartbeat(heartbeatMs > 0 ? heartbeatMs : 20000);
  }

  /** A `reconnect` message: wait this long before the next attempt (PROTOCOL.md, "Liveness"). */
  retryAfter(ms) {
    this._retryAfterMs = ms;
  }

  send(message) {
    const ws = this.socket;
    if (ws !== null && ws.readyState === OPEN) ws.send(JSON.stringify(message));
  }

  /** Presence is coalesced to one message per `presenceIntervalMs`, the latest winning. */
  sendPresence(message) {
    const now = Date.now();
    const wait = this._lastPresenceAt + this._presenceIntervalMs - now;
    if (wait <= 0 && this._timers.presence === null) {
      this._lastPresenceAt = now;
      this.send(message);
      return;
    }
    this._heldPresence = message;
    this._timers.presence ??= setTimeout(() => {
      this._timers.presence = null;
      const held = this._heldPresence;
      this._heldPresence = null;
      if (held !== null) {
        this._lastPresenceAt = Date.now();
        this.send(held);
      }
    }, Math.max(wait, 0));
  }

  // Internals.

  _openSoon(delayMs) {
    this._clearTimer('reconnect');
    this._timers.reconnect = setTimeout(() => {
      this._timers.reconnect = null;
      this._open();
    }, delayMs);
  }

  async _open() {
    if (this.stopped || this.paused || this.socket !== null) return;
    if (browserOffline()) {
      this._handlers.status('offline', {}); // the `online` event resumes
      return;
    }
    const attempt = ++this._attempt;
    this._handlers.status(this._everWelcomed ? 'reconnecting' : 'connecting', {});
    let token;
    try {
      token = typeof this._token === 'function' ? await this._token() : this._token;
      if (typeof token !== 'string' || !token) throw new TypeError('the token function returned no token');
    } catch (error) {
      if (attempt !== this._attempt || this.stopped || this.paused) return;
      this._handlers.error({ code: 'token', message: String(error?.message ?? error), fatal: false });
      this._scheduleReconnect();
      return;
    }
    if (attempt !== this._attempt || this.stopped || this.paused || this.socket !== null) return;
    let ws;
    try {
      ws = new this._WebSocket(this.url);
    } catch (error) {
      this.stop({ code: 'connection_failed', message: String(error?.message ?? error), fatal: true });
      return;
    }
    this.socket = ws;
    this._welcomed = false;
    this._lastError = null;
    this._lastReceivedAt = Date.now();
    this._timers.open = setTimeout(() => {
      this._timers.open = null;
      if (this.socket === ws && !this._welcomed) this._lost(ws, CloseCode.ABNORMAL, 'open timeout');
    }, this._openTimeoutMs);
    ws.onopen = () => {
      if (this.socket === ws) this._handlers.open(token);
    };
    ws.onmessage = (event) => {
      if (this.socket !== ws) return;
      this._lastReceivedAt = Date.now();
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        this._handlers.error({ code: 'bad_frame', message: 'the server sent a frame that is not JSON', fatal: false });
        return;
      }
      if (message === null || typeof message !== 'object') return;
      if (message.type === 'error') this._lastError = message;
      this._handlers.message(message);
    };
    ws.onerror = () => {}; // a close event follows with the code
    ws.onclose = (event) => {
      if (this.socket === ws) this._lost(ws, event.code, event.reason ?? '');
    };
  }

  /** Leave the current socket now, without waiting for its close handshake. */
  _abandon(code, reason) {
    const ws = this._detach();
    try {
      ws.close(code, reason);
    } catch {
      // Closing a socket that never opened can throw; it is gone either way.
    }
    this._handlers.ended();
  }

  _detach() {
    const ws = this.socket;
    // `onerror` stays: `ws` emits an error when a socket still connecting is closed.
    if (ws !== null) ws.onopen = ws.onmessage = ws.onclose = null;
    this.socket = null;
    this._welcomed = false;
    for (const name of ['open', 'heartbeat', 'presence']) this._clearTimer(name);
    this._heldPresence = null;
    return ws;
  }

  /** Socket `ws` closed with `code`: reconnect or stop. */
  _lost(ws, code, reason) {
    const wasWelcomed = this._welcomed;
    const lastError = this._lastError;
    this._detach();
    try {
      ws.close();
    } catch {
      // already closing
    }
    this._handlers.ended();
    if (this.stopped) return;
    if (this.paused) {
      this._handlers.status('offline', {});
      return;
    }
    // An expired token is renewed by a token function: one more try, which must succeed.
    const renewable = code === CloseCode.UNAUTHORIZED && typeof this._token === 'function' && wasWelcomed;
    if ((FATAL_CLOSE_CODES.has(code) && !renewable) || !this._reconnect) {
      this.stop({
        code: lastError?.code ?? 'closed',
        message: String(lastError?.message ?? (reason || `connection closed with ${code}`)),
        closeCode: code,
        fatal: true,
      });
      return;
    }
    if (lastError !== null && CLOSING_ERRORS.has(lastError.code)) {
      this._handlers.error({ code: lastError.code, message: String(lastError.message ?? ''), closeCode: code, fatal: false });
    }
    this._scheduleReconnect(code);
  }

  _scheduleReconnect(code = null) {
    const delay = this._retryAfterMs ?? this._backoff.next();
    this._retryAfterMs = null;
    if (browserOffline()) {
      this._handlers.status('offline', { code });
      return;
    }
    this._handlers.status('reconnecting', { code, retryInMs: Math.round(delay) });
    this._openSoon(delay);
  }

  _startHeartbeat(every) {
    const ws = this.socket;
    this._clearTimer('heartbeat');
    this._timers.heartbeat = setInterval(() => {
      if (this.socket !== ws) return;
      const silent = Date.now() - this._lastReceivedAt;
      // The server answers a heartbeat at once (PROTOCOL.md, "Liveness"): silence for
      // longer than two rounds means the network is gone without a close frame.
      if (silent > 2.5 * every) this._lost(ws, CloseCode.ABNORMAL, 'heartbeat timeout');
      else if (silent >= every) this.send({ type: 'heartbeat', timestamp: Date.now() / 1000 });
    }, every / 2);
    this._timers.heartbeat.unref?.(); // Node: the socket, not this timer, keeps a process alive
  }

  _clearTimer(name) {
    const t = this._timers[name];
    if (t !== null) {
      clearTimeout(t);
      clearInterval(t);
      this._timers[name] = null;
    }
  }
}
