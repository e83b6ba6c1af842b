/* nostalk surrogate for a social widget script (Facebook SDK, X/Twitter widgets.js, LinkedIn,
   Pinterest, Instagram, TikTok, Disqus, share bars): the network saw nothing. Where the page
   expected a widget, a placeholder says so; a click on it (a person's, not a script's) puts
   that widget back and loads the real script once, through a one-time pass the proxy checks
   and takes off. The other widgets stay out of the page until they are clicked. */
(function (w, d) {
  'use strict';
  var c = __NOSTALK_SOCIAL__;
  var held = [];
  var loaded = false;
  function placeholder(el) {
    var box = d.createElement('div');
    box.setAttribute('data-nostalk-placeholder', c.network);
    box.style.cssText = 'box-sizing:border-box;max-width:32em;margin:.5em 0;padding:.8em 1em;' +
      'border:1px solid #ccc;border-radius:6px;background:#f7f7f7;color:#333;' +
      'font:14px/1.4 system-ui,sans-serif;text-align:left';
    var p = d.createElement('p');
    p.style.margin = '0 0 .6em';
    p.textContent = 'nostalk kept ' + c.network + ' from loading here, so it did not learn you read this page.';
    var b = d.createElement('button');
    b.type = 'button';
    b.textContent = 'Load this ' + c.network + ' widget';
    b.style.cssText = 'font:inherit;padding:.3em .8em;cursor:pointer';
    b.addEventListener('click', function (e) {
      if (!e.isTrusted) { return; }
      restore(el, box);
    });
    box.appendChild(p);
    box.appendChild(b);
    return box;
  }
  function hold(el) {
    if (el.getAttribute('data-nostalk-held') || !el.parentNode) { return; }
    el.setAttribute('data-nostalk-held', '1');
    var box = placeholder(el);
    el.parentNode.insertBefore(box, el);
    el.parentNode.removeChild(el);
    held.push(el);
  }
  function restore(el, box) {
    if (!box.parentNode) { return; }
    box.parentNode.insertBefore(el, box);
    box.parentNode.removeChild(box);
    if (!loaded) {
      loaded = true;
      var s = d.createElement('script');
      s.async = true;
      s.src = c.pass;
      (d.head || d.documentElement).appendChild(s);
    } else {
      rescan(el);
    }
  }
  /* The real script is already here: ask it to build the widget just put back. */
  function rescan(el) {
    try {
      if (w.twttr && w.twttr.widgets) { w.twttr.widgets.load(el.parentNode); }
      if (w.FB && w.FB.XFBML) { w.FB.XFBML.parse(el.parentNode); }
      if (w.instgrm && w.instgrm.Embeds) { w.instgrm.Embeds.process(); }
      if (w.IN && w.IN.parse) { w.IN.parse(el.parentNode); }
      if (w.PinUtils && w.PinUtils.build) { w.PinUtils.build(el.parentNode); }
      if (w.DISQUS && w.DISQUS.reset) { w.DISQUS.reset({ reload: true }); }
    } catch (ignored) { /* the widget's own API changed: the placeholder is gone all the same */ }
  }
  function scan() {
    if (!c.selector) { return; }
    var found = d.querySelectorAll(c.selector);
    for (var i = 0; i < found.length; i++) { hold(found[i]); }
  }
  if (d.readyState === 'loading') {
    d.addEventListener('DOMContentLoaded', scan);
  } else {
    scan();
  }
})(window, document);
