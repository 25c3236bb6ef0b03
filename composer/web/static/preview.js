'use strict';
let shown = -1;
async function refresh() {
  const state = await (await fetch('/state.json', {cache: 'no-store'})).json();
  const error = document.getElementById('error');
  error.textContent = state.error || '';
  error.style.display = state.error ? 'block' : 'none';
  document.getElementById('version').textContent = 'build ' + state.version;
  if (state.error || state.version === shown) return;
  shown = state.version;
  document.getElementById('subject').textContent = state.subject;
  const size = document.getElementById('size');
  size.textContent = `HTML ${state.size_kb} KB of Gmail's 102 KB`;
  size.className = state.size > state.limit ? 'over' : 'ok';
  for (const id of ['desktop', 'phone']) {
    document.getElementById(id).src = '/email.html?v=' + state.version;
  }
  document.getElementById('text').textContent = await (await fetch('/email.txt?v=' + state.version)).text();
  document.getElementById('headers').textContent = state.headers.join('\n');
  const list = document.getElementById('findings');
  list.replaceChildren(...state.findings.map(f => {
    const li = document.createElement('li');
    li.className = f.severity; li.textContent = f.text; return li;
  }));
  if (!state.findings.length) list.replaceChildren(Object.assign(document.createElement('li'), {textContent: 'No problems found.'}));
}
const events = new EventSource('/events');
events.onmessage = refresh;
refresh();
