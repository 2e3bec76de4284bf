'use strict';
/**
 * JSON-RPC over HTTP/1.1: POST / on one keep-alive connection, one request at a time (so
 * messages from one channel arrive in the order they were sent); requests the node may
 * hold on purpose (a blocking get, an ask) go on connections of their own, one each (at
 * most the channel's maxWaiting at once, as over TCP: the Channel queues the others), so
 * that they hold up neither the others nor each other. For interconnect the channel
 * starts a small HTTP server of its own that the node calls back.
 */

const http = require('http');
const { Channel } = require('./channel');
const {
  BerryMQError, ConnectionClosed, MAX_INCOMING, parseUrl, PARSE_ERROR_REPLY,
} = require('./protocol');

class HttpChannel extends Channel {
  constructor(url, options = {}) {
    super(url, options);
    const { host, port } = parseUrl(url);
    this.host = host;
    this.port = port;
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    this.waitAgent = new http.Agent({ keepAlive: true, maxSockets: this.maxWaiting });
    this.server = null;
    this.answerer = null;
    this.closed = false;
  }

  open() { return Promise.resolve(this); }

  /** POST one body (its JSON text); resolves with the parsed reply, or null for 204 No
   * Content. */
  post(body, json, ms = this.timeout, waits = false) {
    if (this.closed) return Promise.reject(new ConnectionClosed(`the connection to ${this.url} is closed`));
    const text = Buffer.from(json);
    return new Promise((resolve, reject) => {
      const req = http.request({
        host: this.host, port: this.port, method: 'POST', path: '/', agent: waits ? this.waitAgent : this.agent,
        timeout: ms,
        headers: { 'Content-Type': 'application/json', 'Content-Length': text.length },
      }, (res) => {
        const chunks = [];
        res.on('data', (chunk) => chunks.push(chunk));
        res.on('end', () => {
          const data = Buffer.concat(chunks).toString('utf8');
          if (res.statusCode === 204) return resolve(null);
          if (!(res.headers['content-type'] || '').startsWith('application/json')) {
            return reject(new BerryMQError(`${this.url} answered HTTP ${res.statusCode}: ${data.trim()}`));
          }
          try {
            return resolve(JSON.parse(data)); // 200, or 413 with a Message too large error
          } catch (error) {
            return reject(new BerryMQError(`${this.url} answered text that is not JSON`));
          }
        });
      });
      req.on('timeout', () => req.destroy(new Error(`no answer within ${ms} ms`)));
      req.on('error', (error) => reject(new ConnectionClosed(`cannot reach ${this.url}: ${error.message}`)));
      req.end(text);
    });
  }

  request(body, text, ms, waits) { return this.post(body, text, ms, waits); }

  /** Interconnect over HTTP: start our server on `listen` (default 127.0.0.1, a free port)
   * and resolve with its URL, which the node calls back with send_messages and ask. */
  serve(answerer, listen = { host: '127.0.0.1', port: 0 }) {
    this.answerer = answerer;
    this.server = http.createServer((req, res) => {
      const reply = (status, obj) => {
        const out = Buffer.from(obj === null ? '' : JSON.stringify(obj));
        res.writeHead(status, obj === null ? {} : { 'Content-Type': 'application/json', 'Content-Length': out.length });
        res.end(out);
      };
      if (req.method !== 'POST') {
        res.writeHead(405, { 'Content-Type': 'text/plain', Allow: 'POST' }).end('POST JSON-RPC requests\n');
        return;
      }
      const chunks = [];
      let size = 0;
      req.on('data', (chunk) => {
        size += chunk.length;
        if (size > MAX_INCOMING) {
          reply(413, { jsonrpc: '2.0', error: { code: -32003, message: 'Message too large', data: { limit: MAX_INCOMING } }, id: null });
          req.destroy();
        } else {
          chunks.push(chunk);
        }
      });
      req.on('end', async () => {
        let body;
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch (error) {
          reply(200, PARSE_ERROR_REPLY);
          return;
        }
        const answer = await answerer.answerBody(body);
        reply(answer === null ? 204 : 200, answer);
      });
    });
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(listen.port, listen.host, () => {
        const { address, port } = this.server.address();
        resolve(`http://${address.includes(':') ? `[${address}]` : address}:${port}`);
      });
    });
  }

  /** Close the keep-alive connection and our server (if interconnected). */
  close() {
    this.closed = true;
    this.agent.destroy();
    this.waitAgent.destroy();
    if (this.server === null) return Promise.resolve();
    const server = this.server;
    return new Promise((resolve) => {
      server.close(() => resolve());
      if (server.closeAllConnections) server.closeAllConnections();
    });
  }
}

module.exports = { HttpChannel };
