// An integration's blueprint: read it (its mappings, then the document), edit it with
// each compile error shown at its place in the text, reset it, and Preview what it
// makes of a pasted event.

import { ApiError, get, integrationPath, post, put } from '../api.js';
import { button, confirming, h, replace } from '../dom.js';
import { lineOf, locate, parse, pretty } from '../json.js';
import { code, heading, issues, requestPanel } from './parts.js';

const SAMPLE_EVENT = `{
  "type": "track",
  "event": "purchase",
  "messageId": "preview-1",
  "timestamp": "2024-05-01T10:00:00Z",
  "userId": "user-1",
  "properties": {
    "order_id": "ord-1001",
    "revenue": 19.99,
    "currency": "USD",
    "btn_ref": "srctok-abc123",
    "products": [{"product_id": "p-1", "name": "Socks", "price": 19.99, "quantity": 1}]
  }
}`;

function summary(doc) {
  const mappings = Array.isArray(doc.mappings) ? doc.mappings : [];
  return h('table', { class: 'table' },
    h('caption', {}, `${mappings.length} mappings`),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Mapping'), h('th', { scope: 'col' }, 'Events'), h('th', { scope: 'col' }, 'Button call'), h('th', { scope: 'col' }, 'Fields'))),
    h('tbody', {}, mappings.map((m) => h('tr', {},
      h('td', {}, String(m.name ?? '')),
      h('td', {}, (Array.isArray(m.events) ? m.events : []).map((e) => h('code', { class: 'chip' }, String(e)))),
      h('td', {}, h('code', {}, String(m.call ?? ''))),
      h('td', {}, String(Array.isArray(m.fields) ? m.fields.length : 0))))));
}

/** Selects `start..end` in the textarea and scrolls it into view. */
function reveal(textarea, start, end) {
  textarea.focus();
  textarea.setSelectionRange(start, end);
  const line = lineOf(textarea.value, start);
  const lineHeight = parseFloat(getComputedStyle(textarea).lineHeight) || 18;
  textarea.scrollTop = Math.max(0, (line - 3) * lineHeight);
}

function editor(id, text, { onSaved, toast }) {
  const textarea = h('textarea', { id: 'blueprint-text', class: 'code-input', spellcheck: 'false', autocomplete: 'off', rows: 24, 'aria-describedby': 'blueprint-errors' });
  textarea.value = text;
  const errors = h('div', { id: 'blueprint-errors', class: 'form-error', tabindex: '-1', hidden: true });
  const save = button('Save blueprint', async () => {
    replace(errors);
    errors.hidden = true;
    textarea.removeAttribute('aria-invalid');
    let tree = null;
    try {
      tree = parse(textarea.value);
    } catch (error) {
      showErrors([{ message: error.message, at: error.position }]);
      return;
    }
    try {
      await put(integrationPath(id, '/blueprint'), textarea.value);
      toast('Blueprint saved: new events map with it.', 'good');
      onSaved();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      const details = error.details.length ? error.details : [{ field: '', message: error.message }];
      showErrors(details.map((d) => {
        const place = d.field && d.field !== 'blueprint' ? locate(tree, d.field) : null;
        return { field: d.field, message: d.message, at: place ? place.start : null, end: place ? place.end : null };
      }));
    }
  }, { class: 'primary', id: 'save-blueprint' });

  function showErrors(list) {
    textarea.setAttribute('aria-invalid', 'true');
    replace(errors,
      h('p', {}, list.length === 1 ? 'The service refused the blueprint:' : `The service refused the blueprint (${list.length} errors):`),
      h('ol', {}, list.map((e) => {
        const line = e.at === null || e.at === undefined ? null : lineOf(textarea.value, e.at);
        const go = line === null ? null : h('button', { type: 'button', class: 'link' }, `line ${line}`);
        if (go) go.addEventListener('click', () => reveal(textarea, e.at, e.end ?? e.at + 1));
        return h('li', { 'data-field': e.field || '' }, go, go ? ' ' : null, e.field ? h('code', {}, e.field) : null, e.field ? ': ' : null, e.message);
      })));
    errors.hidden = false;
    const first = list.find((e) => e.at !== null && e.at !== undefined);
    if (first) reveal(textarea, first.at, first.end ?? first.at + 1);
    else errors.focus();
  }

  return h('div', { class: 'editor' },
    h('label', { for: 'blueprint-text' }, 'Blueprint (JSON)'),
    textarea,
    errors,
    h('div', { class: 'actions' }, save));
}

