// The demo page's live part, plain JS (no build step): one EventSource on the stream named by
// #live[data-stream], a list of what it receives, and a form that publishes through PHP (fetch).
// Invariants: the list shows only events that arrived over SSE (never the POST's answer), and
// every received value is inserted as text (textContent), never as HTML.
'use strict';

(() => {
  const live = document.getElementById('live');
  const state = document.getElementById('state');
  const list = document.getElementById('messages');
  const empty = document.getElementById('empty');
  const form = document.getElementById('publish');
  const status = document.getElementById('publish-status');

  function setState(name, label) {
    state.dataset.state = name;
    state.textContent = label;
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function clock(iso) {
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? '' : date.toLocaleTimeString();
  }

  /** Appends one received event; `kind` is its SSE event name ('message' for plain events). */
  function render(kind, event) {
    let body;
    try {
      body = JSON.parse(event.data);
    } catch {
      body = null; // not JSON (published by someone else): show the raw text
    }
    if (body === null || typeof body !== 'object') body = { text: String(event.data) };
    const item = el('li', `item item-${kind}`);
    item.dataset.kind = kind;
    item.dataset.id = event.lastEventId;
    item.append(el('time', 'time', clock(body.time)));
    if (kind === 'hello') {
      item.append(el('span', 'text', `PHP worker ${String(body.pid)}: ${String(body.text)}`));
    } else {
      item.append(el('strong', 'who', String(body.name ?? 'someone')));
      item.append(el('span', 'text', String(body.text ?? '')));
    }
    item.append(el('span', 'tag', kind));
    list.append(item);
    empty.hidden = true;
    item.scrollIntoView({ block: 'nearest' });
  }

  const source = new EventSource(live.dataset.stream);
  setState('connecting', 'connecting…');
  source.onopen = () => setState('open', 'connected');
  source.onerror = () => {
    // EventSource reconnects by itself (after `retry:`) unless the server refused the stream.
    if (source.readyState === EventSource.CLOSED) setState('closed', 'disconnected');
    else setState('connecting', 'reconnecting…');
  };
  source.onmessage = (event) => render('message', event); // askr_broadcast(): no event name
  source.addEventListener('chat', (event) => render('chat', event)); // askr_publish(…, 'chat')
  source.addEventListener('hello', (event) => render('hello', event)); // the PHP hold's first frame
  source.addEventListener('askr:lost', () => {
    // The sidecar could not replay what we missed while disconnected.
    status.textContent = 'Some messages were missed while disconnected.';
  });

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    data.set('kind', event.submitter?.value === 'message' ? 'message' : 'chat');
    const buttons = form.querySelectorAll('button');
    for (const b of buttons) b.disabled = true;
    status.textContent = 'publishing…';
    try {
      const res = await fetch(form.action, {
        method: 'POST',
        headers: { Accept: 'application/json' },
        body: new URLSearchParams(data),
      });
      const answer = await res.json();
      if (answer.ok) {
        status.textContent = `Sent to the sidecar as a "${answer.event}" event.`;
        form.elements.text.value = '';
      } else {
        status.textContent = `Not published: ${answer.error}`;
      }
    } catch (err) {
      status.textContent = `Not published: ${err instanceof Error ? err.message : String(err)}`;
    } finally {
      for (const b of buttons) b.disabled = false;
      form.elements.text.focus();
    }
  });
})();
