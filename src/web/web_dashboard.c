/* GET /dashboard: one self-contained HTML page that shows, live, what the fleet is doing -- queue
 * depth, workers running and starting, throughput and latency over the last 5 minutes. It is what a
 * user watches while the fleet scales.
 *
 * Design:
 *   - The page is compiled into the binary, as the C strings below (HTML, CSS and a little
 *     JavaScript, kept readable rather than minified), so the web tier serves it with nothing to
 *     install, no build step and no file to find at run time. It loads nothing from anywhere: no CDN,
 *     no font, no image. It is split into pieces under the 4095 bytes that C17 promises for a string
 *     literal (-Wpedantic's -Woverlength-strings), and MHD sends the pieces as an iovec, unchanged and
 *     uncopied.
 *   - Its one source of truth is GET /metrics: the script polls it every second, parses the
 *     Prometheus text in about 20 lines, keeps at most 330 samples (5 minutes) and draws inline SVG
 *     polylines. A GET /dashboard.json would have been less JavaScript, but a second rendering of the
 *     same numbers that can drift from what Prometheus scrapes; rejected.
 *   - Throughput and latency come from imgcls_upload_duration_seconds (POST / alone), not from the
 *     all-routes histogram: the page's own polling would otherwise read as a request a second of 1 ms.
 *   - Content-Security-Policy: default-src 'none', the script and the style allowed by their SHA-256
 *     (no 'unsafe-inline'), connect-src 'self' for the polling. So even a bug in the page cannot make
 *     the browser fetch from another origin. The hashes are computed per request over the very bytes
 *     sent (some 10 us), so they cannot go stale when the page is edited; caching them would need a
 *     global or a slot in web_server for no measurable gain.
 *   - Ids are stable (queue-visible, queue-in-flight, workers-running, workers-starting, throughput,
 *     latency, ..., chart and its line-* polylines): tests/e2e/test_dashboard.py reads them from the
 *     DOM that headless Chromium renders. */
#include "web/web_server.h"

#include <openssl/evp.h>

#include <stdio.h>
#include <string.h>

/* The pieces of the page, in the order they are sent. */
static const char PAGE_HEAD[] =
    "<!doctype html>\n"
    "<html lang='en'>\n"
    "<head>\n"
    "<meta charset='utf-8'>\n"
    "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
    "<title>imgcls dashboard</title>\n"
    "<style>"; /* no newline: it would be part of the hashed style */

static const char STYLE[] =
    ":root { color-scheme: light dark; --fg: #1b1f24; --bg: #f3f4f6; --card: #fff; --mute: #5d6470;\n"
    "        --s1: #0b6bcb; --s2: #d9480f; --s3: #2b8a3e; }\n"
    "@media (prefers-color-scheme: dark) {\n"
    "  :root { --fg: #e6e8eb; --bg: #15181c; --card: #1f2328; --mute: #9aa3ad;\n"
    "          --s1: #5aa9ff; --s2: #ff8a4c; --s3: #5fd37a; }\n"
    "}\n"
    "body { margin: 0; font: 15px/1.4 system-ui, sans-serif; color: var(--fg); background: var(--bg); }\n"
    "header { display: flex; align-items: baseline; gap: 1em; padding: 0.8em 1.2em 0.4em; }\n"
    "h1 { font-size: 1.3em; margin: 0; }\n"
    "h2 { font-size: 0.8em; text-transform: uppercase; letter-spacing: 0.05em; color: var(--mute);\n"
    "     margin: 0 0 0.3em; }\n"
    "main { padding: 0 1.2em 1.2em; }\n"
    ".numbers { display: grid; grid-template-columns: repeat(auto-fit, minmax(11em, 1fr)); gap: 0.8em; }\n"
    ".card, figure { background: var(--card); border-radius: 6px; padding: 0.7em 0.9em; margin: 0; }\n"
    ".card p { margin: 0.1em 0; color: var(--mute); }\n"
    ".card b { font-size: 1.5em; color: var(--fg); font-variant-numeric: tabular-nums;\n"
    "         margin-right: 0.2em; }\n"
    "#chart { display: grid; grid-template-columns: repeat(auto-fit, minmax(24em, 1fr)); gap: 0.8em;\n"
    "         margin-top: 0.8em; }\n"
    "figcaption { font-size: 0.9em; margin-bottom: 0.3em; }\n"
    "figcaption span { float: right; color: var(--mute); }\n"
    "svg { display: block; width: 100%; height: 120px; border-bottom: 1px solid var(--mute); }\n"
    "polyline { fill: none; stroke-width: 2; vector-effect: non-scaling-stroke; }\n"
    ".s1 { stroke: var(--s1); } .s2 { stroke: var(--s2); }\n"
    ".s3 { stroke: var(--s3); stroke-dasharray: 5 3; }\n"
    ".k1 { color: var(--s1); } .k2 { color: var(--s2); } .k3 { color: var(--s3); }\n"
    ".axis { display: flex; justify-content: space-between; color: var(--mute); font-size: 0.75em;\n"
    "        margin: 0; }\n"
    "#status.ok { color: var(--s3); } #status.bad { color: var(--s2); }\n"
    ".foot { color: var(--mute); font-size: 0.85em; }\n";

