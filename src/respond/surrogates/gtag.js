/* nostalk surrogate for gtag.js: the API stays, nothing is sent. */
(function (w) {
  'use strict';
  var noop = function () {};
  w.dataLayer = w.dataLayer || [];
  var done = function (args) {
    for (var i = 0; i < args.length; i++) {
      var a = args[i];
      if (a && typeof a === 'object' && typeof a.event_callback === 'function') {
        try { setTimeout(a.event_callback, 0); } catch (e) {}
      }
    }
  };
  w.gtag = function () { done(arguments); };
  w.ga = w.ga || function () {
    var a = arguments[arguments.length - 1];
    if (a && typeof a.hitCallback === 'function') { try { setTimeout(a.hitCallback, 0); } catch (e) {} }
  };
  w.google_tag_manager = w.google_tag_manager || {};
  w.google_tag_data = w.google_tag_data || {};
  w.dataLayer.push = function (o) {
    if (o && typeof o.eventCallback === 'function') { try { setTimeout(o.eventCallback, 0); } catch (e) {} }
    return Array.prototype.push.call(this, o);
  };
  void noop;
})(window);
