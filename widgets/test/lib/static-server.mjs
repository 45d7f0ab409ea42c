// Serves widgets/demo-site over HTTP, filling in the placeholders of its HTML pages:
//   {{COLLECTOR}}  collector origin the tags load from (e.g. http://127.0.0.1:8080)
//   {{SITE}}       site id
//   {{TAG_ATTRS}}  extra attributes for the tracking tag (e.g. ` data-cookieless`), or nothing
// With `chat: true`, every HTML page also gets the chat widget's tag, right before </head>:
//   <script async src="{{COLLECTOR}}/widgets/chat-widget.js" data-site="{{SITE}}"></script>
// /app and /app/* serve app.html (a single-page app with client-side routes); a path ending in
// "/" serves that folder's index.html.
//
// Also a command-line tool, for looking at the demo site in a browser:
//   node widgets/test/lib/static-server.mjs --collector http://127.0.0.1:8080 --site demo [--port 8000] [--cookieless] [--chat]
import { createServer } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import { DEMO_SITE } from './env.mjs';

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'application/javascript; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.pdf': 'application/pdf',
  '.txt': 'text/plain; charset=utf-8',
};

function filePath(root, pathname) {
  if (pathname === '/app' || pathname.startsWith('/app/')) return join(root, 'app.html');
  if (pathname.endsWith('/')) pathname += 'index.html';
  const full = normalize(join(root, pathname));
  return full === root || full.startsWith(root + sep) ? full : undefined; // no escaping the root
}

/**
 * Starts the server; resolves to { origin, url(path), requests, close() }.
 * `requests` lists every request as "METHOD /path?query" (handy in failure messages).
 */
export async function startStaticServer({ collector, site, tagAttrs = '', chat = false, root = DEMO_SITE, host = '127.0.0.1', port = 0 }) {
  const chatTag = '  <script async src="{{COLLECTOR}}/widgets/chat-widget.js" data-site="{{SITE}}"></script>\n';
  const fill = (html) => (chat ? html.replace('</head>', chatTag + '</head>') : html)
    .replaceAll('{{COLLECTOR}}', collector.replace(/\/+$/, ''))
    .replaceAll('{{SITE}}', site)
    .replaceAll('{{TAG_ATTRS}}', tagAttrs);
  const requests = [];
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, 'http://localhost');
    requests.push(`${req.method} ${url.pathname}${url.search}`);
    let path = filePath(root, decodeURIComponent(url.pathname));
    try {
      if (req.method !== 'GET' && req.method !== 'HEAD') throw Object.assign(new Error('method'), { status: 405 });
      if (!path) throw Object.assign(new Error('outside root'), { status: 404 });
      if ((await stat(path)).isDirectory()) {
        res.writeHead(301, { location: url.pathname + '/' + url.search }).end();
        return;
      }
      let body = await readFile(path);
      const type = TYPES[extname(path)] || 'application/octet-stream';
      if (extname(path) === '.html') body = Buffer.from(fill(body.toString('utf8')));
      res.writeHead(200, { 'content-type': type, 'content-length': body.length, 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : body);
    } catch (err) {
      const status = err.status || (err.code === 'ENOENT' ? 404 : 500);
      res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' }).end(`${status} ${url.pathname}\n`);
    }
  });
  await new Promise((ready, fail) => server.once('error', fail).listen(port, host, ready));
  const origin = `http://${host}:${server.address().port}`;
  return {
    origin,
    url: (path) => origin + path,
    requests,
    close: () => new Promise((done) => {
      server.closeAllConnections();
      server.close(() => done());
    }),
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2);
  const option = (name, fallback) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : fallback;
  };
  const collector = option('collector', 'http://127.0.0.1:8080');
  const site = option('site', 'demo');
  const server = await startStaticServer({
    collector,
    site,
    tagAttrs: args.includes('--cookieless') ? ' data-cookieless' : '',
    chat: args.includes('--chat'),
    port: Number(option('port', '8000')),
  });
  console.log(`demo site on ${server.origin}/ (tags load from ${collector}, site "${site}")`);
}
