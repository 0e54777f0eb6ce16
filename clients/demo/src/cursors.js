// Remote cursors and selections in CodeMirror: one caret (with the person's name) and one
// highlighted range per participant, in their colour. The list is replaced whenever the
// client reports presence; between reports, decorations move with the document's changes.

import { StateEffect, StateField } from '@codemirror/state';
import { Decoration, EditorView, WidgetType } from '@codemirror/view';

export const setRemoteCursors = StateEffect.define();

class Caret extends WidgetType {
  constructor(name, color) {
    super();
    this.name = name;
    this.color = color;
  }

  eq(other) {
    return other.name === this.name && other.color === this.color;
  }

  toDOM() {
    const caret = document.createElement('span');
    caret.className = 'cm-remote-caret';
    caret.style.borderColor = this.color;
    const label = document.createElement('span');
    label.className = 'cm-remote-name';
    label.style.backgroundColor = this.color;
    // Names are text, never HTML.
    label.textContent = this.name;
    caret.append(label);
    return caret;
  }

  ignoreEvent() {
    return true;
  }
}

function safeColor(color) {
  return /^#[0-9a-fA-F]{3,8}$/.test(color ?? '') ? color : '#888888';
}

function build(participants, docLength) {
  const ranges = [];
  for (const p of participants) {
    if (!p.cursor) continue;
    const color = safeColor(p.user?.color);
    const name = String(p.user?.name ?? 'someone');
    const head = Math.min(Math.max(p.cursor.head, 0), docLength);
    const anchor = Math.min(Math.max(p.cursor.anchor, 0), docLength);
    const from = Math.min(anchor, head);
    const to = Math.max(anchor, head);
    if (from < to) {
      ranges.push(
        Decoration.mark({
          attributes: { style: `background-color: ${color}33`, 'data-session': p.session },
        }).range(from, to),
      );
    }
    ranges.push(
      Decoration.widget({ widget: new Caret(name, color), side: 1 }).range(head),
    );
  }
  return Decoration.set(ranges, true);
}

export const remoteCursors = StateField.define({
  create() {
    return Decoration.none;
  },
  update(decorations, tr) {
    let next = decorations.map(tr.changes);
    for (const effect of tr.effects) {
      if (effect.is(setRemoteCursors)) next = build(effect.value, tr.state.doc.length);
    }
    return next;
  },
  provide: (field) => EditorView.decorations.from(field),
});
