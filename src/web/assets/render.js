// DOM helpers shared by the page scripts. Text only ever goes in through `textContent`, so
// nothing an answer or the document contains can become markup.

/** `h('p', {class: 'x'}, 'text', child)`: an element with attributes and children. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    element.setAttribute(name, value === true ? '' : String(value));
  }
  element.append(...children.flat(Infinity).filter((child) => child !== null && child !== undefined && child !== false));
  return element;
}

/** `text` as paragraphs, in which `backquoted` words are code; single line breaks are spaces. */
export function prose(text) {
  return String(text ?? '')
    .split(/\n\s*\n/)
    .map((paragraph) => paragraph.replace(/\s+/g, ' ').trim())
    .filter(Boolean)
    .map((paragraph) => h('p', {}, ...paragraph.split('`').map((part, index) => (index % 2 ? h('code', {}, part) : part))));
}

/** The first paragraph of `text`, inline: for a heading or a summary. */
export function inlineProse(text) {
  const [first] = prose(text);
  return first ? [...first.childNodes] : [];
}

/** `value` as indented JSON whose keys, strings, numbers and literals are told apart by colour. */
export function jsonView(value) {
  const code = h('code');
  const emit = (node, indent) => {
    const pad = '  '.repeat(indent);
    if (Array.isArray(node) || (node && typeof node === 'object')) {
      const entries = Array.isArray(node) ? node.map((item) => [null, item]) : Object.entries(node);
      const [open, close] = Array.isArray(node) ? ['[', ']'] : ['{', '}'];
      if (entries.length === 0) return code.append(open + close);
      code.append(open + '\n');
      entries.forEach(([key, item], index) => {
        code.append(pad + '  ');
        if (key !== null) code.append(h('span', { class: 'json-key' }, JSON.stringify(key)), ': ');
        emit(item, indent + 1);
        code.append(index < entries.length - 1 ? ',\n' : '\n');
      });
      code.append(pad + close);
    } else if (typeof node === 'string') {
      code.append(h('span', { class: 'json-string' }, JSON.stringify(node)));
    } else if (typeof node === 'number') {
      code.append(h('span', { class: 'json-number' }, String(node)));
    } else {
      code.append(h('span', { class: 'json-literal' }, String(node)));
    }
  };
  emit(value, 0);
  return h('pre', { class: 'json' }, code);
}
