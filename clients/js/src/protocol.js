// Wire facts the client acts on: error codes and close codes (PROTOCOL.md, "Errors and
// close codes"). Each lives here and nowhere else.

/** Error codes a server `error` message may carry. */
export const ErrorCode = Object.freeze({
  BAD_MESSAGE: 'bad_message',
  INVALID_OP: 'invalid_op',
  INVALID_VERSION: 'invalid_version',
  FORBIDDEN: 'forbidden',
  TOO_LARGE: 'too_large',
  RATE_LIMITED: 'rate_limited',
  UNAUTHORIZED: 'unauthorized',
  FORBIDDEN_DOCUMENT: 'forbidden_document',
  SLOW_CONSUMER: 'slow_consumer',
  INTERNAL: 'internal',
});

/** Errors on an op after which nothing was committed and the same op may be sent again. */
export const RETRYABLE_ERRORS = new Set([ErrorCode.RATE_LIMITED, ErrorCode.INTERNAL]);

/**
 * Errors the server sends just before it closes the connection; the client reports them
 * once, with the close code, when the close arrives.
 */
export const CLOSING_ERRORS = new Set([
  ErrorCode.UNAUTHORIZED,
  ErrorCode.FORBIDDEN_DOCUMENT,
  ErrorCode.SLOW_CONSUMER,
]);

/** WebSocket close codes: 1xxx from RFC 6455 section 7.4.1, 4xxx from PROTOCOL.md. */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  ABNORMAL: 1006, // no close frame: a lost network, a killed gateway
  MESSAGE_TOO_BIG: 1009,
  SERVICE_RESTART: 1012, // the gateway drains
  TRY_AGAIN_LATER: 1013,
  BAD_REQUEST: 4000,
  UNAUTHORIZED: 4001,
  FORBIDDEN_DOCUMENT: 4003,
  RATE_LIMITED: 4008,
  SLOW_CONSUMER: 4009, // resume with since
});

/**
 * Close codes after which reconnecting cannot help: the same hello or the same frame
 * would be refused again. 1009 is here because the frame over the limit is the op in
 * flight, which a resend must repeat byte for byte.
 */
export const FATAL_CLOSE_CODES = new Set([
  CloseCode.BAD_REQUEST,
  CloseCode.UNAUTHORIZED,
  CloseCode.FORBIDDEN_DOCUMENT,
  CloseCode.MESSAGE_TOO_BIG,
]);

/** Close code the client uses to leave a connection that is out of step (RFC 6455: 1000). */
export const RESYNC_CLOSE = { code: CloseCode.NORMAL, reason: 'resync' };

/** Document ids the server accepts (PROTOCOL.md, "Connecting"). */
export const DOCUMENT_ID = /^[A-Za-z0-9._-]{1,128}$/;
