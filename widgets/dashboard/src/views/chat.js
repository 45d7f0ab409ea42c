// The chat inbox: the staff side of the website chat. Conversations waiting for a person first,
// a status filter, one conversation's transcript (visitor, assistant and agent messages, the
// articles the assistant cited), a reply box and the close buttons. The list and the open
// conversation are polled every 3 s while the page is visible, which also keeps the signed-in
// person "online" for visitors (the server counts whoever reads the inbox).

import { get, request } from '../api.js';
import { h, replace, seg } from '../dom.js';
import { ago, dateTime, label, num, shortId, time } from '../format.js';
import { badge, empty, errorBox, facts, loading, panel, personName, segmented, selectSegment } from '../ui.js';

const POLL_MS = 3_000;
const MAX_REPLY = 2000;

const FILTERS = [
  { value: '', label: 'All' },
  { value: 'handed_off', label: 'Waiting' },
  { value: 'open', label: 'Open' },
  { value: 'resolved', label: 'Resolved' },
  { value: 'closed', label: 'Closed' },
];
const STATUSES = {
  handed_off: ['Waiting', 'warn'],
  open: ['With assistant', 'accent'],
  resolved: ['Resolved', 'good'],
  closed: ['Closed', ''],
};
const AUTHORS = { visitor: 'Visitor', assistant: 'Assistant', agent: 'Agent' };

function statusBadge(status) {
  const [text, tone] = STATUSES[status] || [label(status), ''];
  return badge(text, tone);
}

const text = (v) => (typeof v === 'string' && v.trim() ? v.trim() : null);

/** Who the visitor is, as far as the chat knows: email (or name), company, visitor id. */
function who(c) {
  const fields = c.fields || {};
  return personName(fields, null) || text(fields.company) || (c.visitor_id ? `Visitor ${shortId(c.visitor_id)}` : 'Anonymous visitor');
}

function subline(c) {
  const fields = c.fields || {};
  const company = text(fields.company);
  const parts = [company && company !== who(c) ? company : null, `${num(c.messages)} message${c.messages === 1 ? '' : 's'}`];
  return parts.filter(Boolean).join(' · ');
}

const byUpdate = (a, b) => (b.updated_at_ms || 0) - (a.updated_at_ms || 0);

function messageItem(m) {
  const author = AUTHORS[m.author] ? m.author : 'assistant';
  const name = author === 'agent' ? m.agent || AUTHORS.agent : AUTHORS[author];
  const articles = Array.isArray(m.articles) ? m.articles : [];
  return h(
    'li',
    { class: `msg msg-${author}`, dataset: { message: m.message_id, author } },
    h('div', { class: 'msg-meta' }, h('span', { class: 'msg-author' }, name), h('span', { title: dateTime(m.at_ms) }, time(m.at_ms))),
    h('div', { class: 'msg-text' }, String(m.text ?? '')),
    articles.length ? h('ul', { class: 'msg-articles' }, articles.map((a) => h('li', h('a', { href: String(a.url || ''), target: '_blank', rel: 'noopener' }, String(a.title || a.url || ''))))) : null,
  );
}

