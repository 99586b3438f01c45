// Live Logs: the entries newest first with the API's filters and paging, a live tail
// that adds entries as they happen (and says when it missed some), one entry's
// exchange with Button, and the dead letters with replay and discard.

import { get, integrationPath, post } from '../api.js';
import { append, button, confirming, facts, field, h, replace } from '../dom.js';
import { count, localToRfc3339, ms, outcome, outcomeNames, rfc3339ToLocal, shortTime, time } from '../format.js';
import { child, parse } from '../json.js';
import { follow } from '../tail.js';
import { answerPanel, eventPanel, heading, hint, issues, requestPanel } from './parts.js';

const PAGE = 50;
const FILTERS = ['outcome', 'event', 'message_id', 'since', 'until', 'test'];

function row(id, entry, fresh) {
  const href = `#/integrations/${encodeURIComponent(id)}/logs/${encodeURIComponent(entry.id)}`;
  return h('tr', { 'data-log-id': entry.id, class: fresh ? 'fresh' : undefined },
    h('td', { class: 'nowrap' }, h('a', { href }, shortTime(entry.time))),
    h('td', {}, outcome(entry.outcome), entry.test ? h('span', { class: 'badge tone-neutral' }, 'test') : null),
    h('td', {}, entry.event_name ?? '—'),
    h('td', { class: 'mono wrap' }, entry.message_id ?? '—'),
    h('td', { class: 'mono' }, entry.status ?? (entry.error ? 'no answer' : '—')),
    h('td', { class: 'num' }, ms(entry.latency_ms)),
    h('td', { class: 'num' }, entry.attempt ?? '—'));
}

function table(rows) {
  return h('table', { class: 'table logs' },
    h('caption', { class: 'visually-hidden' }, 'Live Logs entries, newest first'),
    h('thead', {}, h('tr', {}, ['Time', 'Outcome', 'Event', 'Message ID', 'Status', 'Latency', 'Attempt'].map((c) => h('th', { scope: 'col' }, c)))),
    rows);
}

function filterForm(id, query, go) {
  const outcomeSelect = h('select', { name: 'outcome' }, h('option', { value: '' }, 'any'), outcomeNames.map((o) => h('option', { value: o, selected: query.get('outcome') === o }, o.replaceAll('_', ' '))));
  const event = h('input', { type: 'text', name: 'event', value: query.get('event') || '', placeholder: 'purchase', autocomplete: 'off' });
  const message = h('input', { type: 'text', name: 'message_id', value: query.get('message_id') || '', autocomplete: 'off', spellcheck: 'false' });
  const since = h('input', { type: 'datetime-local', step: '1', name: 'since', value: rfc3339ToLocal(query.get('since')) });
  const until = h('input', { type: 'datetime-local', step: '1', name: 'until', value: rfc3339ToLocal(query.get('until')) });
  const test = h('select', { name: 'test' },
    h('option', { value: '' }, 'all entries'),
    h('option', { value: 'true', selected: query.get('test') === 'true' }, 'Test Event only'),
    h('option', { value: 'false', selected: query.get('test') === 'false' }, 'no Test Events'));
  const form = h('form', { class: 'filters', novalidate: true, role: 'search', 'aria-label': 'Filter entries' },
    field('Outcome', outcomeSelect, { name: 'outcome' }).wrapper,
    field('Event', event, { name: 'event' }).wrapper,
    field('Message ID', message, { name: 'message_id' }).wrapper,
    field('From', since, { name: 'since' }).wrapper,
    field('To', until, { name: 'until' }).wrapper,
    field('Test Events', test, { name: 'test' }).wrapper,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Filter'), h('a', { class: 'button quiet', href: `#/integrations/${encodeURIComponent(id)}/logs` }, 'Clear')));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    const values = {
      outcome: outcomeSelect.value,
      event: event.value,
      message_id: message.value.trim(),
      since: localToRfc3339(since.value),
      until: localToRfc3339(until.value),
      test: test.value,
    };
    for (const [k, v] of Object.entries(values)) if (v) next.set(k, v);
    go(`#/integrations/${encodeURIComponent(id)}/logs${next.toString() ? `?${next}` : ''}`);
  });
  return form;
}