static const char PAGE_BODY[] =
    "</style>\n"
    "</head>\n"
    "<body>\n"
    "<header><h1>imgcls</h1><p id='status'>connecting to /metrics</p></header>\n"
    "<main>\n"
    "<section class='numbers'>\n"
    "<div class='card'><h2>Request queue</h2>\n"
    "<p><b id='queue-visible'>-</b>visible</p>\n"
    "<p><b id='queue-in-flight'>-</b>in flight</p>\n"
    "<p><b id='waiting'>-</b>waiting at the web tier</p></div>\n"
    "<div class='card'><h2>Workers</h2>\n"
    "<p><b id='workers-running'>-</b>running (<span id='workers-busy'>-</span> busy)</p>\n"
    "<p><b id='workers-starting'>-</b>starting</p>\n"
    "<p><b id='workers-stopping'>-</b>stopping</p>\n"
    "<p><b id='workers-desired'>-</b>desired</p></div>\n"
    "<div class='card'><h2>Throughput</h2>\n"
    "<p><b id='throughput'>-</b>uploads/s</p></div>\n"
    "<div class='card'><h2>Latency</h2>\n"
    "<p><b id='latency'>-</b>ms median</p>\n"
    "<p><b id='latency-mean'>-</b>ms mean</p></div>\n"
    "<div class='card'><h2>Scaling decisions</h2>\n"
    "<p><b id='scale-out'>-</b>out</p>\n"
    "<p><b id='scale-in'>-</b>in</p></div>\n"
    "</section>\n"
    "<section id='chart'>\n"
    "<figure><figcaption>Queue depth: <i class='k1'>visible</i>, <i class='k2'>in flight</i>\n"
    "<span id='queue-max'></span></figcaption>\n"
    "<svg viewBox='0 0 600 120' preserveAspectRatio='none' role='img' aria-label='queue depth'>\n"
    "<polyline id='line-queue-visible' class='s1' points=''></polyline>\n"
    "<polyline id='line-queue-in-flight' class='s2' points=''></polyline></svg>\n"
    "<p class='axis'><span>5 min ago</span><span>now</span></p></figure>\n"
    "<figure><figcaption>Workers: <i class='k1'>running</i>, <i class='k2'>starting</i>,\n"
    "<i class='k3'>desired</i> <span id='workers-max'></span></figcaption>\n"
    "<svg viewBox='0 0 600 120' preserveAspectRatio='none' role='img' aria-label='workers'>\n"
    "<polyline id='line-workers-running' class='s1' points=''></polyline>\n"
    "<polyline id='line-workers-starting' class='s2' points=''></polyline>\n"
    "<polyline id='line-workers-desired' class='s3' points=''></polyline></svg>\n"
    "<p class='axis'><span>5 min ago</span><span>now</span></p></figure>\n"
    "<figure><figcaption>Throughput, <i class='k1'>uploads/s</i>\n"
    "<span id='throughput-max'></span></figcaption>\n"
    "<svg viewBox='0 0 600 120' preserveAspectRatio='none' role='img' aria-label='throughput'>\n"
    "<polyline id='line-throughput' class='s1' points=''></polyline></svg>\n"
    "<p class='axis'><span>5 min ago</span><span>now</span></p></figure>\n"
    "<figure><figcaption>Latency, <i class='k1'>median ms</i> <span id='latency-max'></span></figcaption>\n"
    "<svg viewBox='0 0 600 120' preserveAspectRatio='none' role='img' aria-label='latency'>\n"
    "<polyline id='line-latency' class='s1' points=''></polyline></svg>\n"
    "<p class='axis'><span>5 min ago</span><span>now</span></p></figure>\n"
    "</section>\n"
    "<p class='foot'>Reads <a href='/metrics'>/metrics</a> every second and keeps the last 5 minutes\n"
    "in this tab. Throughput and latency are those of uploads (POST /) over the last 10 s, from the\n"
    "deltas of imgcls_upload_duration_seconds; the median is interpolated within its histogram\n"
    "bucket, as Prometheus' histogram_quantile does. Workers come from the scaler (imgcls up):\n"
    "without one they read -. Each chart has its own scale, its top shown on the right.</p>\n"
    "</main>\n"
    "<script>"; /* no newline: it would be part of the hashed script */

