'use strict';
let shown = -1;
let edition = new URLSearchParams(location.search).get('edition') || '';
const select = document.getElementById('edition');
select.addEventListener('change', () => {
  edition = select.value; shown = -1;
  history.replaceState(null, '', '?edition=' + encodeURIComponent(edition));
  refresh();
});
function showEditions(state) {
  const box = document.getElementById('edition-box');
  box.hidden = state.editions.length < 2;
  const codes = state.editions.map(e => e.code).join(' ');
  if (select.dataset.codes !== codes) {
    select.dataset.codes = codes;
    select.replaceChildren(...state.editions.map(e =>
      Object.assign(document.createElement('option'), {value: e.code, textContent: `${e.name} (${e.code})`})));
  }
  if (state.edition) { select.value = state.edition; edition = state.edition; }
}
async function refresh() {
  const q = edition ? '&edition=' + encodeURIComponent(edition) : '';
  const state = await (await fetch('/state.json?v=' + Date.now() + q, {cache: 'no-store'})).json();
  showEditions(state);
  const error = document.getElementById('error');
  error.textContent = state.error || '';
  error.style.display = state.error ? 'block' : 'none';
  document.getElementById('version').textContent = 'build ' + state.version;
  if (state.error || `${state.version}/${state.edition}` === shown) return;
  shown = `${state.version}/${state.edition}`;
  document.getElementById('subject').textContent = state.subject;
  const size = document.getElementById('size');
  size.textContent = `HTML ${state.size_kb} KB of Gmail's 102 KB`;
  size.className = state.size > state.limit ? 'over' : 'ok';
  for (const id of ['desktop', 'phone']) {
    document.getElementById(id).src = '/email.html?v=' + state.version + q;
  }
  document.getElementById('text').textContent = await (await fetch('/email.txt?v=' + state.version + q)).text();
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
