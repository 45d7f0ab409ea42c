// Entry point of the dashboard: session start (login or resume from the refresh token), the
// application shell (sidebar navigation, site picker, user and logout), and the hash router
// that mounts one screen at a time and cancels the previous one (requests, polling).

import { get, logout, onSignedOut, resume, user } from './api.js';
import { h, svg, replace } from './dom.js';
import { errorBox, loading } from './ui.js';
import { renderLogin } from './views/login.js';
import { renderOverview } from './views/overview.js';
import { renderVisitor, renderVisitors } from './views/visitors.js';
import { renderFunnels } from './views/funnels.js';
import { renderRetention } from './views/retention.js';
import { renderGoals } from './views/goals.js';
import { renderLead, renderLeads } from './views/leads.js';
import { renderAccount, renderAccounts } from './views/accounts.js';
import { renderSecurity } from './views/security.js';
import { renderChat } from './views/chat.js';
import { renderArticle, renderKb, renderNewArticle } from './views/kb.js';
import { renderSettings } from './views/settings.js';

const SITE_KEY = 'crm.dashboard.site';
const root = document.getElementById('app') || document.body;

// `perm`: the permission (GET /api/v1/auth/me) a screen needs; roles without it don't see it.
const NAV = [
  { route: 'overview', label: 'Overview', perm: 'analytics_read', icon: 'M3 13h4v8H3zM10 8h4v13h-4zM17 3h4v18h-4z' },
  { route: 'visitors', label: 'Visitors', perm: 'analytics_read', icon: 'M12 12a4 4 0 1 0 0-8 4 4 0 0 0 0 8zm-8 9c0-4 4-6 8-6s8 2 8 6' },
  { route: 'funnels', label: 'Funnels', perm: 'analytics_read', icon: 'M3 4h18l-7 8v7l-4 2v-9z' },
  { route: 'retention', label: 'Retention', perm: 'analytics_read', icon: 'M4 4h16v16H4zM4 10h16M4 15h10M10 4v16M15 4v11' },
  { route: 'goals', label: 'Goals', perm: 'analytics_read', icon: 'M5 21V4M5 4h13l-3 4.5 3 4.5H5' },
  { route: 'leads', label: 'Leads', perm: 'leads_read', icon: 'M4 4h16v4H4zM4 10h16v4H4zM4 16h10v4H4z' },
  { route: 'accounts', label: 'Accounts & health', perm: 'health_read', icon: 'M12 21s-8-5-8-11a4.5 4.5 0 0 1 8-3 4.5 4.5 0 0 1 8 3c0 6-8 11-8 11z' },
  { route: 'chat', label: 'Chat', perm: 'chat_respond', icon: 'M4 5h16v11H10l-6 4z' },
  { route: 'kb', label: 'Knowledge base', perm: 'kb_read', icon: 'M4 5a2 2 0 0 1 2-2h5v17H6a2 2 0 0 0-2 1zM20 5a2 2 0 0 0-2-2h-5v17h5a2 2 0 0 1 2 1z' },
  { route: 'settings', label: 'Site settings', perm: 'sites_manage', icon: 'M12 3l8 3v6c0 4.5-3.4 8.2-8 9-4.6-.8-8-4.5-8-9V6zM9 12l2 2 4-4' },
];

const ROUTES = [
  { path: /^\/overview$/, nav: 'overview', title: 'Overview', render: renderOverview },
  { path: /^\/visitors$/, nav: 'visitors', title: 'Visitors', render: renderVisitors },
  { path: /^\/visitors\/([^/]+)$/, nav: 'visitors', title: 'Visitor', render: renderVisitor, detail: true },
  { path: /^\/funnels$/, nav: 'funnels', title: 'Funnels', render: renderFunnels },
  { path: /^\/retention$/, nav: 'retention', title: 'Retention', render: renderRetention },
  { path: /^\/goals$/, nav: 'goals', title: 'Goals', render: renderGoals },
  { path: /^\/leads$/, nav: 'leads', title: 'Leads', render: renderLeads },
  { path: /^\/leads\/([^/]+)$/, nav: 'leads', title: 'Lead', render: renderLead, detail: true },
  { path: /^\/accounts$/, nav: 'accounts', title: 'Accounts & health', render: renderAccounts },
  { path: /^\/accounts\/([^/]+)$/, nav: 'accounts', title: 'Account health', render: renderAccount, detail: true },
  { path: /^\/chat$/, nav: 'chat', title: 'Chat', render: renderChat },
  { path: /^\/kb$/, nav: 'kb', title: 'Knowledge base', render: renderKb },
  { path: /^\/kb\/new$/, nav: 'kb', title: 'New article', render: renderNewArticle },
  { path: /^\/kb\/([^/]+)$/, nav: 'kb', title: 'Article', render: renderArticle, detail: true },
  { path: /^\/settings$/, nav: 'settings', title: 'Site settings', render: renderSettings },
  { path: /^\/security$/, nav: 'security', title: 'Sign-in security', render: renderSecurity },
];

