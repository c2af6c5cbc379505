// A refused request's errors, shown where a person looks for them: DRF's field errors
// (`{"email": ["…"]}`) under their field, which `aria-describedby` points to and
// `aria-invalid` marks, so a screen reader reads the error with the field; the errors of no
// field (`non_field_errors`, `detail`) in one message of the form, next to its button, as an
// alert. The response panel still shows the whole answer.

import { h } from './render.js';

/** DRF's keys for errors that belong to no one field. */
const FORM_KEYS = ['non_field_errors', 'detail'];

/**
 * Shows the errors of `answer` (a DRF error body) on `form`. A field key whose input is not
 * on show (the raw JSON box is, or the key is no input's) goes to `fallback`, the input that
 * stands for the whole body, or else to the form's message, named unless `named` is false
 * (where the page itself supplies the value, like a mailed link's token). Returns the first
 * input now marked invalid, if any.
 */
export function showErrors(form, answer, { fallback = null, named = true } = {}) {
  clearErrors(form);
  if (!answer || typeof answer !== 'object' || Array.isArray(answer)) return null;
  const formMessages = [];
  const unplaced = [];
  const marked = [];
  for (const [key, value] of Object.entries(answer)) {
    const messages = messagesOf(value);
    if (key === 'code' || messages.length === 0) continue;
    if (FORM_KEYS.includes(key)) {
      formMessages.push(...messages);
      continue;
    }
    const input = shownInput(form, key);
    if (input) {
      mark(input, messages);
      marked.push(input);
    } else {
      unplaced.push(named ? `${key}: ${messages.join(' ')}` : messages.join(' '));
    }
  }
  if (unplaced.length && fallback && isShown(fallback)) {
    mark(fallback, unplaced);
    marked.push(fallback);
  } else {
    formMessages.push(...unplaced);
  }
  if (formMessages.length) {
    const actions = form.querySelector('.actions');
    const message = h('p', { class: 'form-error', role: 'alert', 'data-form-error': true }, formMessages.join(' '));
    if (actions) actions.before(message);
    else form.append(message);
  }
  return marked[0] ?? null;
}

/** Takes every error off `form`: the messages, and the inputs' marks and references to them. */
export function clearErrors(form) {
  for (const input of form.querySelectorAll('[aria-invalid]')) {
    const errorId = `${input.id}-error`;
    const described = (input.getAttribute('aria-describedby') ?? '').split(/\s+/).filter((id) => id && id !== errorId);
    if (described.length) input.setAttribute('aria-describedby', described.join(' '));
    else input.removeAttribute('aria-describedby');
    input.removeAttribute('aria-invalid');
  }
  for (const message of form.querySelectorAll('.field-error, [data-form-error]')) message.remove();
}

/** The error goes right under its input, and is read first among the input's descriptions. */
function mark(input, messages) {
  const errorId = `${input.id}-error`;
  input.after(h('p', { id: errorId, class: 'field-error' }, messages.join(' ')));
  const described = input.getAttribute('aria-describedby');
  input.setAttribute('aria-describedby', described ? `${errorId} ${described}` : errorId);
  input.setAttribute('aria-invalid', 'true');
}

function shownInput(form, name) {
  return [...form.querySelectorAll('input[name], textarea[name]')]
    .find((input) => input.name === name && input.id && isShown(input)) ?? null;
}

/** Laid out, so not in a hidden part of the form (a body mode not chosen, a field not asked for). */
function isShown(element) {
  return element.getClientRects().length > 0;
}

/** DRF's messages: a string, a list of them, or (nested objects) anything else as JSON. */
function messagesOf(value) {
  if (typeof value === 'string') return [value];
  if (Array.isArray(value)) return value.flatMap(messagesOf);
  return value === null || value === undefined ? [] : [JSON.stringify(value)];
}
