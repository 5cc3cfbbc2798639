// The agent's replies are markdown: parsed with marked, then sanitised with DOMPurify, so nothing the model writes
// runs or loads anything on the page. Raw HTML in a reply shows as the text it is; images become links (nothing is
// fetched from where the model points); links (http, https and mailto only) open in a new tab; headings start at
// h3, below the page's own. Code blocks scroll sideways under a bar with their language and a Copy button; tables
// scroll in a box of their own. Both libraries are copies of pinned npm packages (web/vendor/, package.json),
// loaded on first use, so pages without a reply do not pay for them; until they arrive a reply shows as plain text.

import { h } from './ui.js';

const CACHE_SIZE = 200; // text → sanitised HTML: a streamed reply's message is rebuilt at every delta
const TAGS = ['a', 'p', 'br', 'hr', 'strong', 'em', 'del', 'code', 'pre', 'blockquote', 'ul', 'ol', 'li', 'h3', 'h4', 'h5', 'h6', 'table', 'thead', 'tbody', 'tr', 'th', 'td', 'input'];
const PURIFY = {
  ALLOWED_TAGS: TAGS,
  ALLOWED_ATTR: ['href', 'title', 'align', 'start', 'type', 'checked', 'disabled', 'class'],
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:)/i,
};

let toHtml = null; // (markdown) → sanitised HTML, once the libraries are here
let loading = null;
const waiting = new Map(); // element → its text, shown plain until the libraries arrive
const cache = new Map();

const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function setUp([{ Marked }, { default: DOMPurify }]) {
  const marked = new Marked({
    gfm: true,
    renderer: {
      html: ({ text }) => escapeHtml(text),
      image: ({ href, text }) => `<a href="${escapeHtml(href)}">${escapeHtml(text || href)}</a>`,
      heading({ tokens, depth }) {
        const level = Math.min(depth + 2, 6);
        return `<h${level}>${this.parser.parseInline(tokens)}</h${level}>\n`;
      },
    },
  });
  DOMPurify.addHook('afterSanitizeAttributes', (node) => {
    if (node.tagName === 'A' && node.hasAttribute('href')) {
      node.setAttribute('target', '_blank');
      node.setAttribute('rel', 'noopener noreferrer');
    }
  });
  return (text) => DOMPurify.sanitize(marked.parse(text), PURIFY);
}

/** Start loading the libraries (a view that will show replies calls this early). Never rejects. */
export function preloadMarkdown() {
  loading ??= Promise.all([import('./vendor/marked.esm.js'), import('./vendor/purify.es.mjs')]).then(
    (modules) => {
      toHtml = setUp(modules);
      for (const [el, text] of waiting) fill(el, text);
      waiting.clear();
    },
    () => {
      loading = null; // offline, say: replies stay plain text, and the next reply shown tries again
    },
  );
  return loading;
}

function html(text) {
  let clean = cache.get(text);
  if (clean === undefined) {
    clean = toHtml(text);
    if (cache.size >= CACHE_SIZE) cache.delete(cache.keys().next().value);
    cache.set(text, clean);
  }
  return clean;
}

function fill(el, text) {
  el.className = 'markdown';
  el.innerHTML = html(text);
  for (const pre of el.querySelectorAll('pre')) codeBlock(pre);
  for (const table of el.querySelectorAll('table')) {
    const box = h('div', { class: 'table-scroll', tabindex: '0' });
    table.replaceWith(box);
    box.append(table);
  }
}

function codeBlock(pre) {
  const language = /(?:^|\s)language-([\w+#.-]{1,30})/.exec(pre.querySelector('code')?.className || '')?.[1] || '';
  const copy = h('button', { type: 'button', class: 'copy' }, 'Copy');
  copy.addEventListener('click', () => copyText(pre, copy));
  const block = h('div', { class: 'code-block' });
  pre.replaceWith(block);
  pre.tabIndex = 0; // it scrolls: the keyboard can too
  block.append(h('div', { class: 'code-bar' }, h('span', { class: 'code-lang' }, language), copy), pre);
}

async function copyText(pre, button) {
  try {
    await navigator.clipboard.writeText(pre.textContent);
    button.textContent = 'Copied';
  } catch {
    getSelection().selectAllChildren(pre); // no clipboard (an insecure origin): selected, for the phone's own Copy
    button.textContent = 'Selected';
  }
  setTimeout(() => (button.textContent = 'Copy'), 2000);
}

/** An element showing `text` as formatted, sanitised markdown (plain text until the libraries have loaded). */
export function markdown(text) {
  const el = h('div', { class: 'text' }, text);
  if (toHtml) fill(el, text);
  else {
    waiting.set(el, text);
    preloadMarkdown();
  }
  return el;
}
