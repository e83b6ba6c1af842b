/* nostalk surrogate for the Facebook pixel (fbevents.js): fbq() works, nothing is sent. */
(function (w) {
  'use strict';
  var fbq = function () {};
  fbq.callMethod = fbq;
  fbq.queue = [];
  fbq.push = fbq;
  fbq.loaded = true;
  fbq.version = '2.0';
  fbq.instance = { pixelsByID: {} };
  fbq.getState = function () { return { pixels: [] }; };
  w.fbq = fbq;
  if (!w._fbq) { w._fbq = fbq; }
})(window);
