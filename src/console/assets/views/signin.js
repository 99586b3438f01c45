// Sign-in: the admin token, typed once, checked by an admin call, kept in memory.

import { api, ApiError, signIn, signOut } from '../api.js';
import { field, h, replace } from '../dom.js';

export function signInView(main, { signedIn }) {
  const input = h('input', { type: 'password', name: 'token', autocomplete: 'off', spellcheck: 'false', autocapitalize: 'off', required: true });
  const token = field('Admin token', input, {
    name: 'token',
    help: 'From auth.admin_tokens, or the file data/admin-token. Kept in this tab\'s memory only: reloading or signing out forgets it.',
  });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h('form', { class: 'signin panel', novalidate: true, 'aria-labelledby': 'signin-title' },
    h('h1', { id: 'signin-title' }, 'Sign in'),
    h('p', {}, 'The console of the Button delivery service: integrations, Test Event, Live Logs and dead letters.'),
    token.wrapper,
    h('div', { class: 'actions' }, submit));
  let busy = false;
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (busy) return;
    const candidate = input.value.trim();
    if (!candidate) {
      token.setError('Enter an admin token.');
      input.focus();
      return;
    }
    busy = true;
    submit.disabled = true;
    token.setError(null);
    signIn(candidate);
    try {
      // Any admin route proves the token; the smallest page of integrations is cheap.
      await api('GET', '/v1/admin/integrations', { query: { limit: 1 }, probe: true });
      input.value = '';
      signedIn();
    } catch (error) {
      signOut();
      if (error instanceof ApiError && error.status === 401) {
        token.setError('The service did not take this token as an admin token.');
      } else if (error instanceof ApiError) {
        token.setError(error.message);
      } else {
        token.setError(`The service could not be reached: ${error.message}`);
      }
      input.select();
      input.focus();
    } finally {
      busy = false;
      submit.disabled = false;
    }
  });
  replace(main, form);
  input.focus();
  return () => {
    input.value = '';
  };
}
