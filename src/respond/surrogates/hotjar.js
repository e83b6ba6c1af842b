/* nostalk surrogate for Hotjar: hj() works, nothing is recorded or sent. */
(function (w) {
  'use strict';
  var hj = function () {};
  hj.q = [];
  w.hj = hj;
  w._hjSettings = w._hjSettings || {};
  w.hjSiteSettings = w.hjSiteSettings || {};
})(window);
