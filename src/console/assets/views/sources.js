// Sources: senders with their own ingest token, each connected to chosen
// integrations. A token is shown once, when it is made.

import { ApiError, del, get, post, put } from '../api.js';
import { button, confirming, field, h, replace } from '../dom.js';
import { time } from '../format.js';

/** Every page of a list route. */
async function all(path) {
  const items = [];
  let cursor;
  for (;;) {
    const page = await get(path, { limit: 100, cursor });
    items.push(...page.data);
    if (!page.has_more) return items;
    cursor = page.next_cursor;
  }
}

function tokenNotice(name, token) {
  const value = h('input', { type: 'text', readonly: true, value: token, class: 'mono token', 'aria-label': `Token of ${name}` });
  const copy = button('Copy', async () => {
    try {
      await navigator.clipboard.writeText(token);
      replace(copy, 'Copied');
    } catch {
      value.select();
    }
  });
  return h('div', { class: 'token-notice', role: 'alert' },
    h('p', {}, h('strong', {}, `The token of ${name}`), ': shown this once. Give it to the sender; the service keeps only its SHA-256.'),
    h('div', { class: 'toolbar' }, value, copy));
}

export async function sourcesView(main, { title, toast, report, stale }) {
  title('Sources');
  const notice = h('div', { 'aria-live': 'polite' });
  const listHolder = h('div', {});
  let integrations = [];

  async function load() {
    const [sources, found] = await Promise.all([all('/v1/admin/sources'), all('/v1/admin/integrations')]);
    if (stale()) return;
    integrations = found;
    const names = new Map(integrations.map((i) => [i.id, i.name]));
    replace(listHolder, sources.length
      ? h('div', { class: 'cards' }, sources.map((source) => sourceCard(source, names)))
      : h('p', { class: 'muted' }, 'No sources yet: events come in with the ingest tokens from the config, which reach every integration.'));
    replace(createHolder, createForm());
  }

  function sourceCard(source, names) {
    const path = `/v1/admin/sources/${encodeURIComponent(source.id)}`;
    const connections = h('ul', { class: 'connections' }, integrations.map((integration) => {
      const box = h('input', { type: 'checkbox', checked: source.integrations.includes(integration.id) });
      box.addEventListener('change', async () => {
        box.disabled = true;
        const target = `${path}/integrations/${encodeURIComponent(integration.id)}`;
        try {
          if (box.checked) await put(target);
          else await del(target);
          toast(`${source.name} ${box.checked ? 'now feeds' : 'no longer feeds'} ${integration.name}.`, 'good');
        } catch (error) {
          box.checked = !box.checked;
          report(error);
        } finally {
          box.disabled = false;
        }
      });
      return h('li', {}, h('label', { class: 'inline' }, box, ' ', integration.name, ' ', h('span', { class: 'muted mono' }, integration.id)));
    }));
    const unknown = source.integrations.filter((id) => !names.has(id));
    return h('article', { class: 'card', 'data-source-id': source.id },
      h('header', {}, h('h2', {}, source.name)),
      h('p', { class: 'muted mono' }, source.id, ' · created ', time(source.created_at)),
      h('h3', {}, 'Feeds'),
      integrations.length ? connections : h('p', { class: 'muted' }, 'No integration installed.'),
      unknown.length ? h('p', { class: 'muted' }, `Also: ${unknown.join(', ')}`) : null,
      h('div', { class: 'actions' },
        confirming('Rotate token', 'Make a new token? The old one stops at once.', 'Rotate', async () => {
          const answer = await post(`${path}/rotate-token`);
          replace(notice, tokenNotice(source.name, answer.token));
          toast(`New token for ${source.name}.`, 'good');
        }),
        confirming('Delete', `Delete ${source.name}? Its token stops at once.`, 'Delete', async () => {
          await del(path);
          toast(`Deleted ${source.name}.`, 'info');
          await load();
        }, { class: 'danger' })));
  }

  const createHolder = h('div', {});
  function createForm() {
    const name = field('Name', h('input', { type: 'text', autocomplete: 'off' }), { name: 'name', help: 'Who sends with it: "EU storefront", say.' });
    const boxes = integrations.map((i) => h('input', { type: 'checkbox', value: i.id }));
    const group = h('fieldset', { class: 'connections' },
      h('legend', {}, 'Feeds these integrations'),
      integrations.length ? boxes.map((box, n) => h('label', { class: 'inline' }, box, ' ', integrations[n].name)) : h('p', { class: 'muted' }, 'No integration installed.'));
    const groupError = h('p', { class: 'field-error', hidden: true });
    const form = h('form', { class: 'panel form', novalidate: true, 'aria-labelledby': 'new-source' },
      h('h2', { id: 'new-source' }, 'New source'),
      name.wrapper, group, groupError,
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Create source')));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      name.setError(null);
      groupError.hidden = true;
      try {
        const created = await post('/v1/admin/sources', {
          name: name.control.value,
          integrations: boxes.filter((b) => b.checked).map((b) => b.value),
        });
        await load();
        replace(notice, tokenNotice(created.name, created.token));
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        for (const detail of error.details.length ? error.details : [{ field: '', message: error.message }]) {
          if (detail.field === 'name') name.setError(detail.message);
          else {
            replace(groupError, detail.field ? `${detail.field}: ${detail.message}` : detail.message);
            groupError.hidden = false;
          }
        }
      }
    });
    return form;
  }

  await load();
  replace(main,
    h('div', { class: 'page-head' }, h('h1', {}, 'Sources')),
    h('p', { class: 'muted' }, 'A source is a sender with its own ingest token; its events go only to the integrations it feeds.'),
    notice,
    listHolder,
    createHolder);
  return null;
}
