// The knowledge-base screens: the site's help-centre articles (drafts, published and deleted)
// with a filter, the KB analytics (views, searches, searches without a good answer, helpful
// votes, deflection rate, top articles, content gaps), and one article's editor: the version it
// was loaded at goes with every save (a newer one is a conflict), the server's field errors show
// next to their inputs, delete and restore, its public page and its version history. Roles
// without kb_manage see the same screens read-only.

import { get, request } from '../api.js';
import { lineChart } from '../charts.js';
import { h, replace, seg } from '../dom.js';
import { DASH, ago, axisDay, dateTime, isoDay, num, pct } from '../format.js';
import { badge, chip, empty, errorBox, kpi, loading, panel, segmented, selectSegment, table } from '../ui.js';

const DAY_MS = 86_400_000;
const MAX_ROWS = 500;
const SHOWS = [
  { value: 'all', label: 'All' },
  { value: 'published', label: 'Published' },
  { value: 'draft', label: 'Drafts' },
  { value: 'deleted', label: 'Deleted' },
];

const publicPath = (site, slug) => `/help/${seg(site)}/a/${seg(slug)}`;
const isLive = (a) => a.status === 'published' && !a.deleted_at_ms;
const dayText = (d) => (Number.isFinite(d) ? isoDay(new Date(d * DAY_MS)) : DASH);

function statusBadge(a) {
  if (a.deleted_at_ms) return badge('Deleted', 'bad');
  return a.status === 'published' ? badge('Published', 'good') : badge('Draft');
}

function analyticsPanels(d, ctx) {
  const t = d.totals || {};
  const votes = (t.helpful_yes || 0) + (t.helpful_no || 0);
  const rate = d.deflection_rate;
  const days = Array.isArray(d.days) ? d.days.filter((x) => Number.isFinite(x.day)) : [];
  const top = Array.isArray(d.top_articles) ? d.top_articles : [];
  const gaps = Array.isArray(d.gaps) ? d.gaps : [];
  return [
    h(
      'div',
      { class: 'kpis', id: 'kb-kpis' },
      kpi('kb_views', 'Article views', num(t.views)),
      kpi('kb_searches', 'Searches', num(t.searches)),
      kpi('kb_no_answer', 'No good answer', num(t.no_result_searches), { sub: t.searches ? `${pct(t.no_result_searches / t.searches)} of searches` : null }),
      kpi('kb_helpful', 'Found helpful', votes ? pct(t.helpful_yes / votes) : DASH, { sub: `${num(t.helpful_yes)} yes · ${num(t.helpful_no)} no`, note: votes ? undefined : 'No votes yet' }),
      kpi('kb_deflections', 'Deflections', num(t.deflections), { sub: `${num(t.handoffs)} chat handoffs`, note: 'Questions answered without a person: articles found helpful, chats resolved without a handoff' }),
      kpi('kb_deflection_rate', 'Deflection rate', rate === null || rate === undefined ? DASH : pct(rate), { note: rate === null || rate === undefined ? 'No deflections or handoffs yet' : 'Deflections / (deflections + handoffs)' }),
    ),
    panel(
      'Help centre per day',
      days.some((x) => x.views || x.searches)
        ? lineChart(
            days.map((x) => ({ x: new Date(x.day * DAY_MS).toISOString(), values: { views: x.views || 0, searches: x.searches || 0, gaps: x.no_result_searches || 0 } })),
            [
              { key: 'views', label: 'Article views', tone: 'a' },
              { key: 'searches', label: 'Searches', tone: 'b' },
              { key: 'gaps', label: 'No good answer', tone: 'c' },
            ],
            { xLabel: axisDay, name: 'kb-days', height: 200 },
          )
        : empty('No help-centre traffic in this period'),
      { id: 'kb-trend', subtitle: 'Last 30 days (UTC)' },
    ),
    h(
      'div',
      { class: 'grid cols-2' },
      panel(
        'Top articles',
        top.length
          ? table(
              [
                { title: 'Article', cell: (a) => h('a', { href: `#/kb/${seg(a.article_id)}` }, a.title || a.article_id) },
                { title: 'Views', cell: (a) => num(a.views), className: 'num' },
                { title: 'Helpful', cell: (a) => num(a.helpful_yes), className: 'num' },
                { title: 'Not helpful', cell: (a) => num(a.helpful_no), className: 'num' },
                { title: 'Helpful rate', cell: (a) => pct(a.helpful_rate), className: 'num' },
              ],
              top,
            ).el
          : empty('No article views yet'),
        { id: 'kb-top' },
      ),
      panel(
        'Content gaps',
        gaps.length
          ? table(
              [
                { title: 'Search', cell: (g) => h('span', { class: 'gap-query' }, g.query) },
                { title: 'Times', cell: (g) => num(g.count), className: 'num' },
                { title: 'Last searched', cell: (g) => dayText(g.last_day), className: 'nowrap' },
                ctx.can('kb_manage') ? { title: '', cell: (g) => h('a', { class: 'btn small', href: `#/kb/new?title=${encodeURIComponent(g.query)}` }, 'Write an article') } : null,
              ].filter(Boolean),
              gaps,
            ).el
          : empty('No content gaps', 'Every search found a good answer.'),
        { id: 'kb-gaps', subtitle: 'Searches with no good answer: candidates for new articles' },
      ),
    ),
  ];
}

