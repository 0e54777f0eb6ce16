// The text-unicode OT type, as the server uses it (PROTOCOL.md, "Documents, versions, ops").
//
// Everything here counts Unicode code points. The type itself is npm `ot-text-unicode`,
// used unchanged; this module only adds the few pure helpers the client state needs on top
// of it (the type has no "map a position backwards", no "does this op fit", no diff).

import textUnicode from 'ot-text-unicode';

// A default import: `ot-text-unicode` is CommonJS, and both Node and bundlers expose
// `module.exports` as the default export of a CommonJS module.
export const type = textUnicode.type;

/** Code points in `s`: what Python's `len` and the protocol count. */
export function codePoints(s) {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n--;
        i++;
      }
    }
  }
  return n;
}

const deleteLength = (d) => (typeof d === 'number' ? d : codePoints(d));

/**
 * `op` without trailing or adjacent skips, as the server normalises it.
 *
 * `type.normalize` merges adjacent deletes by mutating the first one, so it gets a copy:
 * ops held by the client (the one in flight is resent byte for byte) must never change.
 */
export function normalize(op) {
  return type.normalize(op.map((c) => (typeof c === 'object' ? { d: c.d } : c)));
}

/** Code points of the document that `op` skips or deletes: the least it fits. */
export function inputLength(op) {
  let n = 0;
  for (const c of op) {
    if (typeof c === 'number') n += c;
    else if (typeof c === 'object') n += deleteLength(c.d);
  }
  return n;
}

export const apply = (text, op) => type.apply(text, op);
export const compose = (a, b) => type.compose(a, b);
export const transform = (op, other, side) => type.transform(op, other, side);

/** Map a caret through `op`; an insert exactly at the caret leaves it before the insert. */
export const transformPosition = (position, op) => type.transformPosition(position, op);

/**
 * Map a position in the text after `op` back to the text before it.
 *
 * A position inside or at the end of inserted text goes to the insertion point.
 */
export function unmap(position, op) {
  let src = 0;
  let dst = 0;
  for (const c of op) {
    if (typeof c === 'number') {
      if (position <= dst + c) return src + position - dst;
      src += c;
      dst += c;
    } else if (typeof c === 'string') {
      const n = codePoints(c);
      if (position <= dst + n) return src;
      dst += n;
    } else {
      src += deleteLength(c.d);
    }
  }
  return src + position - dst;
}

/** The op that undoes `op`, which applies to `text`. */
export function invert(op, text) {
  return normalize(type.stripInvertible(type.invertWithDoc(op, text)));
}

/**
 * A small op turning `before` into `after`: one delete and one insert between the common
 * prefix and suffix, so that cursors outside the changed span stay where they are.
 */
export function diff(before, after) {
  const limit = Math.min(before.length, after.length);
  let start = 0;
  while (start < limit && before.charCodeAt(start) === after.charCodeAt(start)) start++;
  // Never split a surrogate pair: the op counts code points.
  if (start > 0 && isHigh(before.charCodeAt(start - 1))) start--;
  let end = 0;
  while (
    end < limit - start &&
    before.charCodeAt(before.length - 1 - end) === after.charCodeAt(after.length - 1 - end)
  ) {
    end++;
  }
  if (end > 0 && isLow(before.charCodeAt(before.length - end))) end--;
  const op = [];
  const skip = codePoints(before.slice(0, start));
  const removed = codePoints(before.slice(start, before.length - end));
  const inserted = after.slice(start, after.length - end);
  if (!removed && !inserted) return op;
  if (skip) op.push(skip);
  if (removed) op.push({ d: removed });
  if (inserted) op.push(inserted);
  return op;
}

const isHigh = (c) => c >= 0xd800 && c <= 0xdbff;
const isLow = (c) => c >= 0xdc00 && c <= 0xdfff;
