// Positions: JavaScript strings index UTF-16 code units, the protocol counts Unicode code
// points (PROTOCOL.md, "Documents, versions, ops": "a JavaScript client converts from
// UTF-16"). Everything the application sees is in UTF-16 offsets, as `String.prototype`
// methods, the DOM and editors such as CodeMirror 6 use them; every op on the wire is in
// code points. This module is the only place that converts. Pure: no I/O.
//
// A change is `{from, to, insert}`: replace the UTF-16 range [from, to) of the text with
// `insert`. A list of changes refers to positions in the text *before* all of them, sorted
// and not overlapping, which is what CodeMirror 6's `changes` and `iterChanges` use.
//
// An offset between the two halves of a surrogate pair (an emoji, say) names no code point
// boundary: edits there are refused with a RangeError, as is text with a lone surrogate,
// which the server refuses too (it cannot be encoded as UTF-8).

const isHigh = (c) => c >= 0xd800 && c <= 0xdbff;
const isLow = (c) => c >= 0xdc00 && c <= 0xdfff;

/** True when UTF-16 `offset` falls between the two halves of a surrogate pair in `text`. */
export function splitsSurrogatePair(text, offset) {
  return (
    offset > 0 &&
    offset < text.length &&
    isHigh(text.charCodeAt(offset - 1)) &&
    isLow(text.charCodeAt(offset))
  );
}

/** True when `s` holds a surrogate that is not half of a pair. */
export function hasLoneSurrogate(s) {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (isHigh(c)) {
      if (i + 1 < s.length && isLow(s.charCodeAt(i + 1))) i++;
      else return true;
    } else if (isLow(c)) {
      return true;
    }
  }
  return false;
}

/** Walks a text once, keeping its UTF-16 offset `u` and code point offset `cp` in step. */
class Walker {
  constructor(text) {
    this.text = text;
    this.u = 0;
    this.cp = 0;
  }

  #step() {
    const t = this.text;
    this.u += isHigh(t.charCodeAt(this.u)) && isLow(t.charCodeAt(this.u + 1)) ? 2 : 1;
    this.cp++;
  }

  /** Advance to UTF-16 offset `offset` (not behind the current one). */
  toOffset(offset) {
    if (!Number.isInteger(offset) || offset < this.u || offset > this.text.length) {
      throw new RangeError(`offset ${offset} is outside the text (0..${this.text.length})`);
    }
    while (this.u < offset) this.#step();
    if (this.u !== offset) throw new RangeError(`offset ${offset} splits a surrogate pair`);
  }

  /** Advance by `n` code points. */
  by(n) {
    for (let i = 0; i < n; i++) {
      if (this.u >= this.text.length) throw new RangeError('position is past the end of the text');
      this.#step();
    }
  }
}

/** The code point position of UTF-16 `offset` in `text`. */
export function toCodePoints(text, offset) {
  const w = new Walker(text);
  w.toOffset(offset);
  return w.cp;
}

/** The UTF-16 offset of code point `position` in `text`. */
export function toUtf16(text, position) {
  if (!Number.isInteger(position) || position < 0) {
    throw new RangeError(`position ${position} is not a non-negative integer`);
  }
  const w = new Walker(text);
  w.by(position);
  return w.u;
}

/** Appends components to a text-unicode op, merging neighbours of the same kind. */
function appender(op) {
  return (c) => {
    if (c === 0 || c === '' || (typeof c === 'object' && c.d === 0)) return;
    const last = op[op.length - 1];
    if (typeof c === 'number' && typeof last === 'number') op[op.length - 1] = last + c;
    else if (typeof c === 'string' && typeof last === 'string') op[op.length - 1] = last + c;
    else if (typeof c === 'object' && typeof last === 'object') op[op.length - 1] = { d: last.d + c.d };
    else op.push(c);
  };
}

/**
 * The code point op for `changes` (one change or a list) in UTF-16 offsets of `text`.
 *
 * Throws a RangeError for a range outside the text, overlapping changes, an offset inside
 * a surrogate pair, or inserted text with a lone surrogate.
 */
export function changesToOp(text, changes) {
  const list = (Array.isArray(changes) ? changes : [changes]).map((c, i) => {
    const from = c.from;
    const to = c.to ?? from;
    const insert = c.insert ?? '';
    if (typeof insert !== 'string') throw new TypeError(`change ${i}: insert must be a string`);
    if (!Number.isInteger(from) || !Number.isInteger(to) || from > to) {
      throw new RangeError(`change ${i}: from and to must be integers with from <= to`);
    }
    if (hasLoneSurrogate(insert)) throw new RangeError(`change ${i}: insert has a lone surrogate`);
    return { from, to, insert };
  });
  // Stable: inserts at one position keep the order they were given in.
  list.sort((a, b) => a.from - b.from);
  const op = [];
  const append = appender(op);
  const w = new Walker(text);
  for (const { from, to, insert } of list) {
    if (from < w.u) throw new RangeError('changes overlap');
    const start = w.cp;
    w.toOffset(from);
    append(w.cp - start);
    const deleteStart = w.cp;
    w.toOffset(to);
    append({ d: w.cp - deleteStart });
    append(insert);
  }
  if (typeof op[op.length - 1] === 'number') op.pop();
  return op;
}

/**
 * The changes, in UTF-16 offsets of `text`, that code point op `op` makes to `text`.
 *
 * Neighbouring deletes and inserts form one change; the list is sorted and refers to
 * positions in `text`, ready for CodeMirror's `view.dispatch({changes})`.
 */
export function opToChanges(text, op) {
  const out = [];
  const w = new Walker(text);
  let change = null;
  for (const c of op) {
    if (typeof c === 'number') {
      if (change) out.push(change);
      change = null;
      w.by(c);
    } else if (typeof c === 'string') {
      change ??= { from: w.u, to: w.u, insert: '' };
      change.insert += c;
    } else {
      change ??= { from: w.u, to: w.u, insert: '' };
      w.by(typeof c.d === 'number' ? c.d : toCodePoints(c.d, c.d.length));
      change.to = w.u;
    }
  }
  if (change) out.push(change);
  return out;
}

/** `text` with `changes` (UTF-16, as `changesToOp` takes them) applied. */
export function applyChanges(text, changes) {
  const list = [...(Array.isArray(changes) ? changes : [changes])].sort((a, b) => a.from - b.from);
  let out = '';
  let at = 0;
  for (const c of list) {
    const to = c.to ?? c.from;
    out += text.slice(at, c.from) + (c.insert ?? '');
    at = to;
  }
  return out + text.slice(at);
}
