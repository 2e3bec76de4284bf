'use strict';
/**
 * A dependency-free berryMQ client for Node.js (16 or newer), written from
 * docs/protocol.md alone: JSON-RPC 2.0 over TCP (one JSON text per line) or over HTTP
 * (POST / with Content-Type: application/json). Only Node's built-in modules are used
 * (net, http, crypto). Style 01 (interconnect) works over both: over TCP on the same
 * connection, over HTTP through a small server of our own that the node calls back.
 *
 *   const { connect } = require('./berrymq');
 *   const client = await connect('tcp://127.0.0.1:7000');
 *   const token = await client.connectOneway();
 *   await client.sendMessage(token, 'job:done', ['report.txt'], { user: 'bob' });
 *   const queueToken = await client.connectViaQueue('job:*');
 *   const message = await client.get(queueToken, { timeout: 5 }); // null when empty
 *   await client.interconnect((message) => console.log(message)); // style 01
 *   client.close();
 *
 * A message is { identifier, args, kwargs } (identifier text, an array, an object).
 * Errors the node answers are thrown as BerryMQError with the JSON-RPC `code`.
 */

const net = require('net');
const http = require('http');
const crypto = require('crypto');

/** Error codes of the protocol (docs/protocol.md, "Error codes"). */
const codes = Object.freeze({
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
  UNKNOWN_TOKEN: -32001,
  EMPTY: -32002,
  TOO_LARGE: -32003,
  UNAUTHORISED: -32004,
  QUEUE_FULL: -32005,
  NO_QUEUE: -32006,
  NOT_AVAILABLE: -32007,
  BAD_TOKEN: -32008,
});

/** An error object the node answered (code, message, data), or a transport failure. */
class BerryMQError extends Error {
  constructor(message, code = null, data = undefined) {
    super(code === null ? message : `${message} (${code})${typeof data === 'string' ? `: ${data}` : ''}`);
    this.name = 'BerryMQError';
    this.code = code;
    this.data = data;
  }
}

function parseUrl(url) {
  const match = /^(tcp|http):\/\/(\[[^\]]+\]|[^:/]+):(\d+)\/?$/.exec(url);
  if (!match) {
    throw new BerryMQError(`not a berryMQ address: ${JSON.stringify(url)} ` +
                           '(write tcp://host:port or http://host:port)');
  }
  return { scheme: match[1], host: match[2].replace(/^\[|\]$/g, ''), port: Number(match[3]) };
}

function isResponse(obj) {
  return obj !== null && typeof obj === 'object' && !Array.isArray(obj) &&
    !('method' in obj) && ('result' in obj || 'error' in obj);
}

function resultOf(reply) {
  if (reply === null || typeof reply !== 'object' || reply.jsonrpc !== '2.0' ||
      ('result' in reply) === ('error' in reply)) {
    throw new BerryMQError(`malformed JSON-RPC reply: ${JSON.stringify(reply)}`);
  }
  if ('error' in reply) {
    const { code, message, data } = reply.error;
    throw new BerryMQError(message, code, data);
  }
  return reply.result;
}

function messageFromWire(entry) {
  return { identifier: entry[0], args: entry[1], kwargs: entry[2], extras: entry[3] || {} };
}

/** What every transport shares: request ids, the method wrappers. */
class Client {
  constructor(url, options = {}) {
    this.url = url;
    this.secret = options.secret || null;
    this.timeout = options.timeout || 10000; // milliseconds to wait for a reply
    this.nextId = 1;
    this.ownToken = null; // the token the node uses to forward to us (interconnect)
    this.onMessage = null;
    this.onAsk = null;
    this.seen = new Set();
  }

  params(params) {
    return this.secret === null ? params : { ...params, secret: this.secret };
  }

  /** Call a method and resolve with its result (rejects with BerryMQError). */
  call(method, params = {}) {
    const id = this.nextId++;
    return this.request({ jsonrpc: '2.0', method, params: this.params(params), id })
      .then(resultOf);
  }