static const char SCRIPT_PARSE[] =
    "'use strict';\n"
    "// Everything is bounded: at most MAX_SAMPLES samples (5 minutes at one a second, with slack), each\n"
    "// holding a few numbers and one histogram, never the whole scrape; one request in flight at a time.\n"
    "const POLL_MS = 1000, WINDOW_MS = 300000, RATE_MS = 10000, MAX_SAMPLES = 330, TIMEOUT_MS = 5000;\n"
    "const HIST = 'imgcls_upload_duration_seconds';\n"
    "const samples = [];\n"
    "\n"
    "// The Prometheus text format, as much of it as imgcls writes: 'name{k=\"v\",...} value' lines and '#'\n"
    "// comments. Quotes are dropped from the labels, so keys read name{state=visible}. A timestamp after\n"
    "// the value (imgcls writes none) is ignored, and so are values that are not finite numbers.\n"
    "function parseMetrics(text) {\n"
    "  const m = new Map();\n"
    "  for (const line of text.split('\\n')) {\n"
    "    if (line === '' || line[0] === '#') continue;\n"
    "    const brace = line.indexOf('{');\n"
    "    const end = brace >= 0 ? line.indexOf('}', brace) + 1 : line.indexOf(' ');\n"
    "    if (end <= 0) continue;\n"
    "    const field = line.slice(end).trim().split(' ')[0];\n"
    "    const value = field === '' ? NaN : Number(field);\n"
    "    if (Number.isFinite(value)) m.set(line.slice(0, end).replace(/\"/g, ''), value);\n"
    "  }\n"
    "  return m;\n"
    "}\n"
    "\n"
    "// A histogram's cumulative buckets, [[upper bound, count], ...] in order, +Inf last.\n"
    "function buckets(m, name) {\n"
    "  const out = [], prefix = name + '_bucket{le=';\n"
    "  for (const [k, v] of m)\n"
    "    if (k.startsWith(prefix))\n"
    "      out.push([Number(k.slice(prefix.length, -1).replace('+Inf', 'Infinity')), v]);\n"
    "  return out.sort((a, b) => a[0] - b[0]);\n"
    "}\n"
    "\n"
    "// What one scrape says. Queue depth: the web tier's own (read at scrape time) before the scaler's\n"
    "// (read at its last decision). null: the series is not there.\n"
    "function sample(t, m) {\n"
    "  const get = (k) => (m.has(k) ? m.get(k) : null);\n"
    "  const first = (a, b) => (m.has(a) ? m.get(a) : get(b));\n"
    "  return {\n"
    "    t,\n"
    "    visible: first('imgcls_queue_depth{state=visible}',\n"
    "      'imgcls_scaler_queue_depth{state=visible}'),\n"
    "    inFlight: first('imgcls_queue_depth{state=in_flight}',\n"
    "      'imgcls_scaler_queue_depth{state=in_flight}'),\n"
    "    waiting: get('imgcls_requests_waiting'),\n"
    "    running: get('imgcls_fleet_workers{state=running}'),\n"
    "    starting: get('imgcls_fleet_workers{state=starting}'),\n"
    "    stopping: get('imgcls_fleet_workers{state=stopping}'),\n"
    "    desired: get('imgcls_fleet_desired'),\n"
    "    busy: get('imgcls_fleet_busy'),\n"
    "    scaleOut: get('imgcls_scaler_decisions_total{direction=out}'),\n"
    "    scaleIn: get('imgcls_scaler_decisions_total{direction=in}'),\n"
    "    count: get(HIST + '_count'),\n"
    "    sum: get(HIST + '_sum'),\n"
    "    buckets: buckets(m, HIST),\n"
    "  };\n"
    "}\n";