function previewPanel(id) {
  const input = h('textarea', { id: 'preview-event', class: 'code-input', spellcheck: 'false', rows: 14 });
  input.value = SAMPLE_EVENT;
  const result = h('div', { class: 'preview-result', 'aria-live': 'polite' });
  const run = button('Preview', async () => {
    try {
      const { json, text } = await post(integrationPath(id, '/preview'), input.value, { raw: true });
      const node = parse(text);
      const requestNode = node.entries.find((e) => e.key === 'request');
      replace(result,
        h('p', {}, 'Outcome: ', h('strong', { 'data-outcome': json.outcome }, json.outcome.replaceAll('_', ' ')), json.call ? [' · call ', h('code', {}, json.call)] : null),
        json.reason ? h('p', {}, json.reason) : null,
        issues('Mapping errors', json.errors, 'bad'),
        issues('Warnings', json.warnings, 'warn'),
        json.request ? requestPanel(json.request, requestNode ? requestNode.value : null) : null);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      replace(result, h('div', { class: 'form-error' }, h('p', {}, error.message),
        error.details.length > 1 ? h('ul', {}, error.details.map((d) => h('li', {}, d.field ? h('code', {}, d.field) : null, d.field ? ': ' : null, d.message))) : null));
    }
  }, { class: 'primary', id: 'preview' });
  return h('section', { class: 'panel', 'aria-labelledby': 'preview-title' },
    h('h2', { id: 'preview-title' }, 'Preview'),
    h('p', { class: 'muted' }, 'Paste a Signal event: see the exact request Button would be sent. Nothing is sent.'),
    h('label', { for: 'preview-event' }, 'Event (JSON)'),
    input,
    h('div', { class: 'actions' }, run),
    result);
}

export async function blueprintView(main, { params, title, toast, report, stale }) {
  const [id] = params;
  async function load() {
    const [integration, raw] = await Promise.all([get(integrationPath(id)), get(integrationPath(id, '/blueprint'), undefined, { raw: true })]);
    if (stale()) return;
    title(`${integration.name}: blueprint`);
    const tree = parse(raw.text);
    const text = pretty(tree);
    const editing = h('div', { hidden: true });
    const reading = h('div', {}, summary(raw.json), code(tree, 'Blueprint document'));
    const edit = h('button', { type: 'button', id: 'edit-blueprint' }, 'Edit');
    edit.addEventListener('click', () => {
      const open = editing.hidden;
      editing.hidden = !open;
      reading.hidden = open;
      edit.textContent = open ? 'Stop editing' : 'Edit';
      edit.setAttribute('aria-expanded', String(open));
      if (open) editing.querySelector('textarea').focus();
    });
    edit.setAttribute('aria-expanded', 'false');
    replace(editing, editor(id, text, { onSaved: () => load().catch(report), toast }));
    const reset = confirming('Reset to default', 'Put the catalog\u2019s default blueprint back?', 'Reset', async () => {
      await post(integrationPath(id, '/blueprint/reset'));
      toast('Blueprint reset to the default.', 'good');
      load().catch(report);
    }, { id: 'reset-blueprint' });
    replace(main,
      heading(integration, 'blueprint'),
      h('section', { class: 'panel', 'aria-labelledby': 'blueprint-title' },
        h('div', { class: 'page-head' }, h('h2', { id: 'blueprint-title' }, 'Blueprint'), h('div', { class: 'actions' }, edit, reset)),
        h('p', { class: 'muted' }, 'How events become Button requests: each mapping takes some event names to one Button call and builds its fields.'),
        reading,
        editing),
      previewPanel(id));
  }
  await load();
  return null;
}
