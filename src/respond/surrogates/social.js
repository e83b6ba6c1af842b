/* nostalk surrogate for a social widget script (Facebook SDK, X/Twitter widgets.js, LinkedIn,
   Pinterest, Instagram, TikTok, Disqus, share bars): the network saw nothing. Where the page
   expected a widget, a placeholder says so. Its button is a small frame of the network's
   origin that the proxy answers: page script can neither read nor click into it, so only a
   person's click there makes the proxy let this client load the real script, once. The frame
   then tells this script, which puts the widget back and loads it. A page that forges that
   message only makes this script ask for the real one, which the proxy still refuses. The
   other widgets stay out of the page until they are clicked. */
(function (w, d) {
  'use strict';
  var c = __NOSTALK_SOCIAL__;
  function placeholder(el) {
    var box = d.createElement('div');
    box.setAttribute('data-nostalk-placeholder', c.network);
    box.style.cssText = 'box-sizing:border-box;max-width:32em;margin:.5em 0;padding:.8em 1em;' +
      'border:1px solid #ccc;border-radius:6px;background:#f7f7f7;color:#333;' +
      'font:14px/1.4 system-ui,sans-serif;text-align:left';
    var p = d.createElement('p');
    p.style.margin = '0 0 .6em';
    p.textContent = 'nostalk kept ' + c.network + ' from loading here, so it did not learn you read this page.';
    var f = d.createElement('iframe');
    f.src = c.frame;
    f.title = 'Load this ' + c.network + ' widget';
    f.style.cssText = 'display:block;border:0;width:20em;max-width:100%;height:2.4em;overflow:hidden';
    w.addEventListener('message', function (e) {
      if (e.source !== f.contentWindow || e.data !== 'nostalk-widget-go') { return; }
      restore(el, box);
    });
    box.appendChild(p);
    /* The button's frame comes once the page has loaded: a frame of another site is a
       process of its own in a browser that isolates sites, and the page's load would
       wait for it. */
    if (d.readyState === 'complete') {
      box.appendChild(f);
    } else {
      w.addEventListener('load', function () { box.appendChild(f); });
    }
    return box;
  }
  function hold(el) {
    if (el.getAttribute('data-nostalk-held') || !el.parentNode) { return; }
    el.setAttribute('data-nostalk-held', '1');
    var box = placeholder(el);
    el.parentNode.insertBefore(box, el);
    el.parentNode.removeChild(el);
  }
  function restore(el, box) {
    if (!box.parentNode) { return; }
    box.parentNode.insertBefore(el, box);
    box.parentNode.removeChild(box);
    /* Were the proxy to refuse the script (a forged message), its surrogate holds this again. */
    el.removeAttribute('data-nostalk-held');
    /* The real script is already here: ask it to build the widget just put back. Otherwise
       load it (again, if a forged message had asked for it before the person's click). */
    if (!rescan(el)) {
      var s = d.createElement('script');
      s.async = true;
      s.src = c.script;
      (d.head || d.documentElement).appendChild(s);
    }
  }
  function rescan(el) {
    var found = false;
    try {
      if (w.twttr && w.twttr.widgets) { found = true; w.twttr.widgets.load(el.parentNode); }
      if (w.FB && w.FB.XFBML) { found = true; w.FB.XFBML.parse(el.parentNode); }
      if (w.instgrm && w.instgrm.Embeds) { found = true; w.instgrm.Embeds.process(); }
      if (w.IN && w.IN.parse) { found = true; w.IN.parse(el.parentNode); }
      if (w.PinUtils && w.PinUtils.build) { found = true; w.PinUtils.build(el.parentNode); }
      if (w.DISQUS && w.DISQUS.reset) { found = true; w.DISQUS.reset({ reload: true }); }
    } catch (ignored) { /* the widget's own API changed: the placeholder is gone all the same */ }
    return found;
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
