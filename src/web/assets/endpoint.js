// An endpoint's page: each form sends its request with `fetch` and shows the answer. The page
// itself is static; everything particular to this tab (tokens, answers) lives only here.

import { renewAccessToken, session } from './session.js';
import { h, jsonView } from './render.js';
import { clearErrors, showErrors } from './form-errors.js';

const summary = document.getElementById('response-summary');
const detail = document.getElementById('response-detail');
const panel = summary.closest('section');

/** Headers worth a look: what the body is, and what the contract says with headers. */
const KEY_HEADERS = ['content-type', 'allow', 'www-authenticate', 'retry-after', 'x-request-id'];

/** Some browsers leave `statusText` empty (HTTP/2 has none). */
const REASONS = {
  200: 'OK', 201: 'Created', 400: 'Bad Request', 401: 'Unauthorized', 404: 'Not Found',
  405: 'Method Not Allowed', 413: 'Content Too Large', 415: 'Unsupported Media Type',
  429: 'Too Many Requests', 500: 'Internal Server Error', 503: 'Service Unavailable',
};

fillTokens();
session.onChange(fillTokens);
for (const input of document.querySelectorAll('input[type=email]')) {
  if (!input.value && session.email) input.value = session.email;
}
for (const form of document.querySelectorAll('form.operation')) {
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    send(form);
  });
  form.addEventListener('change', (event) => {
    if (event.target.name === 'mode') switchBodyMode(form, event.target.value);
  });
  // The buttons stay disabled without this script: a plain form post would only bring this
  // page back, having sent a password for nothing.
  form.querySelector('button[type=submit]').disabled = false;
}

/** Token inputs show this tab's latest tokens; they stay editable. */
function fillTokens() {
  for (const input of document.querySelectorAll('input[data-token]')) {
    input.value = (input.dataset.token === 'access' ? session.access : session.refresh) ?? '';
  }
}

function fieldInputs(form) {
  return [...form.querySelectorAll('.fields input')];
}

/** The fields as a JSON object; empty fields are left out, as a client leaves out what it lacks. */
function fieldValues(form, { keepEmpty = false } = {}) {
  return Object.fromEntries(
    fieldInputs(form)
      .filter((input) => keepEmpty || input.value !== '')
      .map((input) => [input.name, input.value]),
  );
}

/** Carries what was typed over to the other way of writing the body. */
function switchBodyMode(form, mode) {
  const raw = form.elements.json;
  if (mode === 'json') {
    if (!raw.value.trim()) raw.value = JSON.stringify(fieldValues(form, { keepEmpty: true }), null, 2);
    return;
  }
  try {
    const values = JSON.parse(raw.value);
    for (const input of fieldInputs(form)) {
      if (typeof values[input.name] === 'string') input.value = values[input.name];
    }
  } catch {
    // Not JSON (yet): the fields keep what they had.
  }
}

function requestOf(form) {
  const headers = { Accept: 'application/json' };
  let body;
  let sentFields = {};
  if (form.querySelector('.fields')) {
    headers['Content-Type'] = 'application/json';
    if (form.elements.mode.value === 'json') {
      body = form.elements.json.value;
      try { sentFields = JSON.parse(body) ?? {}; } catch { sentFields = {}; }
    } else {
      sentFields = fieldValues(form);
      body = JSON.stringify(sentFields);
    }
  }
  const bearer = 'bearer' in form.dataset;
  const token = bearer ? document.getElementById('bearer').value.trim() : '';
  if (token) headers.Authorization = `Bearer ${token}`;
  // `/api/sessions/{id}/`: each parameter from its field, encoded so it stays one segment.
  const path = form.dataset.path.replace(/\{(\w+)\}/g, (_, name) => {
    const input = [...form.querySelectorAll('.path-fields input')].find((field) => field.name === name);
    return encodeURIComponent(input?.value.trim() ?? '');
  });
  // Only the tab's own token is renewed on a 401: one typed in by hand is the person's to judge.
  const keptToken = bearer && session.refresh !== null && token === (session.access ?? '');
  return { method: form.dataset.method, path, bearer, token, keptToken, headers, body, sentFields };
}

function call(request) {
  return fetch(request.path, {
    method: request.method,
    headers: request.headers,
    body: request.body,
    cache: 'no-store',
    credentials: 'omit',
  });
}

/**
 * Sends `request`; if the service refuses the tab's access token (401), renews it once with
 * the refresh token and sends the request again with the new one, as a client of the API
 * would. If it cannot be renewed, the first 401 is the answer. Resolves to the answer and
 * whether it came from the retry.
 */
async function callRenewingOnce(request) {
  const response = await call(request);
  if (response.status !== 401 || !request.keptToken || !(await renewAccessToken(request.token))) {
    return { response, renewed: false };
  }
  const headers = { ...request.headers, Authorization: `Bearer ${session.access}` };
  return { response: await call({ ...request, headers }), renewed: true };
}

async function send(form) {
  const request = requestOf(form);
  const button = form.querySelector('button[type=submit]');
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  // The last answer goes at once, so it is never mistaken for this request's.
  summary.className = 'status status-pending';
  summary.replaceChildren(methodBadge(request), ' ', h('code', {}, request.path), ' → sending…');
  detail.replaceChildren();
  clearErrors(form);
  const started = performance.now();
  try {
    const { response, renewed } = await callRenewingOnce(request);
    const text = await response.text();
    let answer;
    try { answer = JSON.parse(text); } catch { answer = undefined; }
    learn(request, response, answer);
    show(request, response, text, answer, Math.round(performance.now() - started), renewed);
    if (!response.ok) showErrors(form, answer, { fallback: form.elements.json ?? null })?.focus();
    if (response.status === 401 && answer?.code === 'mfa_required') askSecondFactor(form);
  } catch (error) {
    summary.className = 'status status-failed';
    summary.textContent = `${request.method} ${request.path} failed: ${error.message}. Is the service running?`;
    detail.replaceChildren();
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
  }
}

