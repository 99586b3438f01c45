// The console's frame: the hash router, the navigation, sign-in and sign-out, and the
// messages line. Each page is a module under views/ that renders into <main> and
// answers a function that stops what it started (a live tail, a refresh timer).

import { onRefused, signedIn, signOut, SignedOut, ApiError } from './api.js';
import { h, replace } from './dom.js';
import { signInView } from './views/signin.js';
import { integrationsView, installView } from './views/integrations.js';
import { integrationView } from './views/integration.js';
import { blueprintView } from './views/blueprint.js';
import { logsView, entryView, deadLettersView } from './views/logs.js';
import { sourcesView } from './views/sources.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const signOutButton = document.getElementById('signout');
const toastLine = document.getElementById('toast');

let stopCurrent = () => {};
let wanted = '#/integrations';
let renderCount = 0;

/** The pages, by the hash's path: `#/integrations/int_.../logs?outcome=failed`. */
const ROUTES = [
  [/^\/?$/, () => integrationsView],
  [/^\/integrations$/, () => integrationsView],
  [/^\/integrations\/new$/, () => installView],
  [/^\/integrations\/([^/]+)$/, () => integrationView],
  [/^\/integrations\/([^/]+)\/blueprint$/, () => blueprintView],
  [/^\/integrations\/([^/]+)\/logs$/, () => logsView],
  [/^\/integrations\/([^/]+)\/logs\/([^/]+)$/, () => entryView],
  [/^\/integrations\/([^/]+)\/dead-letters$/, () => deadLettersView],
  [/^\/sources$/, () => sourcesView],
];

export function parseHash(hash) {
  const text = hash.replace(/^#/, '');
  const [path, search = ''] = text.split('?');
  return { path: path || '/', query: new URLSearchParams(search) };
}

/** Goes to a page (a hash such as `#/integrations/int_...`). */
export function go(hash) {
  if (location.hash === hash) {
    render();
  } else {
    location.hash = hash;
  }
}

/** A message on the status line (read out by screen readers). */
export function toast(message, tone = 'info') {
  replace(toastLine, h('span', { class: `tone-${tone}` }, message));
  toastLine.dataset.shown = 'true';
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => {
    toastLine.dataset.shown = 'false';
  }, 6000);
}

/** Shows an error from a call as a message, unless it is a sign-out. */
export function report(error) {
  if (error instanceof SignedOut) return;
  if (error instanceof ApiError) {
    const wait = error.status === 429 && error.retryAfter ? ` (retry in ${error.retryAfter} s)` : '';
    toast(`${error.message}${wait}`, 'bad');
  } else {
    toast(error && error.message ? error.message : String(error), 'bad');
  }
}

function stop() {
  try {
    stopCurrent();
  } catch {
    // Stopping is best effort.
  }
  stopCurrent = () => {};
}

function markNav(path) {
  const section = path.startsWith('/sources') ? 'sources' : 'integrations';
  for (const link of nav.querySelectorAll('a')) {
    if (link.dataset.section === section) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

async function render() {
  stop();
  renderCount += 1;
  const mine = renderCount;
  const { path, query } = parseHash(location.hash);
  if (!signedIn()) {
    if (path !== '/signin') wanted = location.hash || '#/integrations';
    nav.hidden = true;
    signOutButton.hidden = true;
    document.title = 'Sign in · Button delivery console';
    stopCurrent = signInView(main, {
      signedIn() {
        const target = wanted && wanted !== '#/signin' ? wanted : '#/integrations';
        wanted = '#/integrations';
        go(target);
      },
    }) || (() => {});
    return;
  }
  nav.hidden = false;
  signOutButton.hidden = false;
  markNav(path);
  for (const [pattern, view] of ROUTES) {
    const match = pattern.exec(path);
    if (!match) continue;
    const params = match.slice(1).map(decodeURIComponent);
    const context = {
      params,
      query,
      go,
      toast,
      report,
      stale: () => mine !== renderCount,
      title(text) {
        document.title = `${text} · Button delivery console`;
      },
    };
    replace(main, h('p', { class: 'loading' }, 'Loading…'));
    try {
      const stopper = await view()(main, context);
      if (mine !== renderCount) {
        if (typeof stopper === 'function') stopper();
        return;
      }
      stopCurrent = typeof stopper === 'function' ? stopper : () => {};
    } catch (error) {
      if (mine !== renderCount || error instanceof SignedOut) return;
      replace(main, h('section', { class: 'panel' }, h('h1', {}, 'This page could not be shown'), h('p', { class: 'error' }, error.message || String(error)), h('p', {}, h('a', { href: '#/integrations' }, 'Back to integrations'))));
    }
    main.focus({ preventScroll: true });
    return;
  }
  replace(main, h('section', { class: 'panel' }, h('h1', {}, 'No such page'), h('p', {}, h('a', { href: '#/integrations' }, 'Back to integrations'))));
}

/** Forgets the token, stops every page's work, and shows the sign-in page. */
function endSession(message, tone) {
  stop();
  signOut();
  replace(main);
  wanted = '#/integrations';
  if (message) toast(message, tone);
  if (location.hash === '#/signin') render();
  else location.replace('#/signin');
}

signOutButton.addEventListener('click', () => endSession('Signed out: the token is forgotten.', 'info'));
onRefused(() => endSession('The service refused the token: sign in again.', 'bad'));
window.addEventListener('hashchange', render);
render();
