/**
 * The Echo test page's bootstrap, as in a Laravel app's resources/js/bootstrap.js: an axios-shaped
 * HTTP helper (Echo registers its request interceptor on `window.axios`, which adds X-Socket-Id from
 * the connector's socketId() for toOthers()), then `window.Echo = new Echo({ broadcaster:
 * AskrConnector, ... })`: session cookies for the session guard, `bearerToken` (or `auth.headers`)
 * for the token guard.
 * `window.log` collects what the callbacks of `record(tag)` got; `window.statuses` the
 * onConnectionChange() calls.
 */
'use strict';

window.startEchoPage = function startEchoPage(EchoClass, Connector, config) {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;

  // What the tests need of axios: interceptors.request.use() and post(). The real axios behaves
  // the same towards Echo (it runs the interceptor on every request's config).
  const interceptors = [];
  const axios = function axios() {
    throw new Error('this page only implements axios.post');
  };
  axios.interceptors = {
    request: {
      use(fn) {
        interceptors.push(fn);
        return interceptors.length - 1;
      },
    },
  };
  axios.post = async function post(url, data) {
    let request = {
      url: config.api + url,
      method: 'post',
      data: data ?? {},
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    };
    if (config.guard === 'token') request.headers.Authorization = `Bearer ${config.token}`;
    else request.headers['X-CSRF-TOKEN'] = csrf;
    for (const fn of interceptors) request = fn(request);
    const res = await fetch(request.url, {
      method: 'POST',
      headers: request.headers,
      body: JSON.stringify(request.data),
      credentials: 'same-origin',
    });
    if (!res.ok) throw new Error(`POST ${request.url}: ${res.status} ${await res.text()}`);
    return { status: res.status, data: await res.json(), headers: request.headers };
  };
  window.axios = axios;

  const options = { broadcaster: Connector };
  if (config.guard === 'token' && config.via === 'headers') {
    options.auth = { headers: { Authorization: `Bearer ${config.token}` } };
  } else if (config.guard === 'token') {
    options.bearerToken = config.token;
  }
  window.Echo = new EchoClass(options);

  window.log = [];
  window.record = (tag) => (data) => window.log.push({ tag, data });
  window.statuses = [];
  const status = document.getElementById('status');
  window.Echo.connector.onConnectionChange((s) => {
    window.statuses.push(s);
    status.textContent = s;
    status.dataset.status = s;
  });
  window.echoReady = true;
};
