// The ops dashboard: sign-in with a bearer token (kept in sessionStorage for
// this tab), then queues, runs and run pages under hash routes (#/queues,
// #/runs, #/runs/<id>, #/runs/<id>?show=generations&...) so they never collide
// with the API's own paths. Nothing but the sign-in form is rendered until the
// API has accepted the token.
import { Api, ApiError, type Identity, signIn, signOut } from './api.js';
import { h, replace } from './dom.js';
import type { Dispose, View, ViewContext } from './view.js';
import { compareView } from './views/compare.js';
import { queuesView } from './views/queues.js';
import { runView } from './views/run.js';
import { runsView } from './views/runs.js';

const TOKEN_KEY = 'mpo.dashboard.token';
const root = document.getElementById('app')!;
let dispose: Dispose | undefined;

function explain(err: unknown): string {
  if (err instanceof ApiError) {
    if (err.status === 401) return `Token refused: ${err.message}.`;
    if (err.status === 0) return 'The API cannot be reached. Check your connection and try again.';
    return `Sign-in failed (${err.status}): ${err.message}.`;
  }
  return `Sign-in failed: ${(err as Error).message}`;
}

function renderSignIn(error?: string): void {
  dispose?.();
  dispose = undefined;
  window.onhashchange = null;
  document.title = 'Sign in · MPO ops dashboard';
  const input = h('input', {
    id: 'token',
    name: 'token',
    type: 'password',
    autocomplete: 'off',
    spellcheck: 'false',
    required: true,
    'aria-describedby': 'token-help signin-error',
    'aria-invalid': error ? 'true' : undefined,
  });
  const errorBox = h('p', { id: 'signin-error', class: 'error', role: 'alert' }, error ?? '');
  const button = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h(
    'form',
    { class: 'signin card', 'aria-labelledby': 'signin-title', novalidate: true },
    h('h1', { id: 'signin-title' }, 'MPO ops dashboard'),
    h(
      'p',
      { id: 'token-help' },
      'Sign in with an API token (the admin token from MPO_ADMIN_TOKEN, or one issued by POST /tokens). It is kept for this browser tab only.',
    ),
    h('label', { for: 'token' }, 'API token'),
    input,
    errorBox,
    button,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const token = input.value.trim();
    if (!token) {
      errorBox.textContent = 'Enter a token.';
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      return;
    }
    button.disabled = true;
    button.textContent = 'Signing in…';
    errorBox.textContent = '';
    try {
      const identity = await signIn(token);
      sessionStorage.setItem(TOKEN_KEY, token);
      if (!location.hash.startsWith('#/') || location.hash.startsWith('#/signin'))
        history.replaceState(null, '', '#/queues');
      renderShell(token, identity);
    } catch (err) {
      errorBox.textContent = explain(err);
      input.setAttribute('aria-invalid', 'true');
      button.disabled = false;
      button.textContent = 'Sign in';
      input.focus();
    }
  });
  replace(root, h('main', { id: 'main', class: 'signin-page' }, form));
  input.focus();
}

function renderShell(token: string, identity: Identity): void {
  // Long: the shell's DOM (header, navigation, sign-in) and the handlers that share its elements.
  const api = new Api(token, (message) => {
    sessionStorage.removeItem(TOKEN_KEY);
    void signOut();
    renderSignIn(`Your token was refused (${message}). Sign in again.`);
  });
  const link = (href: string, text: string, attrs: Record<string, string> = {}) =>
    h('a', { href, ...attrs }, text);
  const nav = h(
    'nav',
    { 'aria-label': 'Main' },
    h(
      'ul',
      {},
      h('li', {}, link('#/queues', 'Queues', { 'data-route': 'queues' })),
      h('li', {}, link('#/runs', 'Runs', { 'data-route': 'runs' })),
      identity.isAdmin
        ? h('li', {}, link('/admin/queues', 'Job inspector', { id: 'bull-board-link' }))
        : null,
    ),
  );
  const statusLine = h('p', { id: 'live', class: 'live', role: 'status', 'aria-live': 'polite' });
  const signOutButton = h('button', { type: 'button', class: 'link', id: 'sign-out' }, 'Sign out');
  signOutButton.addEventListener('click', async () => {
    sessionStorage.removeItem(TOKEN_KEY);
    await signOut();
    history.replaceState(null, '', '#/signin');
    renderSignIn();
  });
  const main = h('main', { id: 'main', tabindex: '-1' });
  replace(
    root,
    h(
      'header',
      { class: 'top' },
      h('a', { class: 'brand', href: '#/queues' }, 'MPO ops'),
      nav,
      h(
        'div',
        { class: 'who' },
        h('span', { id: 'identity' }, `${identity.name}${identity.isAdmin ? ' (admin)' : ''}`),
        signOutButton,
      ),
    ),
    statusLine,
    main,
  );

  const ctx: ViewContext = {
    api,
    identity,
    main,
    status(text, kind = 'info') {
      statusLine.textContent = text;
      statusLine.classList.toggle('error', kind === 'error');
    },
    title(text) {
      document.title = `${text} · MPO ops dashboard`;
    },
  };

  const route = () => {
    dispose?.();
    dispose = undefined;
    const hash = location.hash || '#/queues';
    const [path = '', query = ''] = hash.slice(1).split('?');
    let view: View | undefined;
    let section = '';
    const runMatch = /^\/runs\/([^/]+)$/.exec(path);
    if (path === '/' || path === '' || path === '/signin' || path === '/queues') {
      view = queuesView;
      section = 'queues';
    } else if (path === '/runs') {
      view = runsView(new URLSearchParams(query));
      section = 'runs';
    } else if (path === '/compare') {
      view = compareView(new URLSearchParams(query));
      section = 'runs';
    } else if (runMatch) {
      view = runView(decodeURIComponent(runMatch[1]!), new URLSearchParams(query));
      section = 'runs';
    }
    for (const a of nav.querySelectorAll<HTMLAnchorElement>('a[data-route]')) {
      if (a.dataset.route === section) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    main.replaceChildren();
    ctx.status('');
    if (!view) {
      ctx.title('Not found');
      replace(
        main,
        h('h1', {}, 'Not found'),
        h('p', {}, 'No page here. ', h('a', { href: '#/queues' }, 'Queues')),
      );
      return;
    }
    dispose = view(ctx);
  };
  window.onhashchange = route;
  route();
}

async function boot(): Promise<void> {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return renderSignIn();
  try {
    renderShell(token, await signIn(token));
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) sessionStorage.removeItem(TOKEN_KEY);
    renderSignIn(explain(err));
  }
}

void boot();
