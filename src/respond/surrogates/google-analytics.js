/* nostalk surrogate for analytics.js (Universal Analytics): the API stays, nothing is sent. */
(function (w) {
  'use strict';
  var noop = function () {};
  var tracker = { get: noop, set: noop, send: noop };
  var ga = function () {
    var a = arguments[arguments.length - 1];
    if (typeof a === 'function') { try { a(tracker); } catch (e) {} return; }
    if (a && typeof a.hitCallback === 'function') { try { setTimeout(a.hitCallback, 0); } catch (e) {} }
  };
  ga.create = function () { return tracker; };
  ga.getByName = function () { return tracker; };
  ga.getAll = function () { return [tracker]; };
  ga.remove = noop;
  ga.loaded = true;
  var name = w.GoogleAnalyticsObject || 'ga';
  var queue = w[name] && w[name].q;
  w[name] = ga;
  if (name !== 'ga') { w.ga = ga; }
  if (Array.isArray(queue)) {
    for (var i = 0; i < queue.length; i++) { try { ga.apply(null, queue[i]); } catch (e) {} }
  }
})(window);
