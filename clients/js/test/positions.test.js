// UTF-16 offsets <-> code points, and changes <-> ops. Pure: no server.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { apply as applyOp } from '../src/ot.js';
import {
  applyChanges,
  changesToOp,
  hasLoneSurrogate,
  opToChanges,
  splitsSurrogatePair,
  toCodePoints,
  toUtf16,
} from '../src/positions.js';
import { seeded } from './support/helpers.js';

const EMOJI = '😀'; // U+1F600: two UTF-16 units, one code point
const FAMILY = '👩‍👩‍👧'; // 3 emoji joined by 2 ZWJ: 8 UTF-16 units, 5 code points
const E_ACUTE = 'e\u0301'; // e + combining acute: 2 units, 2 code points

test('ASCII offsets are the same in both units', () => {
  for (let i = 0; i <= 5; i++) {
    assert.equal(toCodePoints('hello', i), i);
    assert.equal(toUtf16('hello', i), i);
  }
});

test('a surrogate pair is two UTF-16 units and one code point', () => {
  const text = `a${EMOJI}b`;
  assert.equal(text.length, 4);
  assert.deepEqual([0, 1, 3, 4].map((u) => toCodePoints(text, u)), [0, 1, 2, 3]);
  assert.deepEqual([0, 1, 2, 3].map((p) => toUtf16(text, p)), [0, 1, 3, 4]);
});

test('combining marks and joiners are code points of their own', () => {
  assert.equal(toCodePoints(E_ACUTE, 2), 2);
  assert.equal(toCodePoints(FAMILY, FAMILY.length), 5);
  assert.equal(toUtf16(FAMILY, 5), 8);
  assert.equal(toUtf16(FAMILY, 2), 3); // 👩 + ZWJ
  const text = `${FAMILY}\n${E_ACUTE}${EMOJI}`;
  for (let p = 0; p <= [...text].length; p++) assert.equal(toCodePoints(text, toUtf16(text, p)), p);
});

test('an offset inside a surrogate pair is refused', () => {
  const text = `a${EMOJI}b`;
  assert.equal(splitsSurrogatePair(text, 2), true);
  assert.equal(splitsSurrogatePair(text, 1), false);
  assert.equal(splitsSurrogatePair(text, 3), false);
  assert.throws(() => toCodePoints(text, 2), { name: 'RangeError', message: /splits a surrogate pair/ });
  assert.throws(() => changesToOp(text, { from: 2, to: 2, insert: 'x' }), RangeError);
  assert.throws(() => changesToOp(text, { from: 1, to: 2 }), RangeError);
});

test('positions outside the text are refused', () => {
  assert.throws(() => toCodePoints('abc', 4), RangeError);
  assert.throws(() => toCodePoints('abc', -1), RangeError);
  assert.throws(() => toCodePoints('abc', 1.5), RangeError);
  assert.throws(() => toUtf16('abc', 4), RangeError);
  assert.throws(() => toUtf16(EMOJI, 2), RangeError);
  assert.throws(() => changesToOp('abc', { from: 2, to: 1 }), RangeError);
  assert.throws(() => changesToOp('abc', { from: 2, to: 9 }), RangeError);
});

test('lone surrogates are found and refused in inserts', () => {
  assert.equal(hasLoneSurrogate(EMOJI), false);
  assert.equal(hasLoneSurrogate('\ud83d'), true);
  assert.equal(hasLoneSurrogate('x\ude00'), true);
  assert.equal(hasLoneSurrogate(`${EMOJI[1]}${EMOJI[0]}`), true);
  assert.throws(() => changesToOp('ab', { from: 1, insert: '\ud83d' }), /lone surrogate/);
});

test('a change after an emoji becomes a code point op', () => {
  const text = `${EMOJI}abc`;
  assert.deepEqual(changesToOp(text, { from: 2, to: 2, insert: 'X' }), [1, 'X']);
  assert.deepEqual(changesToOp(text, { from: 0, to: 2, insert: '' }), [{ d: 1 }]);
  assert.deepEqual(changesToOp(text, { from: 3, to: 5, insert: EMOJI }), [2, { d: 2 }, EMOJI]);
  assert.deepEqual(changesToOp(text, { from: 5, to: 5, insert: '' }), []);
});

