(function(W){
function gpc(w){try{Object.defineProperty(w.Navigator.prototype,'globalPrivacyControl',{get:function(){return true},configurable:true,enumerable:true})}catch(e){}}
var P=W.performance,byName=P&&P.getEntriesByName?P.getEntriesByName.bind(P):null,marked={},jar={},E=W.Error,re=/(https?:\/\/[^\s()]+?):\d+:\d+/g;
function mark(e){var t=e.serverTiming||[],m=false;for(var i=0;i<t.length;i++){if(t[i].name==='nostalk'&&t[i].description==='listed'){m=true}}marked[e.name]=marked[e.name]||m}
try{new W.PerformanceObserver(function(l){l.getEntries().forEach(mark)}).observe({type:'resource',buffered:true})}catch(e){}
function listed(u){if(!(u in marked)&&byName){byName(u,'resource').forEach(mark)}return marked[u]===true}
function byListed(){var s='',l=E.stackTraceLimit,p=E.prepareStackTrace,m;try{E.stackTraceLimit=50;E.prepareStackTrace=undefined;s=String(new E().stack)}catch(e){}finally{E.stackTraceLimit=l;E.prepareStackTrace=p}re.lastIndex=0;while((m=re.exec(s))){if(listed(m[1])){return true}}return false}
function keep(v){var parts=String(v).split(';'),kv=parts[0],i=kv.indexOf('=');if(i<1){return}var k=kv.slice(0,i).trim(),gone=parts.slice(1).some(function(p){p=p.trim().toLowerCase();return p==='max-age=0'||p.indexOf('max-age=-')===0});if(gone){delete jar[k]}else{jar[k]=kv.slice(i+1).trim()}}
function guard(w){try{var D=w.Document.prototype,c=Object.getOwnPropertyDescriptor(D,'cookie');if(!c||!c.get||c.get.nostalk){return}var g=function(){var a=c.get.call(this),b=Object.keys(jar).map(function(k){return k+'='+jar[k]}).join('; ');return a&&b?a+'; '+b:a||b};g.nostalk=1;Object.defineProperty(D,'cookie',{get:g,set:function(v){if(byListed()){keep(v);return}c.set.call(this,v)},configurable:true,enumerable:true});var S=w.CookieStore&&w.CookieStore.prototype,s=S&&S.set;if(s){S.set=function(){if(byListed()){return Promise.resolve()}return s.apply(this,arguments)}}}catch(e){}}
var L={'unsafe-url':1,'no-referrer-when-downgrade':1,'origin':1,'origin-when-cross-origin':1,'always':1,'origin-when-crossorigin':1};
function tight(e){if(e.nodeType!==1){return}var m=e.tagName==='META',a=m?'content':'referrerpolicy';if(m&&String(e.getAttribute('name')).trim().toLowerCase()!=='referrer'){return}var v=e.getAttribute(a);if(v!==null&&L[v.trim().toLowerCase()]){e.setAttribute(a,'strict-origin-when-cross-origin')}}
function sweep(n){if(n.nodeType!==1){return}tight(n);var l=n.querySelectorAll?n.querySelectorAll('meta[name],[referrerpolicy]'):[];for(var i=0;i<l.length;i++){tight(l[i])}}
try{new W.MutationObserver(function(ms){for(var i=0;i<ms.length;i++){var m=ms[i];if(m.type==='attributes'){tight(m.target)}else{for(var j=0;j<m.addedNodes.length;j++){sweep(m.addedNodes[j])}}}}).observe(W.document,{subtree:true,childList:true,attributes:true,attributeFilter:['referrerpolicy','content','name']})}catch(e){}
function frame(w){gpc(w);guard(w)}
frame(W);
try{var d=Object.getOwnPropertyDescriptor(HTMLIFrameElement.prototype,'contentWindow');Object.defineProperty(HTMLIFrameElement.prototype,'contentWindow',{get:function(){var w=d.get.call(this);if(w){try{frame(w)}catch(e){}}return w},configurable:true,enumerable:true})}catch(e){}
W.document.addEventListener('load',function(e){var t=e.target;if(t&&(t.tagName==='IFRAME'||t.tagName==='FRAME')){try{frame(t.contentWindow)}catch(x){}}},true)
})(window);