static const char SCRIPT_RATES[] =
    "\n"
    "// histogram_quantile as Prometheus computes it: linear within the bucket that holds the rank;\n"
    "// a rank in the +Inf bucket gets the largest finite bound.\n"
    "function quantile(q, d) {\n"
    "  const total = d.length ? d[d.length - 1][1] : 0;\n"
    "  if (!(total > 0)) return null;\n"
    "  const rank = q * total;\n"
    "  let lo = 0, below = 0;\n"
    "  for (const [le, c] of d) {\n"
    "    if (c >= rank)\n"
    "      return le === Infinity ? lo : lo + ((le - lo) * (rank - below)) / Math.max(c - below, 1);\n"
    "    lo = le;\n"
    "    below = c;\n"
    "  }\n"
    "  return lo;\n"
    "}\n"
    "\n"
    "// Throughput and latency of the uploads answered since the oldest sample of the last RATE_MS. The\n"
    "// histogram is a counter: after a restart of the web tier it starts again from 0, and the delta is\n"
    "// then the new count itself, as Prometheus' rate() takes it.\n"
    "function rates(s) {\n"
    "  const o = samples.find((x) => x !== s && s.t - x.t <= RATE_MS);\n"
    "  if (!o || s.count === null || o.count === null) return { rate: null, p50: null, mean: null };\n"
    "  const reset = s.count < o.count;\n"
    "  const n = reset ? s.count : s.count - o.count;\n"
    "  const sum = reset ? s.sum : s.sum - o.sum;\n"
    "  const d = s.buckets.map(([le, c], i) => [le, reset || !o.buckets[i] ? c : c - o.buckets[i][1]]);\n"
    "  const p50 = n > 0 ? quantile(0.5, d) : null;\n"
    "  return {\n"
    "    rate: (1000 * n) / (s.t - o.t),\n"
    "    p50: p50 === null ? null : 1000 * p50,\n"
    "    mean: n > 0 ? (1000 * sum) / n : null,\n"
    "  };\n"
    "}\n"
    "\n"
    "function fmt(v) {\n"
    "  if (v === null || v === undefined) return '-';\n"
    "  return v >= 100 || Number.isInteger(v) ? v.toFixed(0) : v.toFixed(1);\n"
    "}\n"
    "\n"
    "function setText(id, text) {\n"
    "  document.getElementById(id).textContent = text;\n"
    "}\n"
    "\n"
    "function status(text, cls) {\n"
    "  const el = document.getElementById('status');\n"
    "  el.textContent = text;\n"
    "  el.className = cls;\n"
    "}\n";