export async function renderKb(ctx) {
  const { el, site, signal } = ctx;
  let show = SHOWS.some((s) => s.value === ctx.query.get('show')) ? ctx.query.get('show') : 'all';
  let articles = [];
  const filter = h('input', { type: 'search', id: 'kb-filter', placeholder: 'Filter articles', 'aria-label': 'Filter articles' });
  const listBody = h('div', loading('Loading articles…'));
  const analyticsBody = h('div', { class: 'stack', id: 'kb-analytics' }, loading('Loading help-centre analytics…'));
  const columns = [
    { title: 'Article', cell: (a) => h('div', { class: 'who' }, h('a', { href: `#/kb/${seg(a.article_id)}`, class: 'who-name' }, a.title || a.slug), h('div', { class: 'muted small' }, a.slug)) },
    { title: 'Status', cell: statusBadge },
    { title: 'Category', cell: (a) => a.category || DASH },
    { title: 'Tags', cell: (a) => (a.tags?.length ? h('span', { class: 'chips' }, a.tags.map((t) => chip(t))) : DASH) },
    { title: 'Version', cell: (a) => num(a.version), className: 'num' },
    { title: 'Updated', cell: (a) => h('span', { title: dateTime(a.updated_at_ms) }, ago(a.updated_at_ms), a.updated_by ? h('span', { class: 'muted small' }, ` by ${a.updated_by}`) : null), className: 'nowrap' },
    {
      title: 'Public page',
      cell: (a) => (isLive(a) ? h('a', { href: publicPath(site, a.slug), target: '_blank', rel: 'noopener', dataset: { publicLink: a.article_id } }, 'View') : h('span', { class: 'muted' }, 'Not public')),
    },
  ];

  const draw = () => {
    if (!articles.length) {
      replace(listBody, empty('No articles yet', ctx.can('kb_manage') ? 'Write one with "New article", or import a folder of markdown files with crm import kb.' : 'Admins and sales managers write the articles.'));
      return;
    }
    const q = filter.value.trim().toLowerCase();
    const rows = articles
      .filter((a) => (show === 'all' ? true : show === 'deleted' ? a.deleted_at_ms : !a.deleted_at_ms && a.status === show))
      .filter((a) => !q || [a.title, a.slug, a.category, ...(a.tags || [])].some((v) => String(v || '').toLowerCase().includes(q)));
    replace(
      listBody,
      rows.length ? table(columns, rows.slice(0, MAX_ROWS), { onRow: (a) => ctx.go(`#/kb/${seg(a.article_id)}`), rowLabel: (a) => `Article ${a.title}` }).el : empty('No matching articles'),
      rows.length > MAX_ROWS ? h('p', { class: 'muted small' }, `Showing ${MAX_ROWS} of ${num(rows.length)}: narrow the filter.`) : null,
    );
  };
  const shows = segmented(
    SHOWS,
    show,
    (value) => {
      show = value;
      selectSegment(shows, value);
      history.replaceState(null, '', value === 'all' ? '#/kb' : `#/kb?show=${value}`);
      draw();
    },
    'Show articles',
  );
  filter.addEventListener('input', () => draw());

  replace(
    el,
    h(
      'div',
      { class: 'toolbar' },
      h('p', { class: 'muted' }, 'Help-centre articles; the chat assistant answers from the published ones.'),
      h(
        'div',
        { class: 'toolbar-controls' },
        filter,
        shows,
        h('a', { class: 'btn', href: `/help/${seg(site)}/`, target: '_blank', rel: 'noopener', id: 'kb-help-link' }, 'Help centre'),
        ctx.can('kb_manage') ? h('a', { class: 'btn primary', href: '#/kb/new', id: 'kb-new' }, 'New article') : null,
      ),
    ),
    panel('Articles', listBody, { id: 'kb-articles' }),
    analyticsBody,
  );

  const loadArticles = async () => {
    try {
      const all = [];
      let cursor = null;
      do {
        const page = await get('/api/v1/kb/articles', { site_id: site, include_deleted: true, limit: 500, cursor }, signal);
        all.push(...(page.data || []));
        cursor = page.meta?.next_cursor || null;
      } while (cursor && all.length < 20_000);
      if (signal.aborted) return;
      articles = all.sort((a, b) => (b.updated_at_ms || 0) - (a.updated_at_ms || 0));
      draw();
    } catch (err) {
      if (!signal.aborted && err?.name !== 'AbortError') replace(listBody, errorBox(err, () => loadArticles()));
    }
  };
  const loadAnalytics = async () => {
    try {
      const { data } = await get('/api/v1/kb/analytics', { site_id: site }, signal);
      if (!signal.aborted) replace(analyticsBody, analyticsPanels(data || {}, ctx));
    } catch (err) {
      if (!signal.aborted && err?.name !== 'AbortError') replace(analyticsBody, panel('Help-centre analytics', errorBox(err, () => loadAnalytics())));
    }
  };
  await Promise.all([loadArticles(), loadAnalytics()]);
}