  /** Send a notification: no id, so the node does not answer. */
  notify(method, params = {}) {
    return this.post({ jsonrpc: '2.0', method, params: this.params(params) });
  }

  /** Send a batch (an array of {method, params, notify?}); resolves with the replies
   * in the order the node gave them (match them by id). */
  batch(calls) {
    const body = calls.map((c) => {
      const request = { jsonrpc: '2.0', method: c.method, params: this.params(c.params || {}) };
      if (!c.notify) request.id = this.nextId++;
      return request;
    });
    return this.request(body);
  }

  /** Answer one request the node sent us (interconnect): send_message(s) and ask. */
  async answer(request) {
    const id = request && typeof request === 'object' ? request.id : null;
    const notification = request && typeof request === 'object' && !('id' in request);
    const error = (code, message, data) => (notification ? null :
      { jsonrpc: '2.0', error: data === undefined ? { code, message } : { code, message, data }, id: id === undefined ? null : id });
    const ok = (result) => (notification ? null : { jsonrpc: '2.0', result, id });
    if (!request || typeof request !== 'object' || request.jsonrpc !== '2.0' ||
        typeof request.method !== 'string') {
      return { jsonrpc: '2.0', error: { code: codes.INVALID_REQUEST, message: 'Invalid Request' }, id: null };
    }
    const params = request.params || {};
    if (request.method === 'send_messages' || request.method === 'send_message') {
      if (params.token !== this.ownToken) return error(codes.UNKNOWN_TOKEN, 'Unknown or expired token');
      const entries = request.method === 'send_messages' ? params.messages :
        [[params.identifier, params.args || [], params.kwargs || {},
          { uid: params.uid, hops: params.hops, reply_to: params.reply_to }]];
      if (!Array.isArray(entries)) return error(codes.INVALID_PARAMS, 'Invalid params', "'messages' must be an array");
      for (const entry of entries) {
        const message = messageFromWire(entry);
        if (this.firstTime(message.extras.uid) && this.onMessage) this.onMessage(message);
      }
      return ok('ok');
    }
    if (request.method === 'ask') {
      const message = { identifier: params.identifier, args: params.args || [], kwargs: params.kwargs || {} };
      const replies = this.onAsk ? await this.onAsk(message) : [];
      return ok(replies.map((value) => ({ value })));
    }
    return error(codes.METHOD_NOT_FOUND, 'Method not found');
  }

  /** Whether a forwarded message's uid is new (a message that went round a cycle of
   * interconnected nodes comes back with the same uid: deliver it once). */
  firstTime(uid) {
    if (uid === undefined || uid === null) return true;
    if (this.seen.has(uid)) return false;
    this.seen.add(uid);
    if (this.seen.size > 100000) this.seen.delete(this.seen.values().next().value);
    return true;
  }

  connectOneway(ttl = 1000) { return this.call('connect_oneway', { ttl }); }

  connectViaQueue(pattern, ttl = 1000) {
    return this.call('connect_via_queue', { identifier: pattern, ttl });
  }

  sendMessage(token, identifier, args = [], kwargs = {}) {
    return this.call('send_message', { token, identifier, args, kwargs });
  }

  /** Fire and forget: send_message as a notification. */
  postMessage(token, identifier, args = [], kwargs = {}) {
    return this.notify('send_message', { token, identifier, args, kwargs });
  }

  /** Many messages in one request: each [identifier, args, kwargs]. */
  sendMessages(token, messages) { return this.call('send_messages', { token, messages }); }

  /** The next message of the queue, or null when none came within `timeout` seconds. */
  async get(token, { block = true, timeout = null } = {}) {
    try {
      return messageFromWire(await this.call('get', { token, block, timeout }));
    } catch (error) {
      if (error.code === codes.EMPTY) return null;
      throw error;
    }
  }

  /** The next message of the queue, or null when it is empty. */
  async getNowait(token) {
    try {
      return messageFromWire(await this.call('get_nowait', { token }));
    } catch (error) {
      if (error.code === codes.EMPTY) return null;
      throw error;
    }
  }

