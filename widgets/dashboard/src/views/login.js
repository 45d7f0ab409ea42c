// The sign-in screen: username/password against POST /api/v1/auth/login, the server's error
// message (or the rate-limit wait) shown under the form, and a notice when a session expired.

import { login } from '../api.js';
import { h } from '../dom.js';

/** Renders into `root`; calls onSignedIn(user) after a successful login. */
export function renderLogin(root, { notice, onSignedIn }) {
  const error = h('div', { class: 'form-error', role: 'alert', id: 'login-error' }, notice || '');
  if (notice) error.classList.add('notice');
  const username = h('input', { id: 'login-username', name: 'username', autocomplete: 'username', required: true, autocapitalize: 'off', spellcheck: 'false' });
  const password = h('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const submit = h('button', { class: 'btn primary block', type: 'submit' }, 'Sign in');
  const form = h(
    'form',
    { class: 'login-form', novalidate: true },
    h('label', { for: 'login-username' }, 'Username'),
    username,
    h('label', { for: 'login-password' }, 'Password'),
    password,
    error,
    submit,
  );
  // A 429 counts its Retry-After down in the message ("Rate limited, retry in N s").
  let countdown = null;
  const stopCountdown = () => {
    clearInterval(countdown);
    countdown = null;
  };
  const startCountdown = (seconds) => {
    let left = seconds;
    countdown = setInterval(() => {
      left -= 1;
      if (!error.isConnected || left <= 0) {
        stopCountdown();
        if (error.isConnected) error.textContent = 'You can try again now.';
        return;
      }
      error.textContent = `Rate limited, retry in ${left} s`;
    }, 1000);
  };
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    stopCountdown();
    error.classList.remove('notice');
    if (!username.value.trim() || !password.value) {
      error.textContent = 'Enter your username and password.';
      return;
    }
    submit.disabled = true;
    submit.textContent = 'Signing in…';
    error.textContent = '';
    try {
      const user = await login(username.value.trim(), password.value);
      onSignedIn(user);
    } catch (err) {
      error.textContent = err.message || 'Sign-in failed.';
      if (err.status === 429 && err.retryAfter > 0) startCountdown(err.retryAfter);
      submit.disabled = false;
      submit.textContent = 'Sign in';
      password.select();
    }
  });
  root.replaceChildren(
    h(
      'main',
      { class: 'login-page' },
      h(
        'div',
        { class: 'login-card' },
        h('div', { class: 'brand big' }, h('span', { class: 'brand-mark', 'aria-hidden': 'true' }), 'crm'),
        h('h1', 'Sign in'),
        h('p', { class: 'muted' }, 'Growth and sales dashboard: traffic, intent, leads and customer health.'),
        form,
      ),
    ),
  );
  username.focus();
}
