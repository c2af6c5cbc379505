// The tokens of this tab's last login or refresh. They live in `sessionStorage` only: gone when
// the tab closes, never in a URL, a cookie or a page the server renders, and sent nowhere but
// in the requests these pages make to this service.

import { h } from './render.js';

const KEYS = {
  access: 'restful-auth.access_token',
  refresh: 'restful-auth.refresh_token',
  expiresAt: 'restful-auth.access_expires_at',
  email: 'restful-auth.email',
};

const listeners = new Set();

export const session = {
  get access() { return sessionStorage.getItem(KEYS.access); },
  get refresh() { return sessionStorage.getItem(KEYS.refresh); },
  get email() { return sessionStorage.getItem(KEYS.email); },
  /** Seconds the access token has left; `null` without one. */
  get secondsLeft() {
    const expiresAt = Number(sessionStorage.getItem(KEYS.expiresAt));
    return this.access && expiresAt ? Math.max(0, Math.round((expiresAt - Date.now()) / 1000)) : null;
  },

  /** Keeps the tokens of a login or refresh answer. */
  keep({ access_token, refresh_token, expires_in }) {
    sessionStorage.setItem(KEYS.access, access_token);
    sessionStorage.setItem(KEYS.refresh, refresh_token);
    sessionStorage.setItem(KEYS.expiresAt, String(Date.now() + Number(expires_in) * 1000));
    changed();
  },

  forget() {
    for (const key of [KEYS.access, KEYS.refresh, KEYS.expiresAt]) sessionStorage.removeItem(key);
    changed();
  },

  /** Not a secret: remembered so that the login form after a registration is filled in. */
  rememberEmail(email) { sessionStorage.setItem(KEYS.email, email); },

  onChange(listener) { listeners.add(listener); },
};

function changed() {
  for (const listener of listeners) listener();
}

// The bar under the header: whether this tab holds tokens, and how long the access token lasts.
// Built once and only its text updated, so that the button keeps the focus.
const bar = document.getElementById('session');

if (bar) {
  const state = h('span', {});
  const forget = h('button', { type: 'button', class: 'link-button' }, 'Forget tokens');
  forget.addEventListener('click', () => session.forget());
  bar.append(h('span', { class: 'session-dot', 'aria-hidden': 'true' }), state, forget);

  const render = () => {
    bar.hidden = !session.refresh && !session.access;
    const left = session.secondsLeft;
    const access = left === null
      ? 'no access token'
      : left > 0 ? `access token valid for ${left} s` : 'access token expired: refresh for a new one';
    state.replaceChildren(
      h('strong', {}, 'Tokens kept in this tab'),
      ` · ${access}`,
      session.refresh ? ' · refresh token ready' : '',
    );
  };
  render();
  session.onChange(render);
  setInterval(render, 1000);
}