  closeConnection(token) { return this.call('close_connection', { token }); }

  /** Ask the node's receivers; resolves with [{value} | {error}, ...]. */
  ask(identifier, args = [], kwargs = {}, timeout = 5) {
    return this.call('ask', { identifier, args, kwargs, timeout });
  }
}

/**
 * JSON-RPC over one TCP connection: one JSON text per line, both ways. Replies are
 * matched to requests by id; requests the node sends (after interconnect) are answered.
 */
class TcpClient extends Client {
  constructor(url, options = {}) {
    super(url, options);
    this.pending = new Map();
    this.buffer = '';
    this.socket = null;
    this.closed = false;
  }

  open() {
    const { host, port } = parseUrl(this.url);
    return new Promise((resolve, reject) => {
      const socket = net.createConnection({ host, port });
      socket.setNoDelay(true);
      socket.setEncoding('utf8');
      const failed = (error) => reject(new BerryMQError(`cannot reach ${this.url}: ${error.message}`));
      socket.once('error', failed);
      socket.once('connect', () => {
        socket.removeListener('error', failed);
        socket.on('error', () => {}); // 'close' follows and fails what is pending
        this.socket = socket;
        resolve(this);
      });
      socket.on('data', (chunk) => this.receive(chunk));
      socket.on('close', () => this.closedByPeer());
    });
  }

  receive(chunk) {
    this.buffer += chunk;
    let newline;
    while ((newline = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, newline);
      this.buffer = this.buffer.slice(newline + 1);
      if (line.trim()) this.line(line);
    }
  }

  line(line) {
    let obj;
    try {
      obj = JSON.parse(line);
    } catch (error) {
      this.write({ jsonrpc: '2.0', error: { code: codes.PARSE_ERROR, message: 'Parse error' }, id: null });
      return;
    }
    const replies = Array.isArray(obj) ? obj : [obj];
    if (replies.length && replies.every(isResponse)) {
      for (const reply of replies) this.response(reply);
    } else if (Array.isArray(obj)) {
      Promise.all(obj.map((member) => this.answer(member))).then((answers) => {
        const present = answers.filter((a) => a !== null);
        if (present.length) this.write(present);
      });
    } else {
      this.answer(obj).then((answer) => { if (answer !== null) this.write(answer); });
    }
  }

  response(reply) {
    const waiter = this.pending.get(reply.id);
    if (waiter !== undefined) {
      this.pending.delete(reply.id);
      waiter.resolve(reply);
    } else if (reply.id === null && reply.error) {
      // e.g. Too large: the node closes the connection after it
      this.lastError = new BerryMQError(reply.error.message, reply.error.code, reply.error.data);
    }
  }

  write(obj) {
    if (this.closed || this.socket === null) return;
    this.socket.write(JSON.stringify(obj) + '\n');
  }

  request(body) {
    if (this.closed) return Promise.reject(new BerryMQError(`the connection to ${this.url} is closed`));
    const ids = (Array.isArray(body) ? body : [body]).filter((r) => 'id' in r).map((r) => r.id);
    const waits = ids.map((id) => new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new BerryMQError(`${this.url} did not answer within ${this.timeout} ms`));
      }, this.timeout);
      this.pending.set(id, {
        resolve: (reply) => { clearTimeout(timer); resolve(reply); },
        reject: (error) => { clearTimeout(timer); reject(error); },
      });
    }));
    this.write(body);
    return Array.isArray(body) ? Promise.all(waits) : waits[0];
  }

  post(body) {
    this.write(body);
    return Promise.resolve();
  }

  /** Style 01 over TCP: the node forwards its messages to us on this connection and we
   * may send ours with the returned token. onMessage(message) is called for each one. */
  async interconnect(onMessage, ttl = 1000, onAsk = null) {
    this.ownToken = crypto.randomBytes(32).toString('base64url');
    this.onMessage = onMessage;
    this.onAsk = onAsk;
    return this.call('interconnect', { addr: null, token: this.ownToken, ttl });
  }

  closedByPeer() {
    this.closed = true;
    const error = this.lastError || new BerryMQError(`the connection to ${this.url} closed`);
    for (const waiter of this.pending.values()) waiter.reject(error);
    this.pending.clear();
  }

  close() {
    if (this.socket !== null) this.socket.end();
    this.closed = true;
  }
}