/**
 * Keeps the tab's tokens in step with the service. An answer with tokens (login, refresh)
 * replaces them. Presenting the kept refresh token consumes it: without new tokens in a
 * success (logout), or in a refusal (401), it is gone, so it is forgotten.
 */
function learn(request, response, answer) {
  const presentedKeptToken = session.refresh && request.sentFields?.refresh_token === session.refresh;
  if (response.ok && answer?.access_token && answer?.refresh_token) {
    session.keep(answer);
  } else if (presentedKeptToken && (response.ok || response.status === 401)) {
    session.forget();
  }
  if (response.ok && typeof answer?.email === 'string') session.rememberEmail(answer.email);
}

function show(request, response, text, answer, milliseconds, renewed) {
  const family = `${String(response.status)[0]}xx`;
  const reason = response.statusText || REASONS[response.status] || '';
  summary.className = `status status-${family}`;
  summary.replaceChildren(
    methodBadge(request), ' ',
    h('code', {}, request.path), ' → ',
    h('strong', {}, `${response.status} ${reason}`.trim()),
    h('span', { class: 'timing' }, ` in ${milliseconds} ms`),
  );
  const headers = KEY_HEADERS
    .filter((name) => response.headers.has(name))
    .flatMap((name) => [h('dt', {}, name), h('dd', {}, response.headers.get(name))]);
  detail.replaceChildren(
    ...(renewed ? [h('p', { class: 'renewed' }, 'The access token was refused, so it was renewed with the refresh token and the request sent again: this is the answer to the second try.')] : []),
    h('h3', {}, 'Headers'),
    h('dl', { class: 'headers' }, headers),
    ...(typeof answer?.qr_svg === 'string' ? [qrCode(answer.qr_svg)].filter(Boolean) : []),
    h('h3', {}, 'Body'),
    answer === undefined ? h('pre', { class: 'json' }, h('code', {}, text || '(empty)')) : jsonView(answer),
    ...[bearerAdvice(request, response), nextStep(response)].filter(Boolean),
  );
  const { top } = panel.getBoundingClientRect();
  if (top > window.innerHeight * 0.6) panel.scrollIntoView({ behavior: 'smooth', block: 'start' });
}

function methodBadge(request) {
  return h('span', { class: `method method-${request.method.toLowerCase()}` }, request.method);
}

/** Access tokens last seconds: say what to do when one is missing or spent. */
function bearerAdvice(request, response) {
  if (!request.bearer || response.status !== 401) return null;
  return h('p', { class: 'next-step' }, session.refresh
    ? 'The access token was refused and not renewed: get a new one with “Refresh now” above, then send again.'
    : 'This needs the access token of a login: log in first, then come back.');
}

/** After a success, the next endpoint of the walk-through, as the navigation orders them. */
function nextStep(response) {
  if (!response.ok) return null;
  const steps = [...document.querySelectorAll('nav a[data-step]')];
  const current = steps.findIndex((link) => link.getAttribute('aria-current') === 'page');
  const next = current >= 0 ? steps[current + 1] : undefined;
  if (!next) return null;
  return h('p', { class: 'next-step' }, 'Next: ', h('a', { href: next.getAttribute('href') }, next.getAttribute('href')), ' →');
}

/**
 * The account has two-factor login on: the login form shows its one-time-code fields (hidden
 * until the service asks), and the code field takes the focus.
 */
function askSecondFactor(form) {
  const fields = [...form.querySelectorAll('[data-second-factor]')];
  for (const field of fields) field.hidden = false;
  fields[0]?.querySelector('input')?.focus();
}

/**
 * The QR code of a new authenticator. The SVG is not put into the page as markup: it is read,
 * and its shapes (a background and one path) are drawn anew with only their geometry and
 * colour, so nothing else it might hold can run or load.
 */
function qrCode(markup) {
  const parsed = new DOMParser().parseFromString(markup, 'image/svg+xml').documentElement;
  // SVG's own namespace, as the image declares it (unnamed here, as the page names no URL).
  const svgNs = parsed?.namespaceURI;
  if (parsed?.localName !== 'svg' || !svgNs) return null;
  const svg = document.createElementNS(svgNs, 'svg');
  for (const name of ['width', 'height', 'viewBox', 'shape-rendering']) {
    const value = parsed.getAttribute(name);
    if (value !== null) svg.setAttribute(name, value);
  }
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', 'QR code of the new authenticator');
  for (const shape of parsed.children) {
    if (shape.localName !== 'rect' && shape.localName !== 'path') continue;
    const copy = document.createElementNS(svgNs, shape.localName);
    for (const name of ['x', 'y', 'width', 'height', 'fill', 'd']) {
      const value = shape.getAttribute(name);
      if (value !== null) copy.setAttribute(name, value);
    }
    svg.append(copy);
  }
  return h('figure', { class: 'qr-code' }, svg,
    h('figcaption', {}, 'Scan it with an authenticator app, then send the code it shows below.'));
}
