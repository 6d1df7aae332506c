// A demo HTTP upstream for the quick start: answers every request with a JSON
// echo of it. Port from DEMO_PORT (default 8000), loopback only.
import http from 'node:http';

const port = Number(process.env.DEMO_PORT ?? 8000);
http
  .createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': 'demo' });
    res.end(JSON.stringify({ upstream: 'demo', method: req.method, path: req.url }) + '\n');
  })
  .listen(port, '127.0.0.1', () => process.stdout.write(`demo upstream on http://127.0.0.1:${port}\n`));
