// The page a mailed link opens (`/reset/#token=…`, `/verify/#token=…`). The token is in the
// URL's fragment, which a browser never sends to a server (so no proxy or server log holds
// it): this script reads it, takes it out of the address bar and the history at once, and
// posts it, with the new password on `/reset/`, to the API.

import { clearErrors, showErrors } from './form-errors.js';

const form = document.getElementById('link-form');
const button = form.querySelector('button[type=submit]');
const result = document.getElementById('link-result');

const token = new URLSearchParams(window.location.hash.slice(1)).get('token');
if (window.location.hash) {
  window.history.replaceState(null, '', window.location.pathname + window.location.search);
}
if (token) {
  button.disabled = false;
} else {
  document.getElementById('link-missing').hidden = false;
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const body = { token };
  for (const input of form.querySelectorAll('input[name]')) body[input.name] = input.value;
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  clearErrors(form);
  show('status status-pending', 'Sending…');
  let finished = false;
  try {
    const response = await fetch(form.dataset.path, {
      method: 'POST',
      headers: { Accept: 'application/json', 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
    });
    const answer = await response.json().catch(() => ({}));
    if (response.ok) {
      finished = true;
      for (const input of form.querySelectorAll('input[name]')) input.disabled = true;
      show('status status-2xx', answer.detail ?? 'Done.');
    } else {
      // A refused link stays refused: only a new one helps.
      finished = Array.isArray(answer.token);
      show(`status status-${String(response.status)[0]}xx`, `Refused (${response.status}).`);
      showErrors(form, answer, { named: false })?.focus();
    }
  } catch (error) {
    show('status status-failed', `The service did not answer: ${error.message}.`);
  } finally {
    button.removeAttribute('aria-busy');
    button.disabled = finished;
  }
});

function show(className, text) {
  result.className = className;
  result.textContent = text;
}
