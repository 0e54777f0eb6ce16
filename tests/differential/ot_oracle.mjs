// Oracle for tests/unit/collab_core/test_ot_differential.py.
//
// Reads a JSON array of cases on stdin and writes a JSON array of results on stdout, one
// per case and in the same order: {"result": value} or {"error": message}. One process
// runs a whole batch, so the Python test pays Node's start-up once.
//
// Cases:
//   {"kind": "apply", "doc": str, "op": op}
//   {"kind": "transform", "op": op, "other": op, "side": "left" | "right"}
//   {"kind": "compose", "a": op, "b": op}
//   {"kind": "normalize", "op": op}
//   {"kind": "transformPosition", "pos": int, "op": op}
//   {"kind": "checkOp", "op": op}              (result: null when the op is accepted)

import { readFileSync } from 'node:fs';
import textUnicode from 'ot-text-unicode';

const { type } = textUnicode;

const run = (c) => {
  switch (c.kind) {
    case 'apply': return type.apply(c.doc, c.op);
    case 'transform': return type.transform(c.op, c.other, c.side);
    case 'compose': return type.compose(c.a, c.b);
    // normalize merges deletes by mutating the components it was given; each case is
    // parsed from JSON on its own, so nothing else sees that.
    case 'normalize': return type.normalize(c.op);
    case 'transformPosition': return type.transformPosition(c.pos, c.op);
    case 'checkOp': type.checkOp(c.op); return null;
    default: throw Error(`unknown case kind ${JSON.stringify(c.kind)}`);
  }
};

const cases = JSON.parse(readFileSync(0, 'utf8'));
const results = cases.map((c) => {
  try {
    return { result: run(c) };
  } catch (e) {
    return { error: String(e && e.message !== undefined ? e.message : e) };
  }
});
process.stdout.write(JSON.stringify(results));