static const char SCRIPT_DRAW[] =
    "\n"
    "const W = 600, H = 120, PAD = 6;\n"
    "\n"
    "// The smallest of 1, 2 or 5 times a power of ten that is at least v (1 for an empty chart).\n"
    "function niceCeil(v) {\n"
    "  if (!(v > 0)) return 1;\n"
    "  const p = Math.pow(10, Math.floor(Math.log10(v)));\n"
    "  for (const k of [1, 2, 5]) if (v <= k * p) return k * p;\n"
    "  return 10 * p;\n"
    "}\n"
    "\n"
    "// One chart: a polyline per [element id, sample field], all scaled to the chart's largest value;\n"
    "// x runs from now - WINDOW_MS on the left to now on the right. Gauges are drawn as steps (a count\n"
    "// holds until the next sample), rates as straight segments. The points stay in the polyline's\n"
    "// points attribute, where a test can read them.\n"
    "function draw(chart, series, now, step) {\n"
    "  let max = 0;\n"
    "  for (const [, key] of series)\n"
    "    for (const s of samples) if (s[key] !== null) max = Math.max(max, s[key]);\n"
    "  const top = niceCeil(max);\n"
    "  for (const [id, key] of series) {\n"
    "    const pts = [];\n"
    "    let lastY = null;\n"
    "    for (const s of samples) {\n"
    "      if (s[key] === null) continue;\n"
    "      const x = ((W * (WINDOW_MS - (now - s.t))) / WINDOW_MS).toFixed(1);\n"
    "      const y = (H - PAD - ((H - 2 * PAD) * s[key]) / top).toFixed(1);\n"
    "      if (step && lastY !== null) pts.push(x + ',' + lastY);\n"
    "      pts.push(x + ',' + y);\n"
    "      lastY = y;\n"
    "    }\n"
    "    document.getElementById(id).setAttribute('points', pts.join(' '));\n"
    "  }\n"
    "  setText(chart + '-max', 'top ' + fmt(top));\n"
    "}\n"
    "\n"
    "function render(s) {\n"
    "  const numbers = {\n"
    "    'queue-visible': s.visible, 'queue-in-flight': s.inFlight, waiting: s.waiting,\n"
    "    'workers-running': s.running, 'workers-busy': s.busy, 'workers-starting': s.starting,\n"
    "    'workers-stopping': s.stopping, 'workers-desired': s.desired,\n"
    "    throughput: s.rate, latency: s.p50, 'latency-mean': s.mean,\n"
    "    'scale-out': s.scaleOut, 'scale-in': s.scaleIn,\n"
    "  };\n"
    "  for (const id in numbers) setText(id, fmt(numbers[id]));\n"
    "  draw('queue', [['line-queue-visible', 'visible'], ['line-queue-in-flight', 'inFlight']], s.t,\n"
    "    true);\n"
    "  draw('workers', [['line-workers-running', 'running'], ['line-workers-starting', 'starting'],\n"
    "    ['line-workers-desired', 'desired']], s.t, true);\n"
    "  draw('throughput', [['line-throughput', 'rate']], s.t, false);\n"
    "  draw('latency', [['line-latency', 'p50']], s.t, false);\n"
    "}\n"
    "\n"
    "// One scrape, then the next a second after it ends: never two at once, whatever the server's pace.\n"
    "async function poll() {\n"
    "  const ctl = new AbortController();\n"
    "  const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);\n"
    "  try {\n"
    "    const r = await fetch('/metrics', { cache: 'no-store', signal: ctl.signal });\n"
    "    if (!r.ok) throw new Error('HTTP ' + r.status);\n"
    "    const s = sample(Date.now(), parseMetrics(await r.text()));\n"
    "    samples.push(s);\n"
    "    while (samples.length > MAX_SAMPLES || s.t - samples[0].t > WINDOW_MS) samples.shift();\n"
    "    Object.assign(s, rates(s));\n"
    "    render(s);\n"
    "    status('live, ' + new Date(s.t).toLocaleTimeString(), 'ok');\n"
    "  } catch (e) {\n"
    "    status('cannot read /metrics (' + e.message + '); retrying', 'bad');\n"
    "  } finally {\n"
    "    clearTimeout(timer);\n"
    "    setTimeout(poll, POLL_MS);\n"
    "  }\n"
    "}\n"
    "poll();\n";