/** JSON-RPC over HTTP/1.1: POST / on one keep-alive connection. */
class HttpClient extends Client {
  constructor(url, options = {}) {
    super(url, options);
    const { host, port } = parseUrl(url);
    this.host = host;
    this.port = port;
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  }

  open() { return Promise.resolve(this); }

  /** POST one body; resolves with the parsed reply, or null for 204 No Content. */
  post(body) {
    const text = Buffer.from(JSON.stringify(body));
    return new Promise((resolve, reject) => {
      const req = http.request({
        host: this.host, port: this.port, method: 'POST', path: '/', agent: this.agent,
        timeout: this.timeout,
        headers: { 'Content-Type': 'application/json', 'Content-Length': text.length },
      }, (res) => {
        const chunks = [];
        res.on('data', (chunk) => chunks.push(chunk));
        res.on('end', () => {
          const data = Buffer.concat(chunks).toString('utf8');
          if (res.statusCode === 204) return resolve(null);
          const isJson = (res.headers['content-type'] || '').startsWith('application/json');
          if (!isJson) {
            return reject(new BerryMQError(`${this.url} answered HTTP ${res.statusCode}: ${data.trim()}`));
          }
          try {
            resolve(JSON.parse(data)); // 200, or 413 with a Too large error object
          } catch (error) {
            reject(new BerryMQError(`${this.url} answered text that is not JSON`));
          }
        });
      });
      req.on('timeout', () => req.destroy(new Error(`no answer within ${this.timeout} ms`)));
      req.on('error', (error) => reject(new BerryMQError(`cannot reach ${this.url}: ${error.message}`)));
      req.end(text);
    });
  }

  request(body) { return this.post(body); }

  /** Style 01 over HTTP: the node calls back an HTTP server of ours, started here on
   * `listen` (default 127.0.0.1, a free port), with send_messages requests. */
  interconnect(onMessage, ttl = 1000, onAsk = null, listen = { host: '127.0.0.1', port: 0 }) {
    this.ownToken = crypto.randomBytes(32).toString('base64url');
    this.onMessage = onMessage;
    this.onAsk = onAsk;
    this.server = http.createServer((req, res) => {
      const chunks = [];
      req.on('data', (chunk) => chunks.push(chunk));
      req.on('end', async () => {
        let answer;
        try {
          const request = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          answer = Array.isArray(request) ?
            (await Promise.all(request.map((r) => this.answer(r)))).filter((a) => a !== null) :
            await this.answer(request);
          if (Array.isArray(answer) && answer.length === 0) answer = null;
        } catch (error) {
          answer = { jsonrpc: '2.0', error: { code: codes.PARSE_ERROR, message: 'Parse error' }, id: null };
        }
        if (answer === null) {
          res.writeHead(204).end();
        } else {
          const body = Buffer.from(JSON.stringify(answer));
          res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': body.length }).end(body);
        }
      });
    });
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(listen.port, listen.host, () => {
        const { address, port } = this.server.address();
        const host = address.includes(':') ? `[${address}]` : address;
        resolve(this.call('interconnect', { addr: `http://${host}:${port}`, token: this.ownToken, ttl }));
      });
    });
  }

  close() {
    this.agent.destroy();
    if (this.server) this.server.close();
  }
}

/** Connect to the node at `url` (tcp://host:port or http://host:port). */
function connect(url, options = {}) {
  const { scheme } = parseUrl(url);
  const client = scheme === 'tcp' ? new TcpClient(url, options) : new HttpClient(url, options);
  return client.open();
}

module.exports = { connect, codes, BerryMQError, TcpClient, HttpClient };