const FIELDS = { title: 'kb-title', status: 'kb-status', slug: 'kb-slug', category: 'kb-category', tags: 'kb-tags', body_md: 'kb-body' };

/**
 * The article form. Returns { form, inputs, notice, values(), show(err), clear(), busy(on) };
 * show() puts a 422's `details.fields` next to their inputs (tags[2] → tags).
 */
function articleForm(article, { readOnly, submitText, cancel }) {
  const inputs = {
    title: h('input', { maxlength: 200, value: article.title || '', autocomplete: 'off' }),
    status: h('select', h('option', { value: 'draft', selected: article.status !== 'published' }, 'Draft'), h('option', { value: 'published', selected: article.status === 'published' }, 'Published')),
    slug: h('input', { maxlength: 100, value: article.slug || '', placeholder: 'made from the title', autocapitalize: 'off', spellcheck: 'false' }),
    category: h('input', { maxlength: 100, value: article.category || '', placeholder: 'e.g. billing', autocapitalize: 'off', spellcheck: 'false' }),
    tags: h('input', { value: (article.tags || []).join(', '), placeholder: 'comma-separated', autocapitalize: 'off', spellcheck: 'false' }),
    body_md: h('textarea', { rows: 16, value: article.body_md || '' }),
  };
  const errors = {};
  for (const [name, id] of Object.entries(FIELDS)) {
    inputs[name].id = id;
    inputs[name].setAttribute('aria-describedby', `${id}-error`);
    if (readOnly) inputs[name][name === 'status' ? 'disabled' : 'readOnly'] = true;
    errors[name] = h('div', { class: 'field-error', id: `${id}-error` });
  }
  const field = (name, text, hint) => h('div', { class: `field field-${name}` }, h('label', { for: FIELDS[name] }, text), inputs[name], hint ? h('div', { class: 'muted small' }, hint) : null, errors[name]);
  const general = h('div', { class: 'form-error', role: 'alert', id: 'kb-form-error' });
  const notice = h('div', { class: 'form-notice', role: 'status', id: 'kb-form-status' });
  const save = h('button', { class: 'btn primary', type: 'submit', id: 'kb-save' }, submitText);
  const form = h(
    'form',
    { class: 'kb-form', id: 'kb-form', novalidate: true },
    h('div', { class: 'form-row' }, field('title', 'Title'), field('status', 'Status')),
    h('div', { class: 'form-row' }, field('slug', 'Slug', 'The public address: /help/…/a/slug'), field('category', 'Category'), field('tags', 'Tags')),
    field('body_md', 'Body (Markdown)'),
    general,
    notice,
    readOnly ? null : h('div', { class: 'form-actions' }, save, cancel || null),
  );
  const clear = () => {
    general.replaceChildren();
    notice.textContent = '';
    for (const name of Object.keys(FIELDS)) {
      errors[name].textContent = '';
      inputs[name].removeAttribute('aria-invalid');
    }
  };
  return {
    form,
    inputs,
    notice,
    general,
    clear,
    values() {
      const v = {
        title: inputs.title.value,
        body_md: inputs.body_md.value,
        category: inputs.category.value.trim() || null,
        tags: inputs.tags.value.split(',').map((t) => t.trim()).filter(Boolean),
        status: inputs.status.value,
      };
      if (inputs.slug.value.trim()) v.slug = inputs.slug.value.trim();
      return v;
    },
    show(err) {
      clear();
      const fields = err?.details?.fields;
      if (err?.status === 422 && fields && typeof fields === 'object') {
        const byField = new Map();
        const other = [];
        for (const [key, message] of Object.entries(fields)) {
          const name = key.replace(/\[\d+\]$/, '');
          if (!errors[name]) other.push(`${key}: ${message}`);
          else if (!(byField.get(name) || []).includes(String(message))) byField.set(name, [...(byField.get(name) || []), String(message)]);
        }
        for (const [name, messages] of byField) {
          errors[name].textContent = messages.join(' ');
          inputs[name].setAttribute('aria-invalid', 'true');
        }
        general.textContent = other.length ? other.join(' · ') : 'Some fields need a change: see the messages next to them.';
        const first = Object.keys(FIELDS).find((name) => byField.has(name));
        if (first) inputs[first].focus();
      } else if (err?.code === 'slug_exists') {
        errors.slug.textContent = err.message;
        inputs.slug.setAttribute('aria-invalid', 'true');
        inputs.slug.focus();
      } else {
        general.textContent = err?.message || String(err);
      }
    },
    busy(on) {
      save.disabled = on;
      save.textContent = on ? 'Saving…' : submitText;
    },
  };
}