static const char PAGE_TAIL[] =
    "</script>\n"
    "</body>\n"
    "</html>\n";

/* The page in order. The style and the script must stay the exact contents of their elements, as
 * the CSP hashes are computed over these pieces. */
#define PIECE(s) {s, sizeof s - 1}
static const struct MHD_IoVec PAGE[] = {
    PIECE(PAGE_HEAD),    PIECE(STYLE),       PIECE(PAGE_BODY), PIECE(SCRIPT_PARSE),
    PIECE(SCRIPT_RATES), PIECE(SCRIPT_DRAW), PIECE(PAGE_TAIL),
};
#define PAGE_STYLE 1 /* PAGE[1] */
#define PAGE_SCRIPT 3 /* PAGE[3..5] */
#define PAGE_SCRIPT_N 3

/* A CSP source for the bytes of n pieces: 'sha256-<base64>'. Returns 0, or IMGCLS_ENOMEM when libcrypto
 * cannot make a digest context. */
static int csp_hash(const struct MHD_IoVec *p, size_t n, char out[64])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (size_t i = 0; ok && i < n; i++)
        ok = EVP_DigestUpdate(ctx, p[i].iov_base, p[i].iov_len);
    ok = ok && EVP_DigestFinal_ex(ctx, md, &len) && len == 32;
    EVP_MD_CTX_free(ctx);
    unsigned char b64[48]; /* 44 characters and a NUL for 32 bytes */
    if (ok) {
        EVP_EncodeBlock(b64, md, 32);
        snprintf(out, 64, "'sha256-%s'", (const char *)b64);
    }
    return ok ? 0 : IMGCLS_ENOMEM;
}

static int csp_header(char *out, size_t size)
{
    char script[64], style[64];
    if (csp_hash(PAGE + PAGE_SCRIPT, PAGE_SCRIPT_N, script) || csp_hash(PAGE + PAGE_STYLE, 1, style))
        return IMGCLS_ENOMEM;
    int n = snprintf(out, size,
                     "default-src 'none'; script-src %s; style-src %s; connect-src 'self'; img-src 'self'; "
                     "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
                     script, style);
    return n > 0 && (size_t)n < size ? 0 : IMGCLS_ETOOBIG;
}

enum MHD_Result web_route_dashboard(web_request *r)
{
    char csp[384];
    if (csp_header(csp, sizeof csp))
        return web_respond_error(r, 500, "ENOMEM", NULL, "cannot hash the dashboard's script");
    struct MHD_Response *resp = MHD_create_response_from_iovec(PAGE, sizeof PAGE / sizeof *PAGE, NULL, NULL);
    if (!resp)
        return MHD_NO;
    /* no-store: the page is small, and an old copy cached across an upgrade would parse new metrics
     * with old code. */
    enum MHD_Result rc =
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/html; charset=utf-8");
    if (rc == MHD_YES)
        rc = MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_SECURITY_POLICY, csp);
    if (rc == MHD_YES)
        rc = MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (rc == MHD_YES)
        rc = MHD_add_response_header(resp, MHD_HTTP_HEADER_X_CONTENT_TYPE_OPTIONS, "nosniff");
    if (rc == MHD_YES)
        rc = MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    if (rc == MHD_YES)
        rc = MHD_queue_response(r->conn, 200, resp);
    MHD_destroy_response(resp);
    if (rc == MHD_YES)
        r->status = 200;
    return rc;
}
