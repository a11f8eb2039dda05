// Sign-in: an API token (from `edgeml tokens create`) is exchanged for a session cookie; the token itself is not kept.
import { signIn } from '../api.js';
import { h, mount, problem } from '../ui.js';

export function render(main, { onSignedIn }) {
  const token = h('input', { type: 'password', id: 'token', name: 'token', autocomplete: 'off', placeholder: 'view_… or op_…', 'data-testid': 'token', required: true });
  const message = h('div');
  const button = h('button', { type: 'submit', 'data-testid': 'signin' }, 'Sign in');
  const form = h('form.card.signin', {
    onsubmit: async (e) => {
      e.preventDefault();
      button.disabled = true;
      mount(message);
      try {
        await signIn(token.value.trim());
        token.value = '';
        onSignedIn();
      } catch (err) {
        mount(message, problem(err));
      } finally {
        button.disabled = false;
      }
    },
  },
  h('h1', 'EdgeMl hub'),
  h('label', { for: 'token' }, 'API token'),
  token,
  h('p.muted', 'A viewer token shows everything read-only; an operator token also offers the actions. Get one with ',
    h('code', 'edgeml tokens create --role viewer'), '.'),
  button,
  message);
  mount(main, form);
  token.focus();
}