export async function renderChat(ctx) {
  const { el, site, signal } = ctx;
  let status = FILTERS.some((f) => f.value === ctx.query.get('status')) ? ctx.query.get('status') || '' : '';
  let selected = ctx.query.get('c') || null;
  let pages = 1;
  let items = [];
  let more = false;
  let listKey = '';
  let listBusy = false;
  let listAgain = false;
  let stopped = false;

  // The route reflects the filter and the open conversation without re-rendering the screen.
  const remember = () => {
    const q = new URLSearchParams({ status, c: selected || '' });
    for (const [k, v] of [...q]) if (!v) q.delete(k);
    const hash = `#/chat${[...q].length ? `?${q}` : ''}`;
    if (location.hash !== hash) history.replaceState(null, '', hash);
  };

  const listBody = h('div', { id: 'chat-list' }, loading('Loading conversations…'));
  const detailBody = h('div', { id: 'chat-conversation' }, empty('No conversation selected', 'Pick one from the list: waiting visitors are at the top.'));
  const filter = segmented(
    FILTERS,
    status,
    (value) => {
      status = value;
      pages = 1;
      selectSegment(filter, value);
      remember();
      replace(listBody, loading('Loading conversations…'));
      listKey = '';
      loadList();
    },
    'Conversation status',
  );
  replace(
    el,
    h('div', { class: 'toolbar' }, h('p', { class: 'muted' }, 'Website chat: visitors the assistant handed to a person wait at the top. While this screen is open you count as online.'), filter),
    h('div', { class: 'inbox' }, panel('Conversations', listBody, { id: 'chat-inbox' }), panel(null, detailBody, { id: 'chat-detail' })),
  );

  const loadOlder = () => {
    pages += 1;
    listKey = '';
    loadList();
  };

  const drawList = () => {
    // Redrawn only when something changed (or a minute passed, for the "… ago" texts).
    const key = JSON.stringify([items.map((c) => [c.conversation_id, c.status, c.updated_at_ms, c.messages, c.assigned_to, c.fields]), selected, more, Math.floor(Date.now() / 60_000)]);
    if (key === listKey) return;
    listKey = key;
    const focused = listBody.contains(document.activeElement) ? document.activeElement.dataset?.conversation : null;
    const row = (c) =>
      h(
        'li',
        h(
          'button',
          {
            type: 'button',
            class: `inbox-item${c.conversation_id === selected ? ' selected' : ''}`,
            dataset: { conversation: c.conversation_id, status: c.status },
            'aria-current': c.conversation_id === selected ? 'true' : undefined,
            onclick: () => select(c.conversation_id),
          },
          h('span', { class: 'inbox-top' }, h('span', { class: 'inbox-who' }, who(c)), statusBadge(c.status)),
          h('span', { class: 'inbox-line muted small' }, subline(c)),
          h('span', { class: 'inbox-line muted small' }, h('span', { title: dateTime(c.updated_at_ms) }, ago(c.updated_at_ms)), ' · ', c.assigned_to ? c.assigned_to : 'Unassigned'),
        ),
      );
    const waiting = items.filter((c) => c.status === 'handed_off').sort(byUpdate);
    const others = items.filter((c) => c.status !== 'handed_off').sort(byUpdate);
    const group = (id, title, rows) => (rows.length ? h('div', { class: 'inbox-group', id }, title ? h('h3', title) : null, h('ul', { class: 'inbox-list' }, rows.map(row))) : null);
    const filterName = FILTERS.find((f) => f.value === status)?.label.toLowerCase();
    replace(
      listBody,
      items.length
        ? [group('chat-waiting', status ? null : `Waiting (${waiting.length})`, waiting), group('chat-others', status || !waiting.length ? null : 'Other conversations', others)]
        : empty(status ? `No ${filterName} conversations` : 'No conversations yet', status ? null : 'Conversations appear when visitors use the chat widget on your site.'),
      more
        ? h('div', { class: 'pager' }, h('button', { class: 'btn small', type: 'button', onclick: loadOlder }, 'Load older conversations'))
        : null,
    );
    if (focused) listBody.querySelector(`[data-conversation="${CSS.escape(focused)}"]`)?.focus();
  };

  // The first `pages` pages, newest first (the server filters each page, so one may be short).
  // A call while one is in flight runs again after it, so nothing asked for is skipped.
  async function loadList() {
    if (stopped) return;
    if (listBusy) {
      listAgain = true;
      return;
    }
    listBusy = true;
    listAgain = false;
    const wanted = status;
    try {
      const found = new Map();
      let cursor = null;
      for (let i = 0; i < pages; i++) {
        const page = await get('/api/v1/chat/conversations', { site_id: site, status, limit: 50, cursor }, signal);
        for (const c of page.data || []) if (!found.has(c.conversation_id)) found.set(c.conversation_id, c);
        cursor = page.meta?.next_cursor || null;
        if (!cursor) break;
      }
      if (signal.aborted || wanted !== status) return;
      items = [...found.values()];
      more = Boolean(cursor);
      drawList();
    } catch (err) {
      if (signal.aborted || err?.name === 'AbortError') return;
      listKey = '';
      if (err?.status === 403 || err?.status === 404) stopped = true; // no chat here: stop polling
      replace(listBody, errorBox(err, () => {
        stopped = false;
        loadList();
      }));
    } finally {
      listBusy = false;
      if (listAgain && !signal.aborted) loadList();
    }
  }

  // The open conversation: built once per selection, then updated in place by each poll so a
  // reply being typed is never lost and new messages are appended.
  let pane = null;

  function openPane(id) {
    const seen = new Set();
    const head = h('div', { class: 'chat-head' }, loading('Loading conversation…'));
    const transcript = h('ol', { class: 'transcript', id: 'chat-transcript', 'aria-live': 'polite' });
    const input = h('textarea', { id: 'chat-reply', rows: 3, maxlength: MAX_REPLY, placeholder: 'Write a reply… (Enter sends, Shift+Enter for a new line)', 'aria-label': 'Reply to the visitor' });
    const counter = h('span', { class: 'muted small' }, `0 / ${MAX_REPLY}`);
    const sendButton = h('button', { class: 'btn primary', type: 'submit', id: 'chat-send' }, 'Send');
    const error = h('div', { class: 'form-error', role: 'alert', id: 'chat-reply-error' });
    const form = h('form', { class: 'composer', novalidate: true }, input, h('div', { class: 'composer-bar' }, counter, error, sendButton));
    const me = { id, data: null, links: null, headKey: '', sending: false, busy: false };

    input.addEventListener('input', () => {
      counter.textContent = `${input.value.length} / ${MAX_REPLY}`;
    });
    input.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        send();
      }
    });
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      send();
    });

    me.add = (messages) => {
      const atBottom = transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 40;
      let added = 0;
      for (const m of messages.slice().sort((a, b) => (a.at_ms || 0) - (b.at_ms || 0))) {
        if (!m?.message_id || seen.has(m.message_id)) continue;
        seen.add(m.message_id);
        transcript.append(messageItem(m));
        added++;
      }
      if (added && (atBottom || seen.size === added)) transcript.scrollTop = transcript.scrollHeight;
    };

    const path = `/api/v1/chat/conversations/${seg(site)}/${seg(id)}`;

    async function send() {
      const value = input.value.trim();
      if (!value || me.sending || me.data?.status === 'closed') return;
      me.sending = true;
      sendButton.disabled = true;
      error.textContent = '';
      try {
        const { data } = await request('POST', `${path}/messages`, { body: { text: value }, signal });
        if (signal.aborted) return;
        input.value = '';
        counter.textContent = `0 / ${MAX_REPLY}`;
        if (data) me.add([data]);
        load();
        loadList();
      } catch (err) {
        if (signal.aborted || err?.name === 'AbortError') return;
        const field = err?.details?.fields?.text;
        error.textContent = err?.code === 'conversation_closed' ? 'This conversation is closed: the visitor no longer receives replies.' : field ? `Reply ${field}` : err.message;
        if (err?.code === 'conversation_closed') load();
      } finally {
        me.sending = false;
        sendButton.disabled = me.data?.status === 'closed';
        if (pane === me && !signal.aborted) input.focus();
      }
    }

    async function close(resolved, button) {
      for (const b of head.querySelectorAll('.chat-actions button')) b.disabled = true;
      button.textContent = 'Closing…';
      try {
        const { data } = await request('POST', `${path}/close`, { body: { resolved }, signal });
        if (signal.aborted) return;
        if (data) me.data = { ...me.data, ...data };
        drawHead();
        load();
        loadList();
      } catch (err) {
        if (signal.aborted || err?.name === 'AbortError') return;
        me.headKey = '';
        drawHead();
        error.textContent = err.message;
      }
    }

    function drawHead() {
      const c = me.data;
      if (!c) return;
      // Redrawn only when it changed, so a focused or hovered button stays put between polls.
      const key = JSON.stringify([c.status, c.assigned_to, c.updated_at_ms, c.messages, c.fields, me.links, Math.floor(Date.now() / 60_000)]);
      if (key === me.headKey) return;
      me.headKey = key;
      const fields = Object.entries(c.fields || {}).filter(([, v]) => v !== null && v !== undefined && v !== '');
      const visitor = c.visitor_id
        ? ctx.can('analytics_read')
          ? h('a', { href: `#/visitors/${seg(c.visitor_id)}`, id: 'chat-visitor-link', title: c.visitor_id }, shortId(c.visitor_id, 24))
          : shortId(c.visitor_id, 24)
        : 'Not tracked (no tracking tag on the page)';
      const lead = me.links?.lead_id && ctx.can('leads_read') ? h('a', { href: `#/leads/${seg(me.links.lead_id)}`, id: 'chat-lead-link' }, 'Open the lead') : null;
      const open = c.status !== 'resolved' && c.status !== 'closed';
      replace(
        head,
        h(
          'div',
          { class: 'chat-title' },
          h('div', h('h2', { class: 'detail-name' }, who(c)), h('div', { class: 'chips' }, statusBadge(c.status), c.assigned_to ? badge(`Assigned to ${c.assigned_to}`) : badge('Unassigned'))),
          open
            ? h(
                'div',
                { class: 'chat-actions' },
                h('button', { class: 'btn small', type: 'button', id: 'chat-close-answered', onclick: (event) => close(true, event.currentTarget) }, 'Close: answered'),
                h('button', { class: 'btn small', type: 'button', id: 'chat-close-unanswered', onclick: (event) => close(false, event.currentTarget) }, 'Close: not answered'),
              )
            : null,
        ),
        facts([
          ...fields.map(([k, v]) => [label(k), String(v)]),
          ['Visitor', visitor],
          lead ? ['Lead', lead] : null,
          ['Started', dateTime(c.started_at_ms)],
          ['Last update', `${dateTime(c.updated_at_ms)} (${ago(c.updated_at_ms)})`],
          ['Messages', num(c.messages)],
        ]),
      );
      const closed = c.status === 'closed';
      input.disabled = closed;
      sendButton.disabled = closed || me.sending;
      input.placeholder = closed ? 'This conversation is closed.' : 'Write a reply… (Enter sends, Shift+Enter for a new line)';
    }

    async function load() {
      if (me.busy) return;
      me.busy = true;
      try {
        const { data } = await get(path, {}, signal);
        if (signal.aborted || pane !== me || !data) return;
        const first = !me.data;
        me.data = data;
        if (first) {
          replace(detailBody, head, transcript, form);
          if (data.visitor_id && ctx.can('analytics_read')) findLead(data.visitor_id);
        }
        drawHead();
        me.add(Array.isArray(data.transcript) ? data.transcript : []);
      } catch (err) {
        if (signal.aborted || err?.name === 'AbortError' || pane !== me) return;
        if (err?.status === 404) {
          replace(detailBody, empty('Conversation not found', `No conversation ${id} on site ${site}.`));
          pane = null;
          selected = null;
          remember();
        } else if (!me.data) {
          replace(detailBody, errorBox(err, () => select(id)));
          pane = null;
        }
        // A failed poll of a shown conversation keeps what is shown; the next poll retries.
      } finally {
        me.busy = false;
      }
    }

    // The visitor's profile says which lead they became (once per conversation).
    async function findLead(visitorId) {
      try {
        const { data } = await get(`/api/v1/visitors/${seg(visitorId)}`, { site_id: site }, signal);
        if (signal.aborted || pane !== me) return;
        me.links = { lead_id: data?.lead_id || null };
        drawHead();
      } catch {
        // No profile yet (or no access): the visitor link is enough.
      }
    }

    me.load = load;
    return me;
  }

  function select(id) {
    if (!id) return;
    selected = id;
    remember();
    listKey = '';
    drawList(); // marks the selected row at once
    if (pane?.id === id) return;
    replace(detailBody, loading('Loading conversation…'));
    pane = openPane(id);
    pane.load();
  }

  const tick = () => {
    if (document.hidden || signal.aborted) return;
    if (!stopped) loadList();
    pane?.load();
  };
  const timer = setInterval(tick, POLL_MS);
  const onVisibility = () => {
    if (!document.hidden) tick();
  };
  document.addEventListener('visibilitychange', onVisibility);
  ctx.onCleanup(() => {
    clearInterval(timer);
    document.removeEventListener('visibilitychange', onVisibility);
  });

  if (selected) {
    pane = openPane(selected);
    await Promise.all([loadList(), pane.load()]);
  } else {
    await loadList();
  }
}
