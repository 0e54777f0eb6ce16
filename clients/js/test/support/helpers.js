// Small helpers shared by the tests: waiting, a seeded random generator, test sockets.

import WebSocket from 'ws';

/**
 * Resolve once `predicate()` holds, checking every 10 ms; reject after `timeoutMs`.
 * `message` (or a function returning it, called at the timeout) names what was awaited.
 */
export async function waitFor(predicate, { timeoutMs = 10000, message = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${typeof message === 'function' ? message() : message}`);
    }
    await sleep(10);
  }
}

export const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

/** Reject `promise` if it does not settle in `ms`. */
export function within(ms, promise, what = 'promise') {
  let timer;
  const timeout = new Promise((_, fail) => {
    timer = setTimeout(() => fail(new Error(`${what} did not settle in ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Mulberry32: a small seeded generator, so that a failing run can be repeated. */
export function seeded(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A `ws` WebSocket class that records every frame sent and received, per connection. It
 * can lose frames on purpose: incoming ones with `socket.swallow = true` (acks that never
 * arrive), outgoing ones with `socket.hold = true` (ops the network never delivered).
 */
export function recordingWebSocket() {
  const sockets = [];
  class RecordingWebSocket extends WebSocket {
    constructor(...args) {
      super(...args);
      this.sent = [];
      this.received = [];
      this.swallow = false;
      this.hold = false;
      sockets.push(this);
    }

    send(data, ...rest) {
      this.sent.push(JSON.parse(data));
      if (!this.hold) super.send(data, ...rest);
    }

    get onmessage() {
      return super.onmessage;
    }

    set onmessage(listener) {
      super.onmessage =
        listener === null
          ? null
          : (event) => {
              this.received.push(JSON.parse(event.data));
              if (!this.swallow) listener(event);
            };
    }
  }
  return { WebSocket: RecordingWebSocket, sockets };
}
