// Building the page. Every value is written as text (a text node, an attribute set
// with setAttribute, or a property such as .value): nothing here parses markup, so a
// value that came from an event (`<img src=x onerror=...>`) is shown, never run.

const SVG = 'http://www.w3.org/2000/svg';

function build(element, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'on') {
      for (const [type, handler] of Object.entries(value)) element.addEventListener(type, handler);
    } else if (name === 'class') {
      element.setAttribute('class', Array.isArray(value) ? value.filter(Boolean).join(' ') : value);
    } else if (name === 'value' || name === 'checked' || name === 'selected' || name === 'indeterminate') {
      element[name] = value;
    } else {
      element.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(element, children);
  return element;
}

/** Appends children: nodes as they are, strings and numbers as text, arrays flattened. */
export function append(parent, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** An HTML element: h('a', {href: '#/x', class: 'link'}, 'text', otherNode). */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG, tag), attrs, children);
}

/** Replaces the children of `parent`. */
export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

/** A button that runs `action` once at a time, shown busy meanwhile. */
export function button(label, action, attrs = {}) {
  const el = h('button', { type: 'button', ...attrs }, label);
  el.addEventListener('click', async () => {
    if (el.getAttribute('aria-busy') === 'true') return;
    el.setAttribute('aria-busy', 'true');
    el.disabled = true;
    try {
      await action(el);
    } finally {
      el.removeAttribute('aria-busy');
      if (el.isConnected) el.disabled = false;
    }
  });
  return el;
}

/**
 * A button that asks before it acts: the first press shows `question` with a confirm
 * and a cancel button in its place (no blocking dialog; keyboard focus moves along).
 */
export function confirming(label, question, confirmLabel, action, attrs = {}) {
  const holder = h('span', { class: 'confirming' });
  const ask = h('button', { type: 'button', ...attrs }, label);
  const show = (node) => {
    replace(holder, node);
  };
  ask.addEventListener('click', () => {
    const cancel = h('button', { type: 'button', class: 'quiet' }, 'Cancel');
    const yes = button(confirmLabel, async () => {
      await action();
      if (holder.isConnected) {
        show(ask);
      }
    }, { class: attrs.class });
    cancel.addEventListener('click', () => {
      show(ask);
      ask.focus();
    });
    show(h('span', { class: 'question', role: 'group', 'aria-label': question }, h('span', {}, question), ' ', yes, ' ', cancel));
    yes.focus();
  });
  show(ask);
  return holder;
}

let ids = 0;
/** A unique element id, for labels and descriptions. */
export function uid(prefix = 'f') {
  ids += 1;
  return `${prefix}-${ids}`;
}

/** A labelled form field with a place for its error. */
export function field(label, control, { help, name } = {}) {
  const id = control.id || uid(name || 'field');
  control.id = id;
  const error = h('p', { class: 'field-error', id: `${id}-error`, hidden: true });
  const described = [];
  let helpNode = null;
  if (help) {
    helpNode = h('p', { class: 'help', id: `${id}-help` }, help);
    described.push(helpNode.id);
  }
  described.push(error.id);
  control.setAttribute('aria-describedby', described.join(' '));
  const wrapper = h('div', { class: 'field', 'data-field': name || '' }, h('label', { for: id }, label), control, helpNode, error);
  return {
    wrapper,
    control,
    setError(message) {
      if (message) {
        replace(error, message);
        error.hidden = false;
        control.setAttribute('aria-invalid', 'true');
      } else {
        replace(error);
        error.hidden = true;
        control.removeAttribute('aria-invalid');
      }
    },
  };
}

/** A definition list from [term, value] pairs; values may be nodes. */
export function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.filter(Boolean).map(([term, value]) => [h('dt', {}, term), h('dd', {}, value ?? '—')]));
}