test('several changes refer to the text before all of them, as in CodeMirror', () => {
  const text = `a${EMOJI}b${FAMILY}c`;
  const changes = [
    { from: 0, to: 1, insert: 'A' },
    { from: 3, to: 4, insert: '' }, // b
    { from: 12, to: 12, insert: E_ACUTE }, // after the family, before c
  ];
  const op = changesToOp(text, changes);
  assert.deepEqual(op, [{ d: 1 }, 'A', 1, { d: 1 }, 5, E_ACUTE]);
  assert.equal(applyOp(text, op), `A${EMOJI}${FAMILY}${E_ACUTE}c`);
  assert.equal(applyChanges(text, changes), applyOp(text, op));
  // Given out of order, changes are sorted; overlapping ones are refused.
  assert.deepEqual(changesToOp(text, [...changes].reverse()), op);
  assert.throws(() => changesToOp(text, [{ from: 0, to: 3 }, { from: 2, to: 4 }]), /overlap/);
});

test('an op becomes UTF-16 changes on the text before it', () => {
  const text = `${EMOJI}${EMOJI}xyz${FAMILY}`;
  assert.deepEqual(opToChanges(text, [1, 'hi']), [{ from: 2, to: 2, insert: 'hi' }]);
  assert.deepEqual(opToChanges(text, [2, { d: 3 }, '!']), [{ from: 4, to: 7, insert: '!' }]);
  assert.deepEqual(opToChanges(text, [{ d: 1 }, 3, { d: EMOJI }]), [
    { from: 0, to: 2, insert: '' },
    { from: 6, to: 7, insert: '' }, // {d: "😀"} deletes one code point: the "z"
  ]);
  assert.deepEqual(opToChanges(text, [5, { d: 5 }]), [{ from: 7, to: 15, insert: '' }]);
  assert.throws(() => opToChanges('ab', [3, 'x']), RangeError);
});

const ALPHABET = ['a', 'b', ' ', '\n', EMOJI, '\u0301', '中', '\u200d', '👩', 'é', '🎉'];

function randomText(random, max) {
  let s = '';
  const n = Math.floor(random() * max);
  for (let i = 0; i < n; i++) s += ALPHABET[Math.floor(random() * ALPHABET.length)];
  return s;
}

/** A random valid code point op on a text of `length` code points. */
function randomOp(random, length) {
  const op = [];
  let left = length;
  while (left > 0 || op.length === 0) {
    const r = random();
    if (r < 0.4 && left > 0) {
      const n = 1 + Math.floor(random() * left);
      op.push(n);
      left -= n;
    } else if (r < 0.7 && left > 0) {
      const n = 1 + Math.floor(random() * Math.min(left, 3));
      op.push({ d: n });
      left -= n;
    } else {
      op.push(randomText(random, 4) || 'x');
    }
    if (random() < 0.2) break;
  }
  while (typeof op.at(-1) === 'number') op.pop();
  return op;
}

test('changes and ops convert both ways on random texts (seeded)', () => {
  const random = seeded(42);
  for (let i = 0; i < 2000; i++) {
    const text = randomText(random, 20);
    const op = randomOp(random, [...text].length);
    let after;
    try {
      after = applyOp(text, op);
    } catch {
      continue; // adjacent components of one kind: not a valid op, not our concern here
    }
    const changes = opToChanges(text, op);
    assert.equal(applyChanges(text, changes), after, `${JSON.stringify(text)} ${JSON.stringify(op)}`);
    // Back to an op: the same edit, in its normal form.
    assert.equal(applyOp(text, changesToOp(text, changes)), after);
    for (const c of changes) {
      assert.ok(!splitsSurrogatePair(text, c.from) && !splitsSurrogatePair(text, c.to));
    }
  }
});
