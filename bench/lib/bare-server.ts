/**
 * Bench baseline: a bare node:http server answering every request with one
 * precomputed JSON body (the floor any HTTP server on Node pays).
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';

const body = Buffer.from(process.argv[2] ?? '{}');
// ARGS: BODY [CERT_FILE KEY_FILE]: HTTPS with that certificate (the same the resolver serves).
const [certFile, keyFile] = process.argv.slice(3);
const handler = (req: IncomingMessage, res: ServerResponse): void => {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
    res.end(body);
  });
};
const server =
  certFile !== undefined && keyFile !== undefined
    ? createHttpsServer({ cert: readFileSync(certFile), key: readFileSync(keyFile) }, handler)
    : createServer(handler);
server.keepAliveTimeout = 30_000;
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  process.stdout.write(`${JSON.stringify({ event: 'ready', url: `${certFile !== undefined ? 'https' : 'http'}://127.0.0.1:${port}` })}\n`);
});
process.once('SIGTERM', () => server.close(() => process.exit(0)));