// permissions: a Set, or null when the server does not say (then every screen is shown).
const state = { sites: [], site: null, shell: null, active: null, permissions: null, attributions: [] };

/** Whether the signed-in role holds `perm` (true when the server does not list permissions). */
const can = (perm) => !state.permissions || state.permissions.has(perm);

const allowed = (nav) => {
  const item = NAV.find((n) => n.route === nav);
  return !item || can(item.perm);
};

function icon(d) {
  return svg('svg', { class: 'icon', viewBox: '0 0 24 24', width: 18, height: 18, 'aria-hidden': 'true' }, svg('path', { d }));
}

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/overview';
  const [path, qs = ''] = raw.split('?');
  return { path: path || '/overview', query: new URLSearchParams(qs) };
}

export function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function stopActive() {
  if (!state.active) return;
  state.active.controller.abort();
  for (const fn of state.active.cleanups) {
    try {
      fn();
    } catch {
      /* a cleanup failing must not block navigation */
    }
  }
  state.active = null;
}

function showLogin(notice) {
  stopActive();
  state.shell = null;
  document.title = 'Sign in · crm';
  renderLogin(root, { notice, onSignedIn: () => start() });
}

function pickSite(sites) {
  const ids = sites.map((s) => s.site_id);
  let saved = null;
  try {
    saved = localStorage.getItem(SITE_KEY);
  } catch {
    /* storage blocked: keep the default */
  }
  if (saved && ids.includes(saved)) return saved;
  if (ids.includes('demo')) return 'demo';
  return ids[0] || null;
}

// The credit the data's licence asks for (e.g. DB-IP's CC-BY-4.0 geolocation), as the server
// reports it: its text and a link to each source.
function credits() {
  if (!state.attributions.length) return null;
  return h(
    'div',
    { class: 'credits', id: 'data-credits' },
    state.attributions.map((a) =>
      h(
        'p',
        String(a.text || ''),
        ' (',
        (Array.isArray(a.links) ? a.links : []).flatMap(([name, url], i) => [i ? ', ' : '', h('a', { href: String(url), rel: 'noopener', target: '_blank' }, String(name))]),
        a.licence ? `; ${a.licence}` : '',
        ')',
      ),
    ),
  );
}

function buildShell() {
  const me = user() || {};
  const select = h(
    'select',
    { id: 'site-select', 'aria-label': 'Site' },
    state.sites.map((s) => h('option', { value: s.site_id, selected: s.site_id === state.site }, s.name && s.name !== s.site_id ? `${s.name} (${s.site_id})` : s.site_id)),
  );
  select.addEventListener('change', () => {
    state.site = select.value;
    try {
      localStorage.setItem(SITE_KEY, state.site);
    } catch {
      /* not persisted */
    }
    const current = ROUTES.find((r) => r.path.test(parseHash().path));
    // Ids are per site: a detail page goes back to its list.
    go(current?.detail ? `#/${current.nav}` : location.hash || '#/overview');
  });
  const links = NAV.filter((item) => allowed(item.route)).map((item) => h('a', { href: `#/${item.route}`, class: 'nav-link', dataset: { nav: item.route } }, icon(item.icon), h('span', item.label)));
  const title = h('h1', { id: 'page-title' });
  const view = h('div', { class: 'content', id: 'view' });
  const logoutButton = h('button', { class: 'btn ghost small', type: 'button', id: 'logout' }, 'Log out');
  logoutButton.addEventListener('click', async () => {
    logoutButton.disabled = true;
    await logout();
    showLogin('You are signed out.');
  });
  const layout = h(
    'div',
    { class: 'layout' },
    h(
      'aside',
      { class: 'sidebar' },
      h('div', { class: 'brand' }, h('span', { class: 'brand-mark', 'aria-hidden': 'true' }), 'crm', h('span', { class: 'brand-sub' }, 'growth')),
      h('nav', { class: 'nav', 'aria-label': 'Main' }, links),
      h('div', { class: 'site-picker' }, h('label', { for: 'site-select' }, 'Site'), state.sites.length ? select : h('span', { class: 'muted' }, 'No sites')),
      h(
        'div',
        { class: 'me' },
        h('div', { class: 'me-name' }, me.username || ''),
        h('div', { class: 'me-role muted' }, String(me.role || '').replace(/_/g, ' ')),
        h('a', { href: '#/security', id: 'security-link', class: 'me-link' }, 'Sign-in security'),
        logoutButton,
      ),
      credits(),
    ),
    h('div', { class: 'main' }, h('header', { class: 'topbar' }, title), view),
  );
  root.replaceChildren(layout);
  state.shell = { title, view, links };
}

