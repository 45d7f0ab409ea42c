// The sign-in screen: username/password against POST /api/v1/auth/login, the server's error
// message (or the rate-limit wait) shown under the form, and a notice when a session expired.
// An account with a second factor then asks for its 6-digit code (or a recovery code); when the
// sign-in policy requires a factor the account lacks, it enrols one here first (the secret and
// its otpauth link, a first code, then the recovery codes shown once).

import { login, loginConfirm, loginEnroll, loginSecondFactor } from '../api.js';
import { h } from '../dom.js';
import { oneFieldForm as stepForm } from '../ui.js';

/** The code step for an account with a second factor. */
function codeStep(card, challenge, onSignedIn) {
  let recovery = false;
  const render = () => {
    const { form, input } = stepForm({
      id: 'login-code',
      label: recovery ? 'Recovery code' : 'Authentication code',
      hint: recovery ? 'One of the recovery codes you saved when you turned the second factor on. Each works once.' : 'The 6-digit code your authenticator app shows for crm.',
      inputAttrs: recovery ? { autocomplete: 'off' } : { inputmode: 'numeric', autocomplete: 'one-time-code', pattern: '[0-9]{6}', maxlength: '6' },
      button: 'Verify',
      busy: 'Verifying…',
      onSubmit: async (value) => onSignedIn(await loginSecondFactor(challenge, recovery ? { recovery_code: value } : { code: value })),
      extra: [
        h('button', { class: 'btn ghost small', type: 'button', id: 'login-code-switch', onclick: () => { recovery = !recovery; render(); } }, recovery ? 'Use the authenticator app instead' : 'Use a recovery code'),
      ],
    });
    card.replaceChildren(h('h1', 'Second factor'), form);
    input.focus();
  };
  render();
}

/** Enrolment the policy requires before this account may sign in. */
async function enrolStep(card, challenge, onSignedIn) {
  const started = await loginEnroll(challenge);
  const grouped = started.secret.match(/.{1,4}/g).join(' ');
  const { form, input } = stepForm({
    id: 'login-enrol-code',
    label: 'First code',
    hint: 'The 6-digit code the app shows for crm.',
    inputAttrs: { inputmode: 'numeric', autocomplete: 'one-time-code', pattern: '[0-9]{6}', maxlength: '6' },
    button: 'Turn on and sign in',
    busy: 'Checking…',
    lead: [
      h('p', { class: 'muted' }, 'Your organisation requires a second factor. Add this key to an authenticator app, or open the link on your phone:'),
      h('p', {}, h('code', { id: 'login-enrol-secret' }, grouped)),
      h('p', {}, h('a', { href: started.otpauth_uri, id: 'login-enrol-link' }, 'Open in an authenticator app')),
    ],
    onSubmit: async (code) => {
      const { user, recoveryCodes } = await loginConfirm(challenge, code);
      const done = h('button', { class: 'btn primary block', type: 'button', id: 'login-recovery-done' }, 'I saved them: continue');
      done.addEventListener('click', () => onSignedIn(user));
      card.replaceChildren(
        h('h1', 'Recovery codes'),
        h('p', { class: 'muted' }, 'Each signs you in once if you lose the device. They are not shown again: store them somewhere safe.'),
        h('ul', { class: 'recovery-codes', id: 'login-recovery-codes' }, ...recoveryCodes.map((c) => h('li', h('code', c)))),
        done,
      );
      done.focus();
    },
  });
  card.replaceChildren(h('h1', 'Set up a second factor'), form);
  input.focus();
}

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
      const answer = await login(username.value.trim(), password.value);
      if (answer?.secondFactor === 'totp') return codeStep(card, answer.challenge, onSignedIn);
      if (answer?.secondFactor === 'totp_enroll') return await enrolStep(card, answer.challenge, onSignedIn);
      onSignedIn(answer);
    } catch (err) {
      error.textContent = err.message || 'Sign-in failed.';
      if (err.status === 429 && err.retryAfter > 0) startCountdown(err.retryAfter);
      submit.disabled = false;
      submit.textContent = 'Sign in';
      password.select();
    }
  });
  const card = h('div', {}, h('h1', 'Sign in'), h('p', { class: 'muted' }, 'Growth and sales dashboard: traffic, intent, leads and customer health.'), form);
  root.replaceChildren(
    h('main', { class: 'login-page' }, h('div', { class: 'login-card' }, h('div', { class: 'brand big' }, h('span', { class: 'brand-mark', 'aria-hidden': 'true' }), 'crm'), card)),
  );
  username.focus();
}
