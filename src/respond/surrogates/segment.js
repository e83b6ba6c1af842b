/* nostalk surrogate for Segment analytics.js: every method exists, nothing is sent. */
(function (w) {
  'use strict';
  var noop = function () {};
  var analytics = w.analytics && Array.isArray(w.analytics) ? w.analytics : [];
  var queued = analytics.slice ? analytics.slice() : [];
  var methods = ['track', 'page', 'identify', 'group', 'alias', 'reset', 'debug', 'trackLink', 'trackForm',
    'trackSubmit', 'trackClick', 'screen', 'once', 'off', 'on', 'addSourceMiddleware', 'addIntegrationMiddleware',
    'setAnonymousId', 'addDestinationMiddleware', 'load', 'register', 'deregister'];
  var api = {};
  methods.forEach(function (m) { api[m] = noop; });
  ['track', 'page', 'identify', 'group', 'alias', 'screen'].forEach(function (m) {
    api[m] = function () {
      var cb = arguments[arguments.length - 1];
      if (typeof cb === 'function') { try { setTimeout(cb, 0); } catch (e) {} }
      return Promise.resolve();
    };
  });
  api.ready = function (cb) { if (typeof cb === 'function') { try { setTimeout(cb, 0); } catch (e) {} } };
  api.user = function () { return { id: function () { return null; }, anonymousId: function () { return null; }, traits: function () { return {}; } }; };
  api.initialized = true;
  api.invoked = true;
  api.SNIPPET_VERSION = analytics.SNIPPET_VERSION;
  w.analytics = api;
  void queued;
})(window);
