// vmsauth admin page: a technician signs in through the admin API and
// manages users and their sessions. Plain JavaScript, no framework, no
// network beyond this box. The token lives in sessionStorage (gone when
// the tab closes, never sent by the browser on its own, so no CSRF), and
// every text from the user store is put into the page as text, never as
// HTML.
(function () {
  'use strict';

  var API = '/api/admin/v1';
  var TOKEN_KEY = 'vmsauth.token';
  var EXPIRES_KEY = 'vmsauth.expires_at';
  var PER_PAGE = 25;

  // ---- Language -------------------------------------------------------

  var lang = /^ru\b/i.test(navigator.language || '') ? 'ru' : 'en';

  // The texts themselves are in i18n.js.
  var TEXTS = VMSAUTH_TEXTS;

  // t returns the text for key in the page's language, with {name}
  // placeholders filled from vars.
  function t(key, vars) {
    var s = TEXTS[lang][key];
    if (s === undefined) s = TEXTS.en[key];
    if (s === undefined) return key;
    return s.replace(/\{(\w+)\}/g, function (m, name) {
      return vars && vars[name] !== undefined ? String(vars[name]) : m;
    });
  }

  function translatePage() {
    document.documentElement.lang = lang;
    document.title = t('title');
    each('[data-i18n]', function (el) { el.textContent = t(el.dataset.i18n); });
    each('[data-i18n-placeholder]', function (el) { el.placeholder = t(el.dataset.i18nPlaceholder); });
    each('[data-i18n-aria-label]', function (el) { el.setAttribute('aria-label', t(el.dataset.i18nAriaLabel)); });
  }

  // ---- DOM helpers ----------------------------------------------------

  function $(id) { return document.getElementById(id); }

  function each(selector, fn) {
    Array.prototype.forEach.call(document.querySelectorAll(selector), fn);
  }

  // h builds an element; attrs set properties, except "class", "data-*"
  // and "aria-*", which are attributes. Children are nodes or strings,
  // strings always as text.
  function h(tag, attrs) {
    var el = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      var v = attrs[k];
      if (v === undefined || v === null || v === false) return;
      if (k === 'class') el.className = v;
      else if (k.indexOf('data-') === 0 || k.indexOf('aria-') === 0) el.setAttribute(k, v);
      else if (k === 'onclick') el.addEventListener('click', v);
      else el[k] = v;
    });
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined || c === false) continue;
      el.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
    }
    return el;
  }

  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }

  function show(el, on) { el.hidden = !on; }

  // showError fills an alert box with a message and, for validation
  // errors, the list of problems.
  function showError(box, err) {
    clear(box);
    if (!err) { box.hidden = true; return; }
    var lines = errorLines(err);
    box.appendChild(h('p', null, lines[0]));
    if (lines.length > 1) {
      var ul = h('ul');
      lines.slice(1).forEach(function (l) { ul.appendChild(h('li', null, l)); });
      box.appendChild(ul);
    }
    box.hidden = false;
  }

  // errorLines renders an API error as sentences: the message first, then
  // each field's messages (for a 422 whose fields the form does not show).
  function errorLines(err) {
    if (!(err instanceof ApiError)) return [String(err && err.message || err)];
    var lines = [err.message];
    if (err.fields) {
      Object.keys(err.fields).forEach(function (f) {
        err.fields[f].forEach(function (m) { lines.push(m); });
      });
      // A 422 with a single field problem reads better as just that line.
      if (lines.length === 2) lines = [lines[1]];
    }
    if (err.status === 429 && err.retryAfter !== null) {
      lines[0] += ' ' + t('error.retry', { time: duration(err.retryAfter) });
    }
    return lines;
  }

  function duration(sec) {
    sec = Math.max(0, Math.ceil(sec));
    var m = Math.floor(sec / 60), s = sec % 60;
    if (m === 0) return t('time.sec', { s: s });
    return s === 0 ? t('time.min', { m: m }) : t('time.minSec', { m: m, s: s });
  }

  // toast shows a short note. It is a popover where the browser has them,
  // so that it shows above an open modal dialog too.
  var toastTimer = 0;
  function toast(text) {
    var el = $('toast');
    var popover = typeof el.showPopover === 'function';
    el.textContent = text;
    el.hidden = false;
    if (popover) {
      if (el.matches(':popover-open')) el.hidePopover();
      el.showPopover();
    }
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () {
      if (popover && el.matches(':popover-open')) el.hidePopover();
      el.hidden = true;
    }, 5000);
  }

  // "2026-03-01 12:00:00" → "2026-03-01 12:00": the box's local time, as
  // the API gives it.
  function shortTime(s) { return s ? String(s).replace(/:\d\d$/, '') : ''; }

  // ---- API ------------------------------------------------------------

  // ApiError is an answer of the admin API that was not a success, or no
  // answer at all (status 0).
  function ApiError(status, message, fields, retryAfter) {
    this.status = status;
    this.message = message;
    this.fields = fields || null;
    this.retryAfter = retryAfter;
  }
  ApiError.prototype = Object.create(Error.prototype);
  ApiError.prototype.constructor = ApiError;

  function token() { return sessionStorage.getItem(TOKEN_KEY); }

  // api calls the admin API. It resolves with the decoded JSON of a 2xx
  // answer and rejects with an ApiError otherwise. A 401 on any call but
  // the login means the token is dead: the page returns to the login form.
  function api(method, path, body) {
    var headers = { 'Accept': 'application/json', 'Hl': lang };
    var tok = token();
    if (tok && path !== '/auth/token') headers['Authorization'] = 'Bearer ' + tok;
    var init = { method: method, headers: headers, cache: 'no-store', credentials: 'omit' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    return fetch(API + path, init).then(function (res) {
      return res.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (res.ok) return data;
        var msg = data && typeof data.message === 'string' && data.message ? data.message : t('error.unexpected', { status: res.status });
        var retry = res.headers.get('Retry-After');
        var err = new ApiError(res.status, msg, data && data.errors, retry !== null && retry !== '' && !isNaN(retry) ? Number(retry) : null);
        if (res.status === 401 && path !== '/auth/token') sessionEnded();
        throw err;
      });
    }, function () {
      throw new ApiError(0, t('error.network'), null, null);
    });
  }

  // ---- State ----------------------------------------------------------

  var me = null;          // the signed-in technician (admin user object)
  var perms = {};         // their permission names
  var catalog = null;     // GET /permissions, loaded once when allowed
  var query = { page: 1, search: '' };
  var lastPage = 1;
  var usersSeq = 0;       // drops answers of superseded list requests

  function can(name) { return !!perms[name]; }

  // The box's rule (auth/authorize.go), so the page offers only what the
  // API allows: a technician acts on a user only when every permission
  // of that user is one of theirs, and on their own account changes only
  // the name and, with the current one, the password. The API enforces
  // it anyway; a refusal is shown in words.
  function isSelf(u) { return !!me && u.id === me.id; }
  function mayManage(u) {
    return (u.permissions || []).every(function (p) { return can(p.name); });
  }

  // loadCatalog fetches the permission catalog once, when the technician
  // may see it; it resolves either way, with catalog set or still null.
  var catalogLoad = null;
  function loadCatalog() {
    if (catalog || !can('permissions-view')) return Promise.resolve();
    if (!catalogLoad) {
      catalogLoad = api('GET', '/permissions').then(function (list) { catalog = list; }, function () {})
        .then(function () { catalogLoad = null; });
    }
    return catalogLoad;
  }

  // ---- Sign in and out ------------------------------------------------

  var retryTimer = 0;

  function showLogin(message) {
    me = null;
    closeAllDialogs();
    show($('app-view'), false);
    show($('whoami'), false);
    show($('login-view'), true);
    var box = $('login-error');
    if (message) { showError(box, new Error(message)); } else { showError(box, null); }
    $('login-password').value = '';
    $('login-login').focus();
  }

  function sessionEnded() {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(EXPIRES_KEY);
    if (me) showLogin(t('error.sessionEnded'));
  }

  function onLogin(ev) {
    ev.preventDefault();
    var login = $('login-login'), password = $('login-password'), button = $('login-submit');
    markInvalid(login, false);
    markInvalid(password, false);
    button.disabled = true;
    button.textContent = t('login.busy');
    api('POST', '/auth/token', { login: login.value, password: password.value }).then(function (res) {
      sessionStorage.setItem(TOKEN_KEY, res.access_token);
      sessionStorage.setItem(EXPIRES_KEY, res.expires_at);
      password.value = '';
      showError($('login-error'), null);
      enterApp(res.user, res.expires_at);
    }, function (err) {
      showError($('login-error'), err);
      if (err.fields) {
        markInvalid(login, !!err.fields.login);
        markInvalid(password, !!err.fields.password);
      }
      if (err.status === 429 && err.retryAfter) startRetryCountdown(err);
      (err.fields && err.fields.login ? login : password).focus();
    }).then(function () {
      if (!retryTimer) button.disabled = false;
      button.textContent = t('login.submit');
    });
  }

  // startRetryCountdown keeps a throttled login's wait time current and
  // holds the button until the box accepts tries again.
  function startRetryCountdown(err) {
    var until = Date.now() + err.retryAfter * 1000;
    var box = $('login-error'), button = $('login-submit');
    clearInterval(retryTimer);
    button.disabled = true;
    retryTimer = setInterval(function () {
      var left = (until - Date.now()) / 1000;
      if (left <= 0) {
        clearInterval(retryTimer);
        retryTimer = 0;
        button.disabled = false;
        showError(box, new Error(t('error.retryNow')));
        return;
      }
      showError(box, new ApiError(429, err.message, null, left));
    }, 1000);
  }

  function logout() {
    var done = function () {
      sessionStorage.removeItem(TOKEN_KEY);
      sessionStorage.removeItem(EXPIRES_KEY);
      showLogin(null);
    };
    // Even when the box cannot be reached the token leaves this tab.
    api('POST', '/auth/logout').then(done, done);
  }

  function enterApp(user, expiresAt) {
    me = user;
    perms = {};
    (user.permissions || []).forEach(function (p) { perms[p.name] = true; });
    renderProfile(expiresAt);
    show($('login-view'), false);
    show($('app-view'), true);
    show($('whoami'), true);
    show($('new-user'), can('users-create'));
    loadCatalog();
    query = { page: 1, search: '' };
    $('user-search').value = '';
    loadUsers();
  }

  function renderProfile(expiresAt) {
    $('whoami-name').textContent = me.name || me.login;
    $('profile-name').textContent = me.name || me.login;
    $('profile-login').textContent = me.login;
    $('profile-avatar').textContent = (me.name || me.login || '?').trim().charAt(0).toUpperCase();
    var exp = $('profile-expires');
    exp.textContent = shortTime(expiresAt);
    exp.dateTime = String(expiresAt || '').replace(' ', 'T');
    var list = me.permissions || [];
    $('profile-perms-summary').textContent = list.length ? t('profile.perms', { n: list.length }) : t('profile.noPerms');
    var box = $('profile-perms-list');
    clear(box);
    groupPermissions(list).forEach(function (g) {
      var ul = h('ul', { class: 'chips' });
      g.items.forEach(function (p) { ul.appendChild(h('li', { class: 'chip', title: p.name }, p.display_name || p.name)); });
      box.appendChild(h('div', { class: 'perm-group' }, h('h3', null, g.name), ul));
    });
  }

  function groupPermissions(list) {
    var groups = [], byName = {};
    list.forEach(function (p) {
      var g = byName[p.group];
      if (!g) { g = byName[p.group] = { name: p.group || '—', items: [] }; groups.push(g); }
      g.items.push(p);
    });
    return groups;
  }

  // ---- Users list -----------------------------------------------------

  function loadUsers() {
    var seq = ++usersSeq;
    var box = $('users-error');
    if (!can('users-view')) {
      clear($('users-body'));
      showError(box, new Error(t('users.noView')));
      show($('pager'), false);
      return Promise.resolve();
    }
    var qs = '?page=' + query.page + '&per_page=' + PER_PAGE;
    if (query.search) qs += '&search=' + encodeURIComponent(query.search);
    return api('GET', '/users' + qs).then(function (res) {
      if (seq !== usersSeq) return;
      showError(box, null);
      // A page emptied by a delete or a narrower search: go to the last
      // page that has users.
      if (res.data.length === 0 && res.current_page > 1 && res.last_page < res.current_page) {
        query.page = res.last_page;
        return loadUsers();
      }
      renderUsers(res);
    }, function (err) {
      if (seq !== usersSeq || err.status === 401) return;
      showError(box, err);
    });
  }

  function renderUsers(res) {
    var body = $('users-body');
    clear(body);
    res.data.forEach(function (u) { body.appendChild(userRow(u)); });
    show($('users-empty'), res.data.length === 0);
    show($('users-table'), res.data.length > 0);
    lastPage = res.last_page;
    show($('pager'), res.total > 0);
    show($('prev-page'), res.last_page > 1);
    show($('next-page'), res.last_page > 1);
    $('page-info').textContent = t('users.range', { from: res.from, to: res.to, total: res.total });
    $('prev-page').disabled = res.current_page <= 1;
    $('next-page').disabled = res.current_page >= res.last_page;
  }

  function isExpired(u) {
    // The server decides on its own clock, which the browser's may not
    // match; the date is only a fallback for a user object without it.
    if (typeof u.expired === 'boolean') return u.expired;
    if (!u.expired_at) return false;
    return u.expired_at <= localStamp(new Date());
  }

  function localStamp(d) {
    function p(n) { return (n < 10 ? '0' : '') + n; }
    return d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) + ' ' +
      p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds());
  }

  function userRow(u) {
    var self = me && u.id === me.id;
    var status = u.disabled ? 'disabled' : isExpired(u) ? 'expired' : 'active';
    var access = h('ul', { class: 'tags' });
    (u.apis || []).forEach(function (a) { access.appendChild(h('li', { class: 'tag tag-' + a }, t('api.' + a))); });
    if (!(u.apis || []).length) access.appendChild(h('li', { class: 'muted' }, t('none')));

    var actions = h('div', { class: 'row-actions' });
    var label = { login: u.login };
    var manage = mayManage(u);
    if (can('users-update') && manage) {
      actions.appendChild(h('button', { type: 'button', class: 'small', 'data-action': 'edit', 'aria-label': t('action.editFor', label), onclick: function () { openUserDialog(u); } }, t('action.edit')));
    }
    if (self) {
      // One's own password is changed with the current one.
      actions.appendChild(h('button', { type: 'button', class: 'small', 'data-action': 'password', 'aria-label': t('ownPassword.open'), onclick: openOwnPasswordDialog }, t('action.password')));
    } else if (can('users-update') && manage) {
      actions.appendChild(h('button', { type: 'button', class: 'small', 'data-action': 'password', 'aria-label': t('action.passwordFor', label), onclick: function () { openPasswordDialog(u); } }, t('action.password')));
    }
    if (can('sessions-view') && manage) {
      actions.appendChild(h('button', { type: 'button', class: 'small', 'data-action': 'sessions', 'aria-label': t('action.sessionsFor', label), onclick: function () { openSessions(u); } }, t('action.sessions')));
    }
    if (can('users-update') && manage && !self) {
      actions.appendChild(u.disabled
        ? h('button', { type: 'button', class: 'small', 'data-action': 'enable', 'aria-label': t('action.enableFor', label), onclick: function () { setDisabled(u, false); } }, t('action.enable'))
        : h('button', { type: 'button', class: 'small danger-text', 'data-action': 'disable', 'aria-label': t('action.disableFor', label), onclick: function () { setDisabled(u, true); } }, t('action.disable')));
    }

    return h('tr', { 'data-login': u.login, 'data-id': String(u.id), class: u.disabled ? 'is-disabled' : '' },
      h('td', { 'data-label': t('col.login'), class: 'cell-login' }, h('span', null,
        h('span', { class: 'login' }, u.login),
        self ? h('span', { class: 'you' }, t('you')) : null)),
      h('td', { 'data-label': t('col.name') }, u.name || ''),
      h('td', { 'data-label': t('col.access') }, access),
      h('td', { 'data-label': t('col.status') }, h('span', { class: 'badge badge-' + status }, t('status.' + status))),
      h('td', { 'data-label': t('col.expires'), class: 'nowrap' }, u.expired_at ? shortTime(u.expired_at) : h('span', { class: 'muted' }, t('never'))),
      h('td', { class: 'cell-actions' }, actions));
  }

  function setDisabled(u, disabled) {
    var label = { login: u.login };
    var ask = disabled ? confirmAction(t('confirm.disableTitle', label), t('confirm.disableText'), t('action.disable')) : Promise.resolve(true);
    ask.then(function (ok) {
      if (!ok) return;
      api('PATCH', '/users/' + u.id, { disabled: disabled }).then(function () {
        toast(t(disabled ? 'user.disabled' : 'user.enabled', label));
        loadUsers();
      }, function (err) {
        if (err.status === 401) return;
        afterRefusal(err).then(function () { showError($('users-error'), err); });
      });
    });
  }

  // ---- Dialogs --------------------------------------------------------

  function openDialog(d) {
    if (!d.open) d.showModal();
  }

  function closeAllDialogs() {
    each('dialog[open]', function (d) { d.close(); });
  }

  function markInvalid(input, bad) {
    if (bad) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  }

  // applyFieldErrors shows a 422's messages next to the form's fields
  // (prefix-field-error) and returns the messages of fields the form has
  // no place for.
  function applyFieldErrors(form, prefix, err, inputs) {
    each('#' + form.id + ' .field-error', function (p) { p.hidden = true; p.textContent = ''; });
    each('#' + form.id + ' [aria-invalid]', function (el) { markInvalid(el, false); });
    if (!err || !err.fields) return err;
    var rest = {}, restCount = 0, first = null;
    Object.keys(err.fields).forEach(function (f) {
      var p = $(prefix + '-' + f + '-error');
      // A field of the form that is not shown (the password when
      // editing) has no place for its message.
      if (p && !p.parentElement.closest('[hidden]')) {
        p.textContent = err.fields[f].join(' ');
        p.hidden = false;
        var input = inputs[f] && $(inputs[f]);
        if (input) {
          markInvalid(input, true);
          first = first || input;
        }
      } else {
        rest[f] = err.fields[f];
        restCount++;
      }
    });
    if (first) first.focus();
    if (restCount === 0) return new ApiError(err.status, err.message, null, null);
    return new ApiError(err.status, err.message, rest, null);
  }

  // confirmAction asks a yes/no question in a dialog and resolves with the
  // answer.
  function confirmAction(title, text, okLabel) {
    var d = $('confirm-dialog');
    $('confirm-title').textContent = title;
    $('confirm-text').textContent = text;
    $('confirm-ok').textContent = okLabel;
    d.returnValue = '';
    openDialog(d);
    $('confirm-cancel').focus();
    return new Promise(function (resolve) {
      d.addEventListener('close', function onClose() {
        d.removeEventListener('close', onClose);
        resolve(d.returnValue === 'ok');
      });
    });
  }

  // ---- Create and edit a user -----------------------------------------

  var editing = null; // the user being edited, or null when creating

  var USER_INPUTS = {
    login: 'uf-login', name: 'uf-name', password: 'uf-password',
    apis: 'uf-api-client', sessions_limit: 'uf-sessions-limit', ptz_priority: 'uf-ptz',
    expired_at: 'uf-expired-at', can_update_password: 'uf-can-update-password',
    disabled: 'uf-disabled', permissions: 'uf-perms'
  };

  function openUserDialog(u) {
    editing = u || null;
    var form = $('user-form');
    form.reset();
    applyFieldErrors(form, 'uf', null, USER_INPUTS);
    showError($('user-form-error'), null);
    var creating = !editing;
    $('user-dialog-title').textContent = creating ? t('user.createTitle') : t('user.editTitle', { login: u.login });
    $('uf-submit').textContent = creating ? t('user.create') : t('user.save');
    $('uf-login').readOnly = !creating;
    show($('uf-login-hint'), !creating);
    show($('uf-password-field'), creating);
    show($('uf-disabled-wrap'), !creating);
    var self = !creating && isSelf(u);
    show($('uf-delete'), !creating && can('users-destroy') && !self && mayManage(u));
    show($('uf-disabled-wrap'), !creating && !self);
    show($('uf-self-hint'), self);
    // On their own account only the name is theirs to change.
    each('#user-form input', function (el) {
      if (el.id !== 'uf-name' && el.id !== 'uf-login') el.disabled = self;
    });
    show($('uf-perms-all'), !self);
    show($('uf-perms-none'), !self);

    var apis = creating ? ['client'] : (u.apis || []);
    each('#user-form input[name=apis]', function (cb) { cb.checked = apis.indexOf(cb.value) >= 0; });
    $('uf-login').value = creating ? '' : u.login;
    $('uf-name').value = creating ? '' : (u.name || '');
    $('uf-sessions-limit').value = creating ? '' : String(u.sessions_limit);
    $('uf-ptz').value = creating ? '' : String(u.ptz_priority || 0);
    $('uf-expired-at').value = !creating && u.expired_at ? String(u.expired_at).replace(' ', 'T') : '';
    $('uf-can-update-password').checked = creating ? true : !!u.can_update_password;
    $('uf-disabled').checked = !creating && !!u.disabled;

    var have = {};
    (creating ? [] : (u.permissions || [])).forEach(function (p) { have[p.name] = true; });
    renderPermissionPicker(have);
    initialValues = formValues();
    if (!catalog && can('permissions-view')) {
      loadCatalog().then(function () {
        if (editing !== (u || null)) return;
        renderPermissionPicker(have);
        initialValues.permissions = formValues().permissions;
      });
    }

    openDialog($('user-dialog'));
    (creating ? $('uf-login') : $('uf-name')).focus();
  }

  function renderPermissionPicker(have) {
    var box = $('uf-perms');
    clear(box);
    var field = $('uf-perms-field');
    if (!catalog) {
      // Without the catalog the page cannot offer the full list; it keeps
      // the user's permissions as they are.
      show(field, can('permissions-view'));
      if (!can('permissions-view')) return;
      box.appendChild(h('p', { class: 'muted' }, t('user.noPermsView')));
      return;
    }
    show(field, true);
    groupPermissions(catalog).forEach(function (g) {
      var fs = h('fieldset', { class: 'perm-group' }, h('legend', null, g.name));
      g.items.forEach(function (p) {
        fs.appendChild(h('label', { title: p.name },
          // Only permissions the technician holds can be given.
          h('input', { type: 'checkbox', name: 'permissions', value: p.name, checked: !!have[p.name],
            disabled: !can(p.name) || (!!editing && isSelf(editing)) }),
          ' ', p.display_name || p.name));
      });
      box.appendChild(fs);
    });
  }

  function intOrNull(id) {
    var v = $(id).value.trim();
    if (v === '') return null;
    var n = Number(v);
    return Number.isInteger(n) ? n : v; // the API names a non-integer
  }

  // formValues reads the user form as the API takes it.
  function formValues() {
    var v = { name: $('uf-name').value.trim() };
    var apis = [];
    each('#user-form input[name=apis]', function (cb) { if (cb.checked) apis.push(cb.value); });
    v.apis = apis;
    var limit = intOrNull('uf-sessions-limit');
    if (limit !== null) v.sessions_limit = limit;
    var ptz = intOrNull('uf-ptz');
    if (ptz !== null) v.ptz_priority = ptz;
    var exp = $('uf-expired-at').value;
    // datetime-local gives "YYYY-MM-DDTHH:MM[:SS]"; the API takes
    // "YYYY-MM-DD HH:MM:SS" in the box's time.
    v.expired_at = exp ? (exp.replace('T', ' ') + (exp.length === 16 ? ':00' : '')) : null;
    v.can_update_password = $('uf-can-update-password').checked;
    if (catalog) {
      var names = [];
      each('#uf-perms input[name=permissions]', function (cb) { if (cb.checked) names.push(cb.value); });
      v.permissions = names;
    }
    if (editing && editing.id !== me.id) v.disabled = $('uf-disabled').checked;
    return v;
  }

  // userBody is the request body: everything for a new user; for an edit
  // only the fields the technician changed, so an untouched field keeps
  // what is stored (the API shows an unset session limit as the default 5,
  // and sending it back would pin it).
  var initialValues = null;
  function userBody() {
    var v = formValues();
    if (!editing) {
      v.login = $('uf-login').value.trim();
      v.password = $('uf-password').value;
      if (!v.name) delete v.name; // the login then names the user
      return v;
    }
    var body = {};
    Object.keys(v).forEach(function (k) {
      if (!initialValues || JSON.stringify(v[k]) !== JSON.stringify(initialValues[k])) body[k] = v[k];
    });
    return body;
  }

  function onUserSubmit(ev) {
    ev.preventDefault();
    var form = $('user-form'), button = $('uf-submit');
    var body = userBody();
    var req = editing ? api('PATCH', '/users/' + editing.id, body) : api('POST', '/users', body);
    button.disabled = true;
    req.then(function (u) {
      $('user-dialog').close();
      toast(t(editing ? 'user.saved' : 'user.created', { login: u.login }));
      if (editing && editing.id === me.id) refreshMe();
      loadUsers();
    }, function (err) {
      if (err.status === 401) return;
      showError($('user-form-error'), applyFieldErrors(form, 'uf', err, USER_INPUTS));
      afterRefusal(err);
    }).then(function () { button.disabled = false; });
  }

  function onDeleteUser() {
    var u = editing;
    if (!u) return;
    var label = { login: u.login };
    confirmAction(t('confirm.deleteTitle', label), t('confirm.deleteText'), t('confirm.delete')).then(function (ok) {
      if (!ok) return;
      api('DELETE', '/users/' + u.id).then(function () {
        $('user-dialog').close();
        toast(t('user.deleted', label));
        loadUsers();
      }, function (err) {
        if (err.status === 401) return;
        showError($('user-form-error'), err);
        afterRefusal(err);
      });
    });
  }

  // refreshMe reloads the technician after they edited their own account.
  function refreshMe() {
    return api('GET', '/auth/user').then(function (u) {
      me = u;
      perms = {};
      (u.permissions || []).forEach(function (p) { perms[p.name] = true; });
      renderProfile(sessionStorage.getItem(EXPIRES_KEY));
      show($('new-user'), can('users-create'));
    }, function () {});
  }

  // afterRefusal brings the page up to date after the box refused an
  // action the page offered (403): the user, or the technician's own
  // permissions, changed since the list was drawn.
  function afterRefusal(err) {
    if (err.status !== 403) return Promise.resolve();
    return refreshMe().then(loadUsers);
  }

  // ---- Password -------------------------------------------------------

  var passwordFor = null;
  var PASSWORD_INPUTS = { password: 'pw-new', confirm: 'pw-confirm' };

  function openPasswordDialog(u) {
    passwordFor = u;
    var form = $('password-form');
    form.reset();
    applyFieldErrors(form, 'pw', null, PASSWORD_INPUTS);
    showError($('password-form-error'), null);
    $('password-dialog-title').textContent = t('password.title', { login: u.login });
    openDialog($('password-dialog'));
    $('pw-new').focus();
  }

  function onPasswordSubmit(ev) {
    ev.preventDefault();
    var form = $('password-form'), u = passwordFor, button = $('pw-submit');
    var pw = $('pw-new').value;
    if (pw !== $('pw-confirm').value) {
      applyFieldErrors(form, 'pw', { fields: { confirm: [t('password.mismatch')] } }, PASSWORD_INPUTS);
      return;
    }
    button.disabled = true;
    api('POST', '/users/' + u.id + '/password', { password: pw }).then(function () {
      $('password-dialog').close();
      toast(t('password.done', { login: u.login }));
    }, function (err) {
      if (err.status === 401) return;
      showError($('password-form-error'), applyFieldErrors(form, 'pw', err, PASSWORD_INPUTS));
      afterRefusal(err);
    }).then(function () { button.disabled = false; });
  }

  // ---- My own password ------------------------------------------------

  var OWN_PASSWORD_INPUTS = { current_password: 'op-current', password: 'op-new', confirm: 'op-confirm' };

  function openOwnPasswordDialog() {
    var form = $('own-password-form');
    form.reset();
    applyFieldErrors(form, 'op', null, OWN_PASSWORD_INPUTS);
    showError($('own-password-form-error'), null);
    openDialog($('own-password-dialog'));
    $('op-current').focus();
  }

  function onOwnPasswordSubmit(ev) {
    ev.preventDefault();
    var form = $('own-password-form'), button = $('op-submit');
    var pw = $('op-new').value;
    if (pw !== $('op-confirm').value) {
      applyFieldErrors(form, 'op', { fields: { confirm: [t('password.mismatch')] } }, OWN_PASSWORD_INPUTS);
      return;
    }
    button.disabled = true;
    api('POST', '/auth/password', { current_password: $('op-current').value, password: pw }).then(function () {
      // Every session of the technician ended, this page's too.
      sessionStorage.removeItem(TOKEN_KEY);
      sessionStorage.removeItem(EXPIRES_KEY);
      showLogin(t('ownPassword.done'));
    }, function (err) {
      if (err.status === 401) return;
      showError($('own-password-form-error'), applyFieldErrors(form, 'op', err, OWN_PASSWORD_INPUTS));
    }).then(function () { button.disabled = false; });
  }

  // ---- Sessions -------------------------------------------------------

  var sessionsOf = null;

  function openSessions(u) {
    sessionsOf = u;
    $('sessions-dialog-title').textContent = t('sessions.title', { login: u.login });
    clear($('sessions-body'));
    show($('sessions-empty'), false);
    showError($('sessions-error'), null);
    openDialog($('sessions-dialog'));
    loadSessions();
  }

  function loadSessions() {
    var u = sessionsOf;
    return api('GET', '/users/' + u.id + '/sessions').then(function (list) {
      if (sessionsOf !== u) return;
      showError($('sessions-error'), null);
      var body = $('sessions-body');
      clear(body);
      list.forEach(function (s) { body.appendChild(sessionRow(s)); });
      show($('sessions-table'), list.length > 0);
      show($('sessions-empty'), list.length === 0);
    }, function (err) {
      if (err.status !== 401) showError($('sessions-error'), err);
    });
  }

  function sessionRow(s) {
    var device = h('div', { class: 'device' },
      h('span', { class: 'device-client' }, s.client || t('sessions.unknownDevice')),
      s.is_current ? h('span', { class: 'badge badge-active' }, t('sessions.current')) : null,
      s.user_agent ? h('span', { class: 'device-ua', title: s.user_agent }, s.user_agent) : null);
    var last = h('span', null,
      s.online ? h('span', { class: 'dot', 'aria-hidden': 'true' }) : null,
      shortTime(s.last),
      s.online ? h('span', { class: 'visually-hidden' }, ' (' + t('sessions.online') + ')') : null);
    var end = null;
    if (can('sessions-destroy')) {
      end = h('button', { type: 'button', class: 'small danger-text', 'data-action': 'end-session',
        'aria-label': t('sessions.endFor', { device: s.client || t('sessions.unknownDevice'), ip: s.ip || '—' }), onclick: function () { endSession(s, end); } }, t('sessions.end'));
    }
    return h('tr', { 'data-session-id': s.id },
      h('td', { 'data-label': t('col.device') }, device),
      h('td', { 'data-label': t('col.api') }, t('apiShort.' + s.api)),
      h('td', { 'data-label': t('col.ip'), class: 'mono' }, s.ip || '—'),
      h('td', { 'data-label': t('col.last'), class: 'nowrap' }, last),
      h('td', { 'data-label': t('col.sessionExpires'), class: 'nowrap' }, shortTime(s.expires_at)),
      h('td', { class: 'cell-actions' }, end));
  }

  function endSession(s, button) {
    var ask = s.is_current ? confirmAction(t('confirm.endOwnTitle'), t('confirm.endOwnText'), t('sessions.end')) : Promise.resolve(true);
    ask.then(function (ok) {
      if (!ok) return;
      button.disabled = true;
      api('DELETE', '/sessions/' + encodeURIComponent(s.id)).then(function () {
        if (s.is_current) { sessionEnded(); return; }
        toast(t('sessions.ended'));
        loadSessions();
      }, function (err) {
        button.disabled = false;
        if (err.status === 404) { loadSessions(); return; } // already gone
        if (err.status !== 401) showError($('sessions-error'), err);
      });
    });
  }

  // ---- Start ----------------------------------------------------------

  function init() {
    translatePage();
    $('login-form').addEventListener('submit', onLogin);
    $('logout').addEventListener('click', logout);
    $('new-user').addEventListener('click', function () { openUserDialog(null); });
    $('user-form').addEventListener('submit', onUserSubmit);
    $('uf-delete').addEventListener('click', onDeleteUser);
    $('uf-perms-all').addEventListener('click', function () { each('#uf-perms input:not(:disabled)', function (cb) { cb.checked = true; }); });
    $('uf-perms-none').addEventListener('click', function () { each('#uf-perms input:not(:disabled)', function (cb) { cb.checked = false; }); });
    $('change-password').addEventListener('click', openOwnPasswordDialog);
    $('own-password-form').addEventListener('submit', onOwnPasswordSubmit);
    $('password-form').addEventListener('submit', onPasswordSubmit);
    $('sessions-refresh').addEventListener('click', loadSessions);
    $('prev-page').addEventListener('click', function () { if (query.page > 1) { query.page--; loadUsers(); } });
    $('next-page').addEventListener('click', function () { if (query.page < lastPage) { query.page++; loadUsers(); } });
    each('[data-close]', function (b) { b.addEventListener('click', function () { b.closest('dialog').close(); }); });

    var searchTimer = 0;
    $('search-form').addEventListener('submit', function (ev) { ev.preventDefault(); });
    $('user-search').addEventListener('input', function () {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(function () {
        query.search = $('user-search').value.trim();
        query.page = 1;
        loadUsers();
      }, 250);
    });

    if (!token()) { showLogin(null); return; }
    // A reload keeps the tab's token: check it is still good.
    api('GET', '/auth/user').then(function (u) {
      enterApp(u, sessionStorage.getItem(EXPIRES_KEY));
    }, function (err) {
      sessionStorage.removeItem(TOKEN_KEY);
      sessionStorage.removeItem(EXPIRES_KEY);
      showLogin(err.status === 401 ? null : errorLines(err)[0]);
    });
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
