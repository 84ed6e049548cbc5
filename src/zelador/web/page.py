# ruff: noqa: E501  (the page's inline JavaScript keeps its own line lengths)
"""The status page: one HTML document, no external assets (works offline, on a phone). It polls
/api/status every 2 s, every 15 s while the tab is hidden; every text is set with textContent
(never innerHTML), so a program's name or a job's message cannot inject markup."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>zelador</title>
<style>
body{font:15px/1.4 system-ui,sans-serif;margin:0;padding:12px;background:#f6f7f9;color:#222}
h1{font-size:18px;margin:0 0 4px}h2{font-size:15px;margin:18px 0 6px}
#summary{color:#555;margin-bottom:8px}
table{border-collapse:collapse;width:100%;background:#fff;font-size:14px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e3e5e8;vertical-align:top}
th{background:#eceef1;font-weight:600}
.RUNNING,.OK{color:#12703a;font-weight:600}.FATAL,.FAIL,.TIMEOUT,.MISSED,.FAILING{color:#b3261e;font-weight:600}
.BACKOFF,.STARTING,.STOPPING,.WAITING,.PENDING,.NEW{color:#9a6700;font-weight:600}
.wrap{overflow-x:auto}#stale{color:#b3261e;display:none}
@media (max-width:600px){.wide{display:none}}
</style></head><body>
<h1>zelador on <span id="host"></span></h1>
<div id="summary"></div><div id="stale">no answer from zelador: showing the last known state</div>
<h2>Programs</h2><div class="wrap"><table id="programs"><thead><tr><th>program</th><th>state</th>
<th class="wide">pid</th><th>uptime</th><th>restarts</th><th class="wide">last exit / note</th></tr></thead>
<tbody></tbody></table></div>
<h2>Jobs</h2><div class="wrap"><table id="jobs"><thead><tr><th>job</th><th>state</th>
<th>last run</th><th class="wide">next expected</th></tr></thead><tbody></tbody></table></div>
<h2>Checks</h2><div class="wrap"><table id="checks"><thead><tr><th>check</th><th>state</th>
<th>value</th><th class="wide">last result</th></tr></thead><tbody></tbody></table></div>
<h2>Open problems</h2><div class="wrap"><table id="incidents"><thead><tr><th>what</th>
<th>since</th><th class="wide">message</th></tr></thead><tbody></tbody></table></div>
<h2>Latest events</h2><div class="wrap"><table id="events"><thead><tr><th>when</th>
<th>event</th><th class="wide">message</th></tr></thead><tbody></tbody></table></div>
<script>
"use strict";
function span(s){if(s==null)return "-";s=Math.round(s);var d=Math.floor(s/86400),h=Math.floor(s%86400/3600),m=Math.floor(s%3600/60);
 return d?d+"d "+h+"h":h?h+"h "+m+"m":m?m+"m "+(s%60)+"s":s+"s"}
function when(t){if(t==null)return "-";var d=new Date(t*1000);
 return d.toDateString()===new Date().toDateString()?d.toLocaleTimeString():d.toLocaleString()}
function fill(id,rows){var body=document.querySelector("#"+id+" tbody");body.textContent="";
 rows.forEach(function(r){var tr=document.createElement("tr");r.forEach(function(c,i){
  var td=document.createElement("td");td.textContent=c[0];if(c[1])td.className=c[1];tr.appendChild(td)});
  body.appendChild(tr)});}
function show(d){
 document.getElementById("host").textContent=d.host||"";
 document.getElementById("summary").textContent=d.summary||"";
 fill("programs",(d.programs||[]).map(function(p){return [[p.name],[p.state,p.state],[p.pid==null?"-":String(p.pid),"wide"],
  [span(p.uptime)],[String(p.restarts)],[p.reason||p.last_exit||"","wide"]]}));
 if(d.control_token)addButtons(d);
 fill("jobs",(d.jobs||[]).map(function(j){var l=j.last;return [[j.name],[j.state,j.state],
  [l?l.result+" "+when(l.ended):"-"],[j.expected_text||"-","wide"]]}));
 fill("checks",(d.checks||[]).map(function(c){return [[c.name],[c.state,c.state],[c.value||"-"],[c.reason||"","wide"]]}));
 fill("incidents",(d.incidents||[]).map(function(i){return [[i.subject+" "+i.problem],[when(i.opened)],[i.message,"wide"]]}));
 fill("events",(d.events||[]).map(function(e){return [[when(e.time)],[e.kind],[e.message,"wide"]]}));
}
function addButtons(d){var rows=document.querySelectorAll("#programs tbody tr");
 (d.programs||[]).forEach(function(p,i){var td=document.createElement("td");
  ["restart","stop","start"].forEach(function(verb){var b=document.createElement("button");
   b.textContent=verb;b.addEventListener("click",function(){
    if(!confirm(verb+" "+p.name+"?"))return;
    fetch("api/control",{method:"POST",credentials:"same-origin",headers:{"Content-Type":"application/json",
     "X-CSRF-Token":d.control_token},body:JSON.stringify({program:p.name,verb:verb})}).then(function(r){
     return r.json()}).then(function(a){if(a.error)alert(a.error);clearTimeout(timer);poll()})});
   td.appendChild(b)});rows[i].appendChild(td)})}
var timer=null;
function poll(){fetch("api/status",{cache:"no-store",credentials:"same-origin"}).then(function(r){
  if(!r.ok)throw new Error(r.status);return r.json()}).then(function(d){
  document.getElementById("stale").style.display="none";show(d)}).catch(function(){
  document.getElementById("stale").style.display="block"}).finally(function(){
  timer=setTimeout(poll,document.hidden?15000:2000)})}
document.addEventListener("visibilitychange",function(){if(!document.hidden){clearTimeout(timer);poll()}});
poll();
</script></body></html>
"""
