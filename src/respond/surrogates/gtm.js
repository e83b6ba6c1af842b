/* nostalk surrogate for Google Tag Manager: the API stays, nothing is loaded or sent. */
(function (w) {
  'use strict';
  w.dataLayer = w.dataLayer || [];
  w.google_tag_manager = w.google_tag_manager || {};
  var push = function (o) {
    if (o && typeof o.eventCallback === 'function') { try { setTimeout(o.eventCallback, 0); } catch (e) {} }
    return Array.prototype.push.call(this, o);
  };
  w.dataLayer.push = push;
  for (var i = 0; i < w.dataLayer.length; i++) {
    var o = w.dataLayer[i];
    if (o && typeof o.eventCallback === 'function') { try { setTimeout(o.eventCallback, 0); } catch (e) {} }
  }
})(window);
