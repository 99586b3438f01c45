// JSON read as written: numbers keep their text (`19.90` stays `19.90`, amounts are
// exact in this service), and every value knows where it is in the text, so that an
// error's location (`mappings[0].fields[2].from`) can be found in what was typed.

class Reader {
  constructor(text) {
    this.text = text;
    this.at = 0;
  }

  fail(message) {
    const before = this.text.slice(0, this.at);
    const line = before.split('\n').length;
    const column = this.at - before.lastIndexOf('\n');
    const error = new SyntaxError(`${message} at line ${line}, column ${column}`);
    error.position = this.at;
    throw error;
  }

  space() {
    while (this.at < this.text.length && ' \t\n\r'.includes(this.text[this.at])) this.at += 1;
  }

  value() {
    this.space();
    const start = this.at;
    const c = this.text[this.at];
    let node;
    if (c === '{') node = this.object();
    else if (c === '[') node = this.array();
    else if (c === '"') node = { kind: 'string', value: this.string() };
    else if (c === '-' || (c >= '0' && c <= '9')) node = this.number();
    else if (this.text.startsWith('true', this.at)) node = this.word('true', true);
    else if (this.text.startsWith('false', this.at)) node = this.word('false', false);
    else if (this.text.startsWith('null', this.at)) node = this.word('null', null);
    else this.fail(c === undefined ? 'unexpected end' : `unexpected ${JSON.stringify(c)}`);
    node.start = start;
    node.end = this.at;
    return node;
  }

  word(text, value) {
    this.at += text.length;
    return { kind: 'literal', raw: text, value };
  }

  number() {
    const match = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(this.text.slice(this.at));
    if (!match) this.fail('bad number');
    this.at += match[0].length;
    return { kind: 'number', raw: match[0] };
  }

  string() {
    const match = /^"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/.exec(this.text.slice(this.at));
    if (!match) this.fail('bad string');
    this.at += match[0].length;
    return JSON.parse(match[0]);
  }

  object() {
    this.at += 1;
    const entries = [];
    this.space();
    if (this.text[this.at] === '}') {
      this.at += 1;
      return { kind: 'object', entries };
    }
    for (;;) {
      this.space();
      if (this.text[this.at] !== '"') this.fail('expected a key');
      const keyStart = this.at;
      const key = this.string();
      this.space();
      if (this.text[this.at] !== ':') this.fail('expected ":"');
      this.at += 1;
      const value = this.value();
      entries.push({ key, keyStart, value });
      this.space();
      if (this.text[this.at] === ',') {
        this.at += 1;
      } else if (this.text[this.at] === '}') {
        this.at += 1;
        return { kind: 'object', entries };
      } else {
        this.fail('expected "," or "}"');
      }
    }
  }

  array() {
    this.at += 1;
    const items = [];
    this.space();
    if (this.text[this.at] === ']') {
      this.at += 1;
      return { kind: 'array', items };
    }
    for (;;) {
      items.push(this.value());
      this.space();
      if (this.text[this.at] === ',') {
        this.at += 1;
      } else if (this.text[this.at] === ']') {
        this.at += 1;
        return { kind: 'array', items };
      } else {
        this.fail('expected "," or "]"');
      }
    }
  }
}

/** Parses JSON text into nodes: {kind, start, end, ...}; throws SyntaxError with where. */
export function parse(text) {
  const reader = new Reader(text);
  const node = reader.value();
  reader.space();
  if (reader.at < text.length) reader.fail('unexpected text after the value');
  return node;
}

/** The node at `key` (an object key or an array index) of `node`, if any. */
export function child(node, key) {
  if (!node) return undefined;
  if (node.kind === 'object') {
    const entries = node.entries.filter((e) => e.key === key);
    return entries.length ? entries[entries.length - 1].value : undefined;
  }
  if (node.kind === 'array' && /^\d+$/.test(String(key))) return node.items[Number(key)];
  return undefined;
}

/** `a.b[2].c` as keys: ['a', 'b', '2', 'c']. */
export function keys(path) {
  const out = [];
  for (const part of String(path).split('.')) {
    const match = /^([^[]*)((?:\[\d+\])*)$/.exec(part);
    if (!match) {
      out.push(part);
      continue;
    }
    if (match[1]) out.push(match[1]);
    for (const index of match[2].matchAll(/\[(\d+)\]/g)) out.push(index[1]);
  }
  return out;
}

/**
 * Where `path` is in the text `root` was read from: the deepest node found along it
 * (an error about a missing key points at its object), with the path found.
 */
export function locate(root, path) {
  let node = root;
  const found = [];
  for (const key of keys(path)) {
    const next = child(node, key);
    if (!next) break;
    node = next;
    found.push(key);
  }
  return { start: node.start, end: node.end, exact: found.length === keys(path).length };
}

/** The text of `node` laid out two spaces an indent, numbers and strings as written. */
export function pretty(node, indent = '') {
  const inner = `${indent}  `;
  switch (node.kind) {
    case 'object':
      if (!node.entries.length) return '{}';
      return `{\n${node.entries.map((e) => `${inner}${JSON.stringify(e.key)}: ${pretty(e.value, inner)}`).join(',\n')}\n${indent}}`;
    case 'array': {
      if (!node.items.length) return '[]';
      // A short list of plain values reads best on one line: ["purchase", "order_completed"].
      if (node.items.every((item) => item.kind !== 'object' && item.kind !== 'array')) {
        const line = `[${node.items.map((item) => pretty(item)).join(', ')}]`;
        if (line.length + indent.length <= 88) return line;
      }
      return `[\n${node.items.map((item) => `${inner}${pretty(item, inner)}`).join(',\n')}\n${indent}]`;
    }
    case 'string':
      return JSON.stringify(node.value);
    default:
      return node.raw;
  }
}

/** JSON text laid out for reading; text that is not JSON comes back as it is. */
export function prettyText(text) {
  try {
    return pretty(parse(text));
  } catch {
    return text;
  }
}

/** The line (1-based) of a position in a text. */
export function lineOf(text, position) {
  return text.slice(0, position).split('\n').length;
}
