// Pieces several pages share: an integration's heading and tabs, and an exchange with
// Button (the event, the request sent, the answer) side by side.

import { h } from '../dom.js';
import { lane, ms, outcome } from '../format.js';
import { child, pretty, prettyText } from '../json.js';

/** The integration's name, state and the tabs of its pages. */
export function heading(integration, active, laneState) {
  const base = `#/integrations/${encodeURIComponent(integration.id)}`;
  const tab = (key, label, href) => h('a', { href, class: 'tab', 'aria-current': key === active ? 'page' : undefined }, label);
  const state = laneState || (integration.enabled ? integration.status.lane : 'disabled');
  return h('div', { class: 'heading' },
    h('p', { class: 'crumbs' }, h('a', { href: '#/integrations' }, 'Integrations'), ' / ', integration.name),
    h('div', { class: 'page-head' },
      h('h1', {}, integration.name),
      h('div', { class: 'badges' }, lane(state), integration.enabled ? null : h('span', { class: 'badge tone-neutral' }, 'disabled'))),
    h('nav', { class: 'tabs', 'aria-label': 'Integration pages' },
      tab('overview', 'Overview', base),
      tab('blueprint', 'Blueprint', `${base}/blueprint`),
      tab('logs', 'Live Logs', `${base}/logs`),
      tab('dead-letters', 'Dead letters', `${base}/dead-letters`)));
}

/** A JSON value (or a lossless node from json.js) laid out in a code block. */
export function code(value, label) {
  let text;
  if (value && typeof value === 'object' && 'kind' in value && 'start' in value) text = pretty(value);
  else if (typeof value === 'string') text = prettyText(value);
  else text = JSON.stringify(value, null, 2);
  return h('pre', { class: 'code', tabindex: '0', 'aria-label': label }, h('code', {}, text));
}

function headers(map) {
  const entries = Object.entries(map || {});
  if (!entries.length) return null;
  return h('table', { class: 'headers' }, h('tbody', {}, entries.map(([k, v]) => h('tr', {}, h('th', { scope: 'row' }, k), h('td', {}, String(v))))));
}

/** The request Button was (or would be) sent; `node` is the same from the raw text. */
export function requestPanel(request, node) {
  if (!request) return h('section', { class: 'pane' }, h('h3', {}, 'Request sent'), h('p', { class: 'muted' }, 'No request: nothing was sent.'));
  const body = node ? child(node, 'body') : undefined;
  return h('section', { class: 'pane', 'data-pane': 'request' },
    h('h3', {}, 'Request sent'),
    h('p', { class: 'mono request-line' }, h('strong', {}, request.method), ' ', request.url),
    headers(request.headers),
    code(body || request.body, 'Request body'));
}

/** Button's answer: the status line, headers and body. */
export function answerPanel(status, response) {
  return h('section', { class: 'pane', 'data-pane': 'answer' },
    h('h3', {}, 'Button\u2019s answer'),
    status ? h('p', { class: 'status-line mono' }, status) : h('p', { class: 'muted' }, 'No answer.'),
    response ? [headers(response.headers), code(response.body, 'Answer body'), response.truncated ? h('p', { class: 'muted' }, 'Cut at the configured bound (button.max_response_bytes).') : null] : null);
}

/** The event as the service received it. */
export function eventPanel(event, node) {
  return h('section', { class: 'pane', 'data-pane': 'event' },
    h('h3', {}, 'Event as received'),
    event === undefined || event === null ? h('p', { class: 'muted' }, 'Not kept (retention, or a Test Event sample).') : code(node || event, 'Event'));
}

/** Issues (warnings or mapping errors) with their field and hint. */
export function issues(title, list, tone) {
  if (!list || !list.length) return null;
  return h('div', { class: ['issues', `tone-${tone}`] },
    h('h3', {}, title),
    h('ul', {}, list.map((i) => h('li', {}, i.field ? h('code', {}, i.field) : null, i.field ? ': ' : null, i.message, i.hint ? h('p', { class: 'hint' }, i.hint) : null))));
}

/** A hint box: what to do about a failure. */
export function hint(text) {
  return text ? h('div', { class: 'hint-box', role: 'note' }, h('strong', {}, 'Hint: '), text) : null;
}

/** The figures of one attempt: outcome, status, latency. */
export function attemptSummary(result) {
  return h('div', { class: 'attempt' },
    h('p', { class: 'status-big mono', 'data-status': result.status || '' }, result.status || (result.error ? 'No answer' : result.outcome.replaceAll('_', ' '))),
    h('p', {}, outcome(result.outcome), ' ', result.latency_ms !== null && result.latency_ms !== undefined ? h('span', { class: 'muted' }, `in ${ms(result.latency_ms)}`) : null),
    result.error ? h('p', { class: 'error' }, result.error) : null,
    hint(result.hint));
}
