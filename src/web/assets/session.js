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

/** The contract's endpoint that trades a refresh token for new tokens. */
const REFRESH_PATH = '/api/refresh/';

/** The refresh under way, which every caller in the meantime waits for instead of starting one. */
let pendingRefresh = null;

/**
 * Trades the kept refresh token for new tokens: access tokens last seconds, and a page that
 * needs one should not send its user elsewhere for it. One refresh at a time: refresh tokens
 * are single use, and presenting a consumed one again ends the whole session, so two
 * requests refused at once must share one trade, not race two. A refused token is spent, and
 * so is one the service did not understand: forgotten. A throttled, failing or unreachable
 * service says nothing of the token, which is kept for a later try. Resolves to the status
 * (0 without an answer).
 */
export function refreshTokens() {
  pendingRefresh ??= tradeRefreshToken().finally(() => { pendingRefresh = null; });
  return pendingRefresh;
}

async function tradeRefreshToken() {
  let response;
  try {
    response = await fetch(REFRESH_PATH, {
      method: 'POST',
      headers: { Accept: 'application/json', 'Content-Type': 'application/json' },
      body: JSON.stringify({ refresh_token: session.refresh }),
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch {
    return 0;
  }
  if (response.ok) session.keep(await response.json());
  else if (response.status === 400 || response.status === 401) session.forget();
  return response.status;
}

/**
 * After the service refused the access token `stale` (a 401), gets a newer one as a client
 * would: the one another request renewed meanwhile, or else one refresh (shared, above).
 * Resolves to whether the tab now holds an access token other than `stale` to retry with.
 */
export async function renewAccessToken(stale) {
  if (session.access && session.access !== stale) return true;
  if (!session.refresh) return false;
  await refreshTokens();
  return Boolean(session.access) && session.access !== stale;
}

function changed() {
  for (const listener of listeners) listener();
}

// The bar under the header: whether this tab holds tokens, and how long the access token lasts.
// Built once and only its text updated, so that the button keeps the focus.
const bar = document.getElementById('session');

if (bar) {
  const state = h('span', {});
  const renew = h('button', { type: 'button', class: 'link-button' }, 'Refresh now');
  renew.addEventListener('click', async () => {
    renew.disabled = true;
    try { await refreshTokens(); } finally { renew.disabled = false; }
  });
  const forget = h('button', { type: 'button', class: 'link-button' }, 'Forget tokens');
  forget.addEventListener('click', () => session.forget());
  bar.append(state, renew, forget);

  const render = () => {
    bar.hidden = !session.refresh && !session.access;
    const left = session.secondsLeft;
    const access = left === null
      ? 'no access token'
      : left > 0 ? `access token valid for ${left} s` : 'access token expired';
    renew.hidden = !session.refresh;
    state.replaceChildren(
      h('span', { class: 'session-dot', 'aria-hidden': 'true' }),
      h('strong', {}, 'Tokens kept in this tab'),
      ` · ${access}`,
      session.refresh ? ' · refresh token ready' : '',
    );
  };
  render();
  session.onChange(render);
  setInterval(render, 1000);
}
