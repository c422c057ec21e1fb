// A small element builder: text goes in as text nodes (never parsed as HTML),
// so nothing the API returns can inject markup.

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = String(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

export function append(el: Node, children: (Child | Child[])[]): void {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces an element's children. */
export function replace(el: Element, ...children: (Child | Child[])[]): void {
  el.replaceChildren();
  append(el, children);
}

let ids = 0;
export const uid = (prefix: string) => `${prefix}-${++ids}`;

/** A table with a caption, header row and body rows; `caption` is read by screen readers. */
export function table(
  caption: string,
  headers: string[],
  rows: Child[][],
  opts: { captionHidden?: boolean; class?: string; empty?: string } = {},
): HTMLElement {
  if (rows.length === 0 && opts.empty) return h('p', { class: 'empty' }, opts.empty);
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      { class: opts.class },
      h('caption', { class: opts.captionHidden ? 'visually-hidden' : undefined }, caption),
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          headers.map((x) => h('th', { scope: 'col' }, x)),
        ),
      ),
      h(
        'tbody',
        {},
        rows.map((r) =>
          h(
            'tr',
            {},
            r.map((c) => h('td', {}, c)),
          ),
        ),
      ),
    ),
  );
}

const STATUS_CLASS: Record<string, string> = {
  RUNNING: 'running',
  SUCCEEDED: 'ok',
  FAILED: 'bad',
  STOPPED: 'stopped',
  CANCELLED: 'muted',
  PENDING: 'muted',
  QUEUED: 'muted',
};

export const badge = (status: string) =>
  h('span', { class: `badge badge-${STATUS_CLASS[status] ?? 'muted'}` }, status.toLowerCase());