function route() {
  if (!state.shell) return;
  const { path, query } = parseHash();
  const match = ROUTES.map((r) => ({ r, m: r.path.exec(path) })).find((x) => x.m);
  if (!match) {
    history.replaceState(null, '', '#/overview');
    route();
    return;
  }
  stopActive();
  const { r, m } = match;
  for (const link of state.shell.links) link.classList.toggle('active', link.dataset.nav === r.nav);
  for (const link of state.shell.links) {
    if (link.dataset.nav === r.nav) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  state.shell.title.textContent = r.title;
  document.title = `${r.title} · crm`;
  const controller = new AbortController();
  const active = { controller, cleanups: [] };
  state.active = active;
  const el = h('div', { class: 'view', dataset: { view: r.nav } });
  replace(state.shell.view, el);
  if (!allowed(r.nav)) {
    const first = NAV.find((n) => allowed(n.route));
    replace(el, h('div', { class: 'state empty' }, h('strong', 'Not available for your role'), first && first.route !== r.nav ? h('a', { href: `#/${first.route}` }, `Go to ${first.label}`) : null));
    return;
  }
  if (!state.site) {
    replace(el, h('div', { class: 'state empty' }, h('strong', 'No site yet'), h('p', { class: 'muted' }, 'Create a site with POST /api/v1/sites, then reload.')));
    return;
  }
  const ctx = {
    el,
    site: state.site,
    params: m.slice(1).map((p) => {
      try {
        return decodeURIComponent(p);
      } catch {
        return p;
      }
    }),
    query,
    signal: controller.signal,
    onCleanup: (fn) => active.cleanups.push(fn),
    can,
    setTitle: (text) => {
      if (state.active === active) {
        state.shell.title.textContent = text;
        document.title = `${text} · crm`;
      }
    },
    go,
  };
  Promise.resolve()
    .then(() => r.render(ctx))
    .catch((err) => {
      if (controller.signal.aborted || err?.name === 'AbortError') return;
      if (err?.status === 401) {
        showLogin('Your session has expired. Please sign in again.');
        return;
      }
      replace(el, errorBox(err, () => route()));
    });
}

async function start() {
  replace(root, h('div', { class: 'boot' }, loading('Loading sites…')));
  try {
    const [sites, me] = await Promise.all([
      get('/api/v1/sites'),
      get('/api/v1/auth/me').catch((err) => {
        if (err?.status === 404) return null; // an older server: show every screen
        throw err;
      }),
    ]);
    state.sites = Array.isArray(sites.data) ? sites.data : [];
    state.permissions = Array.isArray(me?.data?.permissions) ? new Set(me.data.permissions) : null;
    state.attributions = Array.isArray(me?.data?.attributions) ? me.data.attributions : [];
  } catch (err) {
    if (err?.status === 401) {
      showLogin('Please sign in.');
      return;
    }
    replace(root, h('div', { class: 'boot' }, errorBox(err, () => start())));
    return;
  }
  state.site = pickSite(state.sites);
  buildShell();
  const home = NAV.find((n) => allowed(n.route))?.route || 'overview';
  if (!location.hash || location.hash === '#/' || location.hash === '#/login') history.replaceState(null, '', `#/${home}`);
  route();
}

window.addEventListener('hashchange', () => route());
onSignedOut((reason) => showLogin(reason));

(async () => {
  replace(root, h('div', { class: 'boot' }, loading('Starting…')));
  if (await resume()) start();
  else showLogin();
})();
