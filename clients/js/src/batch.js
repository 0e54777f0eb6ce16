// One batch of state machine events (what one call of `ClientState` produced), folded
// into what the client emits. Pure: no I/O, no clock.
//
// All text changes of a batch become one `change`, emitted before anything else. A
// welcome with catch-up ops yields several; were they emitted one by one, a listener
// editing the document in between would leave the later ones' positions wrong for the
// editor. One event, on the text the editor has, cannot go stale that way.

import * as ot from './ot.js';
import { CLOSING_ERRORS } from './protocol.js';
import { opToChanges } from './positions.js';

/**
 * @returns {{
 *   change: {op, before, origin, reset, author, session} | null,
 *   presence: string | null, errors: object[], retry: {id, code, message} | null,
 *   welcomed: object | null, acknowledged: boolean, retryAfterMs: number | null,
 *   resync: boolean,
 * }}
 */
export function foldBatch(events) {
  const out = {
    change: null,
    presence: null, // the reason of the `presence` event, if one is due
    errors: [], // `error` events' data, in order
    retry: null, // a refused op to send again after a delay
    welcomed: null,
    acknowledged: false,
    retryAfterMs: null,
    resync: false,
  };
  const origins = new Set();
  for (const e of events) {
    switch (e.type) {
      case 'changed': {
        const c = out.change;
        if (c === null) {
          out.change = { op: e.op, before: e.before, author: e.author, session: e.session };
        } else {
          c.op = ot.compose(c.op, e.op);
          if (c.author !== e.author) c.author = null;
          if (c.session !== e.session) c.session = null;
        }
        origins.add(e.origin);
        break;
      }
      case 'welcomed':
        out.welcomed = e;
        out.presence = 'welcome';
        break;
      case 'acknowledged':
        out.acknowledged = true;
        break;
      case 'rejected':
        if (e.retry) out.retry = { id: e.id, code: e.code, message: e.message };
        else out.errors.push({ code: e.code, message: e.message, id: e.id, fatal: false, rolledBack: true });
        break;
      case 'serverError':
        // Those that announce a close are reported once, with the close code.
        if (!CLOSING_ERRORS.has(e.code)) out.errors.push({ code: e.code, message: e.message, id: e.id, fatal: false });
        break;
      case 'reconnect':
        out.retryAfterMs = e.retryAfterMs;
        break;
      case 'resync':
        out.resync = true;
        break;
      case 'joined':
        out.presence ??= 'join';
        break;
      case 'left':
        out.presence ??= 'leave';
        break;
      case 'presence':
        out.presence ??= 'update';
        break;
      default: // "synced": the status event says it
    }
  }
  if (out.change !== null) {
    out.change.reset = origins.has('resync');
    out.change.origin = origins.size === 1 ? [...origins][0] : out.change.reset ? 'resync' : 'remote';
  }
  return out;
}

/** The `change` event's data for a folded change, or null when it changes nothing. */
export function changeEvent(change, text, version) {
  const changes = opToChanges(change.before, ot.normalize(change.op));
  if (changes.length === 0) return null;
  return {
    changes,
    text,
    reset: change.reset,
    origin: change.origin,
    author: change.author,
    session: change.session,
    version,
  };
}