export async function logsView(main, { params, query, title, go, stale }) {
  const [id] = params;
  const filters = Object.fromEntries(FILTERS.filter((k) => query.get(k)).map((k) => [k, query.get(k)]));
  const cursor = query.get('cursor') || undefined;
  const body = h('tbody', {});
  const empty = h('p', { class: 'muted empty-logs', hidden: true }, 'No entries match.');
  const tailState = h('span', { class: 'tail-state', 'data-state': 'off' }, 'Live tail off');
  const missed = h('div', { class: 'missed', role: 'status', hidden: true });
  // The tail follows the newest page: with no cursor and no end of the time range.
  const canTail = !cursor && !filters.until;
  const toggle = h('button', { type: 'button', id: 'tail-toggle', 'aria-pressed': 'false', disabled: !canTail }, 'Live tail');
  let tail = null;
  let missedTotal = 0;
  // Entries the tail brings before the list is shown wait here, so that none made
  // between the two is lost.
  let early = [];

  function add(entry) {
    const since = filters.since ? new Date(filters.since).getTime() : null;
    if (since !== null && new Date(entry.time).getTime() < since) return;
    if (early) {
      early.push(entry);
      return;
    }
    if (body.querySelector(`tr[data-log-id="${CSS.escape(entry.id)}"]`)) return;
    body.prepend(row(id, entry, true));
    empty.hidden = true;
    while (body.children.length > 500) body.lastElementChild.remove();
  }
  function setState(state, detail) {
    tailState.dataset.state = state;
    replace(tailState, {
      live: 'Live: new entries appear at the top',
      reconnecting: `Reconnecting (${detail})…`,
      stopped: 'Live tail off',
      off: 'Live tail off',
    }[state] || state);
  }
  function start() {
    tail = follow(integrationPath(id, '/logs/stream'), { outcome: filters.outcome, event: filters.event, message_id: filters.message_id, test: filters.test }, {
      onEntry: add,
      onMissed(n) {
        missedTotal = n === null ? missedTotal : missedTotal + n;
        const text = n === null
          ? 'The live tail reconnected: entries made meanwhile may be missing.'
          : `The live tail fell behind and missed ${count(missedTotal)} entries.`;
        const reload = h('a', { href: location.hash }, 'Reload the list');
        reload.addEventListener('click', (event) => {
          event.preventDefault();
          go(location.hash);
        });
        replace(missed, text, ' ', reload);
        missed.hidden = false;
      },
      onState: setState,
      onRefused() {
        // Any call that meets the refused token signs out; make one so the frame does.
        get('/v1/admin/integrations', { limit: 1 }).catch(() => {});
      },
    });
    toggle.setAttribute('aria-pressed', 'true');
  }
  function stop() {
    if (tail) tail.stop();
    tail = null;
    toggle.setAttribute('aria-pressed', 'false');
    setState('off');
  }
  toggle.addEventListener('click', () => (tail ? stop() : start()));

  if (canTail) start();
  let integration;
  let page;
  try {
    [integration, page] = await Promise.all([
      get(integrationPath(id)),
      get(integrationPath(id, '/logs'), { ...filters, cursor, limit: PAGE }),
    ]);
  } catch (error) {
    stop();
    throw error;
  }
  if (stale()) {
    stop();
    return null;
  }
  title(`${integration.name}: Live Logs`);
  append(body, page.data.map((e) => row(id, e, false)));
  empty.hidden = page.data.length > 0;
  const waiting = early;
  early = null;
  for (const entry of waiting) add(entry);

  const base = `#/integrations/${encodeURIComponent(id)}/logs`;
  const here = new URLSearchParams(filters);
  const olderQuery = new URLSearchParams(here);
  if (page.next_cursor) olderQuery.set('cursor', page.next_cursor);
  const paging = h('nav', { class: 'paging', 'aria-label': 'Pages' },
    cursor ? h('a', { class: 'button', href: `${base}${here.toString() ? `?${here}` : ''}` }, 'Newest') : null,
    page.has_more ? h('a', { class: 'button', href: `${base}?${olderQuery}`, rel: 'next' }, 'Older entries') : null);
  replace(main,
    heading(integration, 'logs'),
    h('section', { class: 'panel' },
      filterForm(id, query, go),
      h('div', { class: 'toolbar' }, toggle, tailState, canTail ? null : h('span', { class: 'muted' }, '(only on the newest page, without an end time)')),
      missed,
      h('div', { class: 'scroll' }, table(body)),
      empty,
      paging));
  return () => {
    if (tail) tail.stop();
    tail = null;
  };
}

