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
const { Channel, clearTimer, setTimer } = require('./channel');
const {
  answerBasis, answerLimit, BerryMQError, codes, ConnectionClosed, MAX_DEPTH, MEDIA_TYPES, NESTED_TOO_DEEP_REPLY, nestedDeeper,
  parseUrl, PARSE_ERROR_REPLY, tooDeepAnswer, TransportError,
} = require('./protocol');

/** The host a `Host` header names (`name`, `name:port`, `[v6]:port`), lower case; null
 * when it is malformed. */
function hostOf(header) {
  const host = header.trim().toLowerCase();
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    if (end < 0 || (host.length > end + 1 && host[end + 1] !== ':')) return null;
    return host.slice(1, end);
  }
  return host.split(':').length === 2 ? host.split(':')[0] : host;
}

/** Why the callback server refuses a request, as the node would: [status, text], or null
 * to serve it. It serves the node that calls it back, which sends no `Origin`, names our
 * address (or a loopback name) in `Host` and posts JSON; a web page's request to a
 * loopback port (or one made through DNS rebinding) is refused before it is read. */
function refusal(req, names) {
  if (req.method !== 'POST') return [405, 'POST JSON-RPC requests'];
  if (req.headers.origin !== undefined) {
    return [403, 'this server takes JSON-RPC requests from a berryMQ node, not from web pages (Origin)'];
  }
  const host = req.headers.host;
  if (host !== undefined && !names.has(hostOf(host))) {
    return [421, 'this server does not answer to that Host name (its address, localhost, 127.0.0.1, [::1])'];
  }
  const type = req.headers['content-type'];
  if (type !== undefined && !MEDIA_TYPES.has(type.split(';')[0].trim().toLowerCase())) {
    return [415, `send JSON-RPC with Content-Type: application/json (or ${[...MEDIA_TYPES].slice(1).join(', ')})`];
  }
  return null;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Bodies over this many bytes are sent with `Expect: 100-continue`: the node reads the
 * head and answers 413 at once to one over its `max_size`, before the body is sent (sent
 * all the same, the node would stop reading it and close the connection, and its answer
 * could be lost to the reset). */
const EXPECT_CONTINUE_OVER = 64 * 1024;

/** How long such a body waits for `100 Continue` before it is sent anyway (a server that
 * does not answer it). */
const CONTINUE_WAIT_MS = 1000;

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
   * Content. The whole exchange, from the call to the last byte of the answer, has `ms`
   * milliseconds: a node that trickles its answer gets no more time for each byte. Of the
   * answer's body at most 4x `maxSize` bytes are read (a node keeps its answers within 4x
   * its `max_size`): a longer one fails the call with a TransportError naming the limit,
   * and its HTTP connection is dropped. */
  post(body, json, ms = this.timeout, waits = false) {
    if (this.closed) return Promise.reject(new ConnectionClosed(`the connection to ${this.url} is closed`));
    const text = Buffer.from(json);
    return new Promise((resolve, reject) => {
      let timer = null;
      let settled = false;
      const settle = (then, value) => {
        if (settled) return;
        settled = true;
        clearTimer(timer);
        then(value);
      };
      const fail = (error) => settle(reject, error);
      const expect = text.length > EXPECT_CONTINUE_OVER;
      const req = http.request({
        host: this.host, port: this.port, method: 'POST', path: '/', agent: waits ? this.waitAgent : this.agent,
        headers: { 'Content-Type': 'application/json', 'Content-Length': text.length,
          ...(expect ? { Expect: '100-continue' } : {}) },
      }, (res) => {
        const chunks = [];
        const limit = answerLimit(this.maxSize);
        let size = 0;
        res.on('data', (chunk) => {
          size += chunk.length;
          if (size <= limit) {
            chunks.push(chunk);
            return;
          }
          chunks.length = 0;
          fail(new TransportError(`${this.url} answered a body of over ${limit} bytes, the limit of what is read ` +
            `of one answer (4 x max(maxSize, 1 MiB) = 4 x ${answerBasis(this.maxSize)}); the rest was not read, and the request was dropped`));
          req.destroy();
        });
        // (the node was reached: it answered the head)
        res.on('error', (error) => fail(new TransportError(`${this.url} closed the connection before its answer ` +
          `was whole: ${error.message}`)));
        res.on('end', () => {
          if (settled) return;
          if (res.statusCode === 204) return settle(resolve, null);
          const body = Buffer.concat(chunks);
          if (!(res.headers['content-type'] || '').startsWith('application/json')) {
            // not a JSON-RPC answer, whatever its status (a 200 as a 500): the exchange
            // failed, as for an answer that is not JSON (a node answers in JSON)
            const text = body.toString('utf8').trim();
            return fail(new TransportError(`${this.url} answered HTTP ${res.statusCode} without JSON: ` +
                                           `${text.length > 200 ? `${text.slice(0, 200)}...` : text}`));
          }
          let data;
          try {
            data = utf8.decode(body);
          } catch (error) {
            return fail(new TransportError(`${this.url} answered text that is not UTF-8`));
          }
          if (nestedDeeper(data, MAX_DEPTH)) return fail(tooDeepAnswer(this.url)); // not read
          try {
            return settle(resolve, JSON.parse(data)); // 200, or 413 with a Message too large error
          } catch (error) {
            return fail(new TransportError(`${this.url} answered text that is not JSON`));
          }
        });
      });
      // a node that was reached and stalls did not answer; one never reached cannot be
      let reached = false;
      let assigned = false; // false: an earlier request of the channel still holds its connection
      req.on('socket', (socket) => {
        assigned = true;
        if (!socket.connecting) reached = true; else socket.once('connect', () => { reached = true; });
      });
      timer = setTimer(() => {
        // a node that was reached and is slow: only this call fails (its own HTTP
        // connection is dropped; the others go on)
        fail(!assigned ? new TransportError(`no answer from ${this.url} within ${ms} ms: an earlier request ` +
          'held the connection, and this one was not sent') :
          reached ? new TransportError(`no answer from ${this.url} within ${ms} ms`) :
            new ConnectionClosed(`cannot reach ${this.url}: no connection within ${ms} ms`));
        req.destroy();
      }, ms);
      req.on('error', (error) => fail(this.failure(error, reached)));
      if (!expect) {
        req.end(text);
        return;
      }
      let sent = false;
      const send = () => {
        if (sent || settled) return;
        sent = true;
        clearTimeout(waiting);
        req.end(text);
      };
      const waiting = setTimeout(send, CONTINUE_WAIT_MS);
      req.on('close', () => clearTimeout(waiting)); // (failed first: nothing holds the process)
      req.on('continue', send);
      // answered before the body went (413): the body is never sent, the request is dropped
      req.on('response', (res) => res.on('end', () => {
        clearTimeout(waiting);
        if (!sent) req.destroy();
      }));
      req.flushHeaders();
    });
  }

  /** The error for a request that failed with `error`, the node `reached` or not. */
  failure(error, reached) {
    if (!reached) return new ConnectionClosed(`cannot reach ${this.url}: ${error.message}`);
    // the node was reached: only this call failed, the connection goes on (the next call
    // finds out if the node is gone)
    if (typeof error.code === 'string' && error.code.startsWith('HPE_')) {
      return new TransportError(`${this.url} answered something that is not HTTP: ${error.message}`);
    }
    return new TransportError(`${this.url} closed the connection without answering: ${error.message}`);
  }

  request(body, text, ms, waits) { return this.post(body, text, ms, waits); }

  /** Interconnect over HTTP: start our server on `listen` (`{ host, port }`, each
   * defaulting on its own to 127.0.0.1 and a free port) and resolve with its URL, which
   * the node calls back with send_messages and ask; a BerryMQError naming the address
   * when it cannot listen there. */
  serve(answerer, listen = {}) {
    this.answerer = answerer;
    // each part defaults on its own: `{ port: 0 }` alone is loopback too (a host left out
    // made Node listen on every interface, open to the network)
    const { host = '127.0.0.1', port = 0 } = listen || {};
    // what a Host header may name: loopback, and our address (added once bound)
    const names = new Set(['localhost', '127.0.0.1', '::1', String(host).replace(/^\[|\]$/g, '').toLowerCase()]);
    this.server = http.createServer((req, res) => {
      const reply = (status, obj) => {
        const out = Buffer.from(obj === null ? '' : JSON.stringify(obj));
        res.writeHead(status, obj === null ? {} : { 'Content-Type': 'application/json', 'Content-Length': out.length });
        res.end(out);
      };
      const refused = refusal(req, names);
      if (refused !== null) {
        const [status, text] = refused;
        res.writeHead(status, { 'Content-Type': 'text/plain', Connection: 'close', ...(status === 405 ? { Allow: 'POST' } : {}) })
          .end(`${text}\n`);
        return;
      }
      // the node's requests keep within the maxSize the client connected with (it sends
      // it); 4x that is read, the size of an answer, and more is refused
      const chunks = [];
      const limit = answerLimit(this.maxSize);
      let size = 0;
      let tooLarge = false;
      req.on('data', (chunk) => {
        size += chunk.length;
        if (tooLarge) return;
        if (size > limit) {
          tooLarge = true;
          chunks.length = 0;
          res.setHeader('Connection', 'close');
          reply(413, { jsonrpc: '2.0', error: { code: codes.TOO_LARGE, message: 'Message too large',
            data: { limit, setting: 'max_size' } }, id: null });
          res.on('finish', () => req.destroy());
        } else {
          chunks.push(chunk);
        }
      });
      req.on('end', async () => {
        if (tooLarge) return;
        const text = Buffer.concat(chunks).toString('utf8');
        if (nestedDeeper(text, MAX_DEPTH)) {
          reply(200, NESTED_TOO_DEEP_REPLY); // not read, as a node refuses it
          return;
        }
        let body;
        try {
          body = JSON.parse(text);
        } catch (error) {
          reply(200, PARSE_ERROR_REPLY);
          return;
        }
        const answer = await answerer.answerBody(body);
        reply(answer === null ? 204 : 200, answer);
      });
    });
    return new Promise((resolve, reject) => {
      this.server.once('error', (error) => {
        // the client's own error, naming where it could not listen (EADDRINUSE: a port
        // taken; EADDRNOTAVAIL: an address not of this machine; EACCES: a low port)
        const where = `http://${String(host).includes(':') ? `[${host}]` : host}:${port}`;
        reject(new BerryMQError(`cannot listen on ${where} for the node's calls (the listen option of ` +
                                `interconnect): ${error.code || error.message}`));
      });
      this.server.listen(port, host, () => {
        const { address, port } = this.server.address();
        names.add(address.toLowerCase());
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
