// Reconnect delays: exponential, capped, with jitter. Pure: the caller passes `random`.
//
// The jitter draws each delay from [d/2, d): after a gateway drains, the clients of a room
// do not all come back in the same instant (the "equal jitter" of AWS's backoff study).

export class Backoff {
  /**
   * @param {object} [options]
   * @param {number} [options.initialMs] the first delay, before jitter.
   * @param {number} [options.maxMs] the cap, before jitter.
   * @param {() => number} [options.random] uniform in [0, 1).
   */
  constructor({ initialMs = 100, maxMs = 5000, random = Math.random } = {}) {
    if (!(initialMs > 0 && maxMs >= initialMs)) {
      throw new RangeError('backoff needs 0 < initialMs <= maxMs');
    }
    this.initialMs = initialMs;
    this.maxMs = maxMs;
    this.random = random;
    this.currentMs = initialMs;
  }

  /** The delay before the next attempt; each call doubles the next one, up to the cap. */
  next() {
    const delay = (0.5 + 0.5 * this.random()) * this.currentMs;
    this.currentMs = Math.min(this.currentMs * 2, this.maxMs);
    return delay;
  }

  /** After a success: start again from the first delay. */
  reset() {
    this.currentMs = this.initialMs;
  }
}
