// A tiny event emitter: `on(type, listener)` returns the function that removes it.
//
// Not EventTarget: listeners get the event's data directly, with no CustomEvent wrapper,
// and the same code runs in browsers and Node. A listener that throws does not stop the
// client or the other listeners; its error is rethrown from a microtask, where the
// browser console or Node's uncaught-exception handling reports it (as EventTarget does).

export class Emitter {
  #listeners = new Map();

  /** Call `listener(data)` for every event of `type`. Returns the unsubscribe function. */
  on(type, listener) {
    if (typeof listener !== 'function') throw new TypeError('listener must be a function');
    let set = this.#listeners.get(type);
    if (set === undefined) this.#listeners.set(type, (set = new Set()));
    set.add(listener);
    return () => this.off(type, listener);
  }

  /** Like `on`, for the next event of `type` only. */
  once(type, listener) {
    const off = this.on(type, (data) => {
      off();
      listener(data);
    });
    return off;
  }

  off(type, listener) {
    this.#listeners.get(type)?.delete(listener);
  }

  emit(type, data) {
    const set = this.#listeners.get(type);
    if (set === undefined) return;
    for (const listener of [...set]) {
      try {
        listener(data);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
}
