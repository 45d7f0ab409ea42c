// Sign-in security for the signed-in user (#/security, linked under their name): turn two-step
// sign-in on (POST /api/v1/auth/totp/enroll shows the key and an otpauth link for an
// authenticator app; a first code confirms it and the recovery codes are shown once) or off with a
// current code or a recovery code. Admins also see the policy that requires it of everyone
// (GET/PUT /api/v1/auth/policy). A wrong code is answered 422 and shown at the field.

import { get, request } from '../api.js';
import { h, replace } from '../dom.js';
import { errorBox, loading, oneFieldForm, panel } from '../ui.js';

/** A code field (digits, one-time-code autofill unless `inputAttrs` says otherwise). */
function codeForm(id, label, button, onSubmit, inputAttrs = { inputmode: 'numeric', autocomplete: 'one-time-code', maxlength: '6' }) {
  return oneFieldForm({ id, label, hint: '', inputAttrs, button, busy: 'Checking…', onSubmit }).form;
}

export async function renderSecurity(ctx) {
  const { el, signal, can } = ctx;
  replace(el, loading('Loading…'));
  const me = (await get('/api/v1/auth/me', {}, signal)).data || {};
  if (signal.aborted) return;
  const body = h('div', { id: 'totp-panel' });

  const showOff = () => {
    const start = h('button', { class: 'btn primary', type: 'button', id: 'totp-start' }, 'Turn on two-step sign-in');
    start.addEventListener('click', async () => {
      start.disabled = true;
      try {
        const { data } = await request('POST', '/api/v1/auth/totp/enroll');
        showEnrol(data);
      } catch (err) {
        replace(body, errorBox(err, showOff));
      }
    });
    replace(body, h('p', { id: 'totp-status' }, 'Off: your password alone signs you in.'), start);
  };

  const showEnrol = (started) => {
    const grouped = started.secret.match(/.{1,4}/g).join(' ');
    replace(
      body,
      h('p', { class: 'muted' }, 'Add this key to an authenticator app, or open the link on your phone, then enter the code it shows.'),
      h('p', {}, h('code', { id: 'totp-secret' }, grouped)),
      h('p', {}, h('a', { href: started.otpauth_uri, id: 'totp-link' }, 'Open in an authenticator app')),
      codeForm('totp-confirm-code', 'First code', 'Turn on', async (code) => {
        const { data } = await request('POST', '/api/v1/auth/totp/confirm', { body: { code } });
        const done = h('button', { class: 'btn', type: 'button', id: 'totp-codes-done' }, 'I saved them');
        done.addEventListener('click', showOn);
        replace(
          body,
          h('p', { id: 'totp-status' }, 'On. Recovery codes (each signs you in once if you lose the device; not shown again):'),
          h('ul', { class: 'recovery-codes', id: 'totp-recovery-codes' }, ...(data.recovery_codes || []).map((c) => h('li', h('code', c)))),
          done,
        );
      }),
    );
  };

  const showOn = () => {
    let recovery = false;
    const draw = () => {
      const form = codeForm(
        'totp-disable-code',
        recovery ? 'Recovery code' : 'Authentication code',
        'Turn off',
        async (value) => {
          await request('POST', '/api/v1/auth/totp/disable', { body: recovery ? { recovery_code: value } : { code: value } });
          showOff();
        },
        recovery ? { autocomplete: 'off' } : undefined,
      );
      const swap = h('button', { class: 'btn ghost small', type: 'button', id: 'totp-disable-switch' }, recovery ? 'Use the authenticator app instead' : 'Use a recovery code');
      swap.addEventListener('click', () => {
        recovery = !recovery;
        draw();
      });
      replace(body, h('p', { id: 'totp-status' }, 'On: signing in asks for a code from your authenticator app.'), form, swap);
    };
    draw();
  };

  if (me.totp) showOn();
  else showOff();
  const sections = [panel('Two-step sign-in', body, { id: 'security-totp' })];

  if (can('users_manage')) {
    const policy = (await get('/api/v1/auth/policy', {}, signal)).data || {};
    if (signal.aborted) return;
    const box = h('input', { type: 'checkbox', id: 'policy-require-totp', checked: Boolean(policy.require_totp) });
    const note = h('div', { class: 'form-error notice', role: 'status', id: 'policy-note' });
    box.addEventListener('change', async () => {
      box.disabled = true;
      try {
        const { data } = await request('PUT', '/api/v1/auth/policy', { body: { require_totp: box.checked } });
        box.checked = Boolean(data.require_totp);
        note.textContent = data.require_totp ? 'Required: users without a second factor set one up at their next sign-in.' : 'Not required.';
      } catch (err) {
        box.checked = !box.checked;
        note.textContent = err.message || 'Not saved.';
      }
      box.disabled = false;
    });
    sections.push(panel('Sign-in policy', h('div', {}, h('label', { for: 'policy-require-totp' }, box, ' Require two-step sign-in of every user'), note), { id: 'security-policy' }));
  }
  replace(el, ...sections);
}