const backLink = () => h('a', { href: '#/kb', class: 'back' }, '← Knowledge base');

export async function renderNewArticle(ctx) {
  const { el, site, signal } = ctx;
  if (!ctx.can('kb_manage')) {
    replace(el, backLink(), empty('Your role cannot write articles', 'Admins and sales managers write the knowledge base.'));
    return;
  }
  const f = articleForm({ title: ctx.query.get('title') || '', status: 'draft' }, { readOnly: false, submitText: 'Create article', cancel: h('a', { class: 'btn', href: '#/kb' }, 'Cancel') });
  f.form.addEventListener('submit', async (event) => {
    event.preventDefault();
    f.clear();
    f.busy(true);
    try {
      const { data } = await request('POST', '/api/v1/kb/articles', { body: { site_id: site, ...f.values() }, signal });
      if (!signal.aborted) ctx.go(`#/kb/${seg(data.article_id)}?saved=created`);
    } catch (err) {
      if (!signal.aborted && err?.name !== 'AbortError') f.show(err);
    } finally {
      f.busy(false);
    }
  });
  replace(el, backLink(), panel('New article', f.form, { id: 'kb-editor', subtitle: `Site ${site}` }));
  f.inputs.title.focus();
}

export async function renderArticle(ctx) {
  const { el, site, signal } = ctx;
  const id = ctx.params[0];
  const canWrite = ctx.can('kb_manage');
  const path = `/api/v1/kb/articles/${seg(site)}/${seg(id)}`;
  replace(el, loading('Loading article…'));
  let article;
  try {
    article = (await get(path, {}, signal)).data;
  } catch (err) {
    if (signal.aborted) return;
    if (err.status === 404) {
      replace(el, backLink(), empty('Article not found', `No article ${id} on site ${site}.`));
      return;
    }
    throw err;
  }
  if (signal.aborted) return;

  const head = h('div', { class: 'detail-head', id: 'kb-head' });
  const versionsBody = h('div', loading('Loading versions…'));
  const f = articleForm(article, { readOnly: !canWrite, submitText: 'Save' });

  const act = async (button, run, done) => {
    f.clear();
    button.disabled = true;
    try {
      article = await run();
      if (signal.aborted) return;
      drawHead();
      f.notice.textContent = done;
      loadVersions();
    } catch (err) {
      if (signal.aborted || err?.name === 'AbortError') return;
      button.disabled = false;
      f.general.textContent = err.message;
    }
  };
  // Both writes make a new version: the form's next save carries it.
  const remove = (event) =>
    act(
      event.currentTarget,
      async () => {
        await request('DELETE', path, { signal });
        return (await get(path, {}, signal)).data;
      },
      'Deleted: the article left the help centre and search. Restore brings it back.',
    );
  const restore = (event) => act(event.currentTarget, async () => (await request('POST', `${path}/restore`, { signal })).data, 'Restored.');

  function drawHead() {
    ctx.setTitle(`Article · ${article.title}`);
    const by = article.updated_by ? ` by ${article.updated_by}` : '';
    replace(
      head,
      h(
        'div',
        h('h2', { class: 'detail-name' }, article.title),
        h('div', { class: 'muted small', id: 'kb-version' }, `${article.slug} · version ${article.version} · updated ${dateTime(article.updated_at_ms)}${by}`),
        h('div', { class: 'chips' }, statusBadge(article)),
      ),
      h(
        'div',
        { class: 'head-actions' },
        isLive(article)
          ? h('a', { class: 'btn', href: publicPath(site, article.slug), target: '_blank', rel: 'noopener', id: 'kb-public-link' }, 'View public page')
          : h('span', { class: 'muted small' }, 'Not on the help centre'),
        canWrite && article.deleted_at_ms ? h('button', { class: 'btn', type: 'button', id: 'kb-restore', onclick: restore }, 'Restore') : null,
        canWrite && !article.deleted_at_ms ? h('button', { class: 'btn danger', type: 'button', id: 'kb-delete', onclick: remove }, 'Delete') : null,
      ),
    );
  }

  async function loadVersions() {
    try {
      const { data } = await get(`${path}/versions`, {}, signal);
      if (signal.aborted) return;
      const rows = (Array.isArray(data) ? data : []).slice().sort((a, b) => b.version - a.version);
      const columns = [
        { title: 'Version', cell: (v) => num(v.version), className: 'num' },
        { title: 'Title', cell: (v) => v.title },
        { title: 'Status', cell: (v) => statusBadge({ status: v.status, deleted_at_ms: v.deleted ? 1 : null }) },
        { title: 'By', cell: (v) => v.author || DASH },
        { title: 'When', cell: (v) => h('span', { title: dateTime(v.at_ms) }, ago(v.at_ms)), className: 'nowrap' },
      ];
      replace(versionsBody, rows.length ? table(columns, rows).el : empty('No versions'));
    } catch (err) {
      if (!signal.aborted && err?.name !== 'AbortError') replace(versionsBody, errorBox(err, () => loadVersions()));
    }
  }

  f.form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!canWrite) return;
    f.clear();
    f.busy(true);
    try {
      const { data } = await request('PUT', path, { body: { ...f.values(), version: article.version }, signal });
      if (signal.aborted) return;
      article = data;
      f.inputs.slug.value = article.slug;
      drawHead();
      f.notice.textContent = `Saved: version ${article.version}.`;
      loadVersions();
    } catch (err) {
      if (signal.aborted || err?.name === 'AbortError') return;
      if (err?.code === 'version_conflict') {
        const now = err.details?.current_version;
        const who = err.details?.updated_by;
        replace(
          f.general,
          `This article was changed by someone else${now ? ` (now version ${now}${who ? ` by ${who}` : ''})` : ''}. Reload to edit the current version; your changes here are not saved, so copy them first if you need them. `,
          h('button', { class: 'btn small', type: 'button', id: 'kb-reload', onclick: () => ctx.go(`#/kb/${seg(id)}`) }, 'Reload'),
        );
      } else {
        f.show(err);
      }
    } finally {
      f.busy(false);
    }
  });

  drawHead();
  if (ctx.query.get('saved') === 'created') {
    f.notice.textContent = `Article created (version ${article.version}).`;
    history.replaceState(null, '', `#/kb/${seg(id)}`);
  }
  replace(
    el,
    backLink(),
    head,
    panel(canWrite ? 'Edit article' : 'Article', f.form, { id: 'kb-editor', subtitle: canWrite ? 'Saving makes a new version; the public page changes when the article is published.' : 'Read-only: your role cannot edit articles.' }),
    panel('Version history', versionsBody, { id: 'kb-versions', subtitle: 'Every save, delete and restore' }),
  );
  await loadVersions();
}