export async function entryView(main, { params, title, stale }) {
  const [id, logId] = params;
  const [integration, raw] = await Promise.all([
    get(integrationPath(id)),
    get(integrationPath(id, `/logs/${encodeURIComponent(logId)}`), undefined, { raw: true }),
  ]);
  if (stale()) return null;
  const entry = raw.json;
  const tree = parse(raw.text);
  title(`${integration.name}: entry ${entry.id}`);
  const logs = `#/integrations/${encodeURIComponent(id)}/logs`;
  const request = child(tree, 'request');
  const event = child(tree, 'event');
  replace(main,
    heading(integration, 'logs'),
    h('section', { class: 'panel entry', 'aria-labelledby': 'entry-title' },
      h('p', { class: 'crumbs' }, h('a', { href: logs }, 'Live Logs'), ' / ', h('span', { class: 'mono' }, entry.id)),
      h('h2', { id: 'entry-title' }, outcome(entry.outcome), ' ', entry.status ? h('span', { class: 'mono status-line' }, entry.status) : null, entry.test ? h('span', { class: 'badge tone-neutral' }, 'test') : null),
      facts([
        ['Time', time(entry.time)],
        ['Event', entry.event_name],
        ['Message ID', entry.message_id ? h('a', { href: `${logs}?message_id=${encodeURIComponent(entry.message_id)}` }, entry.message_id) : null],
        ['Button call', entry.call ? h('code', {}, entry.call) : null],
        ['Delivery', entry.delivery_id ? h('code', {}, entry.delivery_id) : null],
        ['Attempt', entry.attempt],
        ['Latency', ms(entry.latency_ms)],
        entry.next_attempt_at ? ['Next attempt', time(entry.next_attempt_at)] : null,
        entry.replaces ? ['Replaces', h('a', { href: `${logs}/${encodeURIComponent(entry.replaces)}` }, entry.replaces)] : null,
      ]),
      entry.error ? h('p', { class: 'error' }, entry.error) : null,
      hint(entry.hint),
      issues('Warnings', entry.warnings, 'warn'),
      h('div', { class: 'panes three' },
        eventPanel(entry.event, event),
        requestPanel(entry.request, request),
        answerPanel(entry.status, entry.response))));
  return null;
}

export async function deadLettersView(main, { params, query, title, toast, go, stale }) {
  const [id] = params;
  const cursor = query.get('cursor') || undefined;
  const [integration, page] = await Promise.all([
    get(integrationPath(id)),
    get(integrationPath(id, '/dead-letters'), { cursor, limit: PAGE }),
  ]);
  if (stale()) return null;
  title(`${integration.name}: dead letters`);
  const here = `#/integrations/${encodeURIComponent(id)}/dead-letters`;
  const reload = () => go(here);
  async function act(kind, selection) {
    const result = await post(integrationPath(id, `/dead-letters/${kind}`), selection);
    toast(`${kind === 'replay' ? 'Replayed' : 'Discarded'} ${count(result.count)} dead ${result.count === 1 ? 'letter' : 'letters'}.`, 'good');
    reload();
  }
  const boxes = [];
  const rows = page.data.map((d) => {
    const box = h('input', { type: 'checkbox', value: d.id, 'aria-label': `Select ${d.messageId}` });
    boxes.push(box);
    return h('tr', { 'data-delivery-id': d.id },
      h('td', {}, box),
      h('td', { class: 'mono wrap' }, d.messageId),
      h('td', {}, d.event_name),
      h('td', {}, d.call ? h('code', {}, d.call) : '—'),
      h('td', { class: 'num' }, d.attempts),
      h('td', {}, time(d.dead_lettered_at)),
      h('td', { class: 'row-actions' },
        button('Replay', () => act('replay', { ids: [d.id] }), { class: 'replay' }),
        ' ',
        confirming('Discard', 'Discard it for good?', 'Discard', () => act('discard', { ids: [d.id] }), { class: 'danger discard' }),
        ' ',
        h('a', { href: `#/integrations/${encodeURIComponent(id)}/logs?message_id=${encodeURIComponent(d.messageId)}` }, 'Entries')));
  });
  const selected = () => boxes.filter((b) => b.checked).map((b) => b.value);
  const selectionError = h('p', { class: 'field-error', hidden: true });
  const withSelection = (kind) => async () => {
    const ids = selected();
    if (!ids.length) {
      replace(selectionError, 'Select dead letters first.');
      selectionError.hidden = false;
      return;
    }
    await act(kind, { ids });
  };
  const bulk = page.data.length
    ? h('div', { class: 'toolbar' },
      button('Replay selected', withSelection('replay')),
      confirming('Discard selected', 'Discard the selected ones for good?', 'Discard', withSelection('discard'), { class: 'danger' }),
      button('Replay all', () => act('replay', { all: true }), { id: 'replay-all' }),
      confirming('Discard all', 'Discard every dead letter of this integration for good?', 'Discard all', () => act('discard', { all: true }), { class: 'danger', id: 'discard-all' }),
      selectionError)
    : null;
  const next = page.has_more ? h('a', { class: 'button', href: `${here}?cursor=${encodeURIComponent(page.next_cursor)}` }, 'More') : null;
  replace(main,
    heading(integration, 'dead-letters'),
    h('section', { class: 'panel', 'aria-labelledby': 'dead-title' },
      h('h2', { id: 'dead-title' }, 'Dead letters'),
      h('p', { class: 'muted' }, 'Deliveries that used up their attempts. A replay starts the attempts afresh; a discard drops them.'),
      bulk,
      page.data.length
        ? h('div', { class: 'scroll' }, h('table', { class: 'table' },
          h('caption', { class: 'visually-hidden' }, 'Dead letters'),
          h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Select')), ['Message ID', 'Event', 'Call', 'Attempts', 'Dead since', 'Actions'].map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, rows)))
        : h('p', { class: 'muted empty-dead' }, 'No dead letters.'),
      cursor ? h('a', { class: 'button', href: here }, 'First page') : null,
      next));
  return null;
}
