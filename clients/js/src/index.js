// @gremlins/collab-client: the browser and Node client of the gremlins-collab protocol.

export { CollabClient, Status } from './client.js';
export { ClientState } from './state.js';
export { Emitter } from './emitter.js';
export { Backoff } from './backoff.js';
export { CloseCode, ErrorCode, FATAL_CLOSE_CODES } from './protocol.js';
export {
  applyChanges,
  changesToOp,
  hasLoneSurrogate,
  opToChanges,
  splitsSurrogatePair,
  toCodePoints,
  toUtf16,
} from './positions.js';
